"""Digital receipts through real HTTP: written with each sale and refund, read by whoever holds
the link (JSON and the page its QR code opens), right for split tenders, cash handed over,
refunds of some lines, Stars earned and taken back, anonymous sales, and never showing a card
number. Also the store's sales of a day, a page at a time."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import delete, func, select, update

from app.auth.models import AuthToken
from app.auth.principal import Principal
from app.cards.models import Card
from app.cards.services import issue_card
from app.core.db import write_kept_now
from app.core.headers import PAGE_CSP
from app.core.settings import settings
from app.sales import services as sales
from app.sales.models import Receipt, Sale
from tests.api import test_sales
from tests.api.test_sales import (
    Till,
    assert_error,
    refund,
    report_lost,
    sold,
    spend_stars,
    stars_of,
    usd,
)

# The sales tests' fixtures: a till, a latte and a muffin, a shopper with 20.00 on their card.
till, latte, muffin, shopper = (
    test_sales.till,
    test_sales.latte,
    test_sales.muffin,
    test_sales.shopper,
)


def receipt_of(api, body) -> dict:
    """The receipt a sale's or refund's answer links to, read with no token at all."""
    response = api.get(f"/v1/receipts/{body['receipt']['id']}")
    assert response.status_code == 200, response.json
    return response.json


def card_balance(api, shopper) -> int:
    response = api.get(f"/v1/cards/{shopper.card_id}", token=shopper.token)
    assert response.status_code == 200, response.json
    return response.json["balance"]["amount"]


def pay_with_given(api, till, lines, tenders, card_number=None, **kw):
    """``tenders``: (type, amount, given or None)."""
    body = {
        "lines": [{"sku": sku, "quantity": quantity} for sku, quantity in lines],
        "tenders": [
            {"type": kind, "amount": usd(amount)} | ({"given": usd(given)} if given else {})
            for kind, amount, given in tenders
        ],
    }
    if card_number is not None:
        body["customer"] = {"card_number": card_number}
    return api.post("/v1/sales", token=till.token, json=body, **kw)


# -- the sale's answer -----------------------------------------------------------------------


def test_a_sale_answers_its_number_and_a_link_to_its_receipt(api, till, latte):
    body = sold(api, till, [("LATTE", 1)], [("cash", 450)])

    assert body["number"] == f"S-{body['id']:06d}"
    assert body["shift_id"] is None
    receipt_id = body["receipt"]["id"]
    assert re.fullmatch(r"[A-Za-z0-9_-]{32,}", receipt_id)  # 192 random bits, url-safe
    assert body["receipt"]["url"] == f"http://localhost/r/{receipt_id}"


def test_receipt_ids_differ_from_sale_to_sale(api, till, latte):
    ids = {sold(api, till, [("LATTE", 1)], [("cash", 450)])["receipt"]["id"] for _ in range(5)}
    assert len(ids) == 5


# -- what a sale's receipt says --------------------------------------------------------------


def test_split_tender_receipt_shows_lines_tenders_change_card_and_stars(
    api, db, till, latte, muffin, shopper
):
    response = pay_with_given(
        api, till, [("LATTE", 2), ("MUFFIN", 1)],
        [("card_balance", 1_000, None), ("cash", 233, 500)],
        card_number=shopper.card_number,
    )  # fmt: skip
    assert response.status_code == 201, response.json
    sale = response.json

    receipt = receipt_of(api, sale)

    assert (
        receipt
        == {
            "id": sale["receipt"]["id"],
            "url": sale["receipt"]["url"],
            "kind": "sale",
            "number": sale["number"],
            "sale_id": sale["id"],
            "refund_id": None,
            "sale_number": sale["number"],
            "store": {"name": till.store.name, "address": till.store.address},
            "till": till.device.name,
            "cashier": receipt["cashier"],
            "created_at": sale["created_at"],
            "currency": "USD",
            "lines": [
                {
                    "sku": "LATTE",
                    "name": "Latte",
                    "quantity": 2,
                    "unit_price": usd(450),
                    "line_total": usd(900),
                },
                {
                    "sku": "MUFFIN",
                    "name": "Muffin",
                    "quantity": 1,
                    "unit_price": usd(333),
                    "line_total": usd(333),
                },
            ],  # fmt: skip
            "total": usd(1_233),
            "tenders": [
                {"type": "card_balance", "amount": usd(1_000)},
                {"type": "cash", "amount": usd(233)},
            ],
            "cash_given": usd(500),
            "change": usd(267),
            "card": {"last4": shopper.card_number[-4:], "balance_after": usd(1_000)},
            "stars": {"earned": sale["stars_earned"], "balance": stars_of(api, shopper)},
            "offline": False,
        }
    )
    assert sale["stars_earned"] > 0
    assert card_balance(api, shopper) == 1_000
    assert receipt["cashier"] and " " not in receipt["cashier"]


def test_a_receipt_never_shows_the_card_number(api, till, latte, shopper):
    sale = sold(api, till, [("LATTE", 1)], [("card_balance", 450)], shopper.card_number)

    json_text = api.get(f"/v1/receipts/{sale['receipt']['id']}").get_data(as_text=True)
    page = api.get(f"/r/{sale['receipt']['id']}").get_data(as_text=True)

    for shown in (json_text, page):
        assert shopper.card_number not in shown
        assert shopper.card_number[-4:] in shown


def test_an_anonymous_cash_sale_has_no_card_nor_stars_and_exact_cash_gives_no_change(
    api, till, latte
):
    receipt = receipt_of(api, sold(api, till, [("LATTE", 2)], [("cash", 900)]))

    assert receipt["card"] is None
    assert receipt["stars"] is None
    assert receipt["cash_given"] == usd(900)
    assert receipt["change"] == usd(0)


def test_a_bank_card_sale_says_nothing_of_cash(api, till, latte):
    receipt = receipt_of(api, sold(api, till, [("LATTE", 1)], [("bank_card", 450)]))

    assert receipt["tenders"] == [{"type": "bank_card", "amount": usd(450)}]
    assert receipt["cash_given"] is None
    assert receipt["change"] is None


def test_cash_handed_over_over_two_cash_tenders_adds_up(api, till, latte):
    response = pay_with_given(
        api, till, [("LATTE", 2)], [("cash", 400, 1_000), ("cash", 500, None)]
    )
    assert response.status_code == 201, response.json
    receipt = receipt_of(api, response.json)

    assert receipt["cash_given"] == usd(1_500)
    assert receipt["change"] == usd(600)


def test_an_unregistered_gift_card_shows_its_balance_and_no_stars(api, db, app, till, latte):
    with app.app_context():
        gift = issue_card(db, kind="physical")
    from tests.conftest import World

    World(app, db, api).load(gift.id, 1_000, till.token)

    sale = sold(api, till, [("LATTE", 1)], [("card_balance", 450)], gift.number)
    receipt = receipt_of(api, sale)

    assert receipt["card"] == {"last4": gift.number[-4:], "balance_after": usd(550)}
    assert receipt["stars"] is None


@pytest.mark.parametrize(
    ("tenders", "why"),
    [
        ([("cash", 450, 449)], "less cash than the tender"),
        ([("bank_card", 450, 500)], "cash handed over for a bank card"),
        ([("card_balance", 450, 500)], "cash handed over for the card balance"),
    ],
)
def test_cash_handed_over_must_cover_a_cash_tender(api, till, latte, shopper, tenders, why):
    response = pay_with_given(api, till, [("LATTE", 1)], tenders, shopper.card_number)

    assert_error(response, 422, "cash_given_short")


def test_cash_handed_over_in_another_currency_is_refused(api, till, latte):
    body = {
        "lines": [{"sku": "LATTE", "quantity": 1}],
        "tenders": [
            {"type": "cash", "amount": usd(450), "given": {"amount": 500, "currency": "EUR"}}
        ],
    }
    response = api.post("/v1/sales", token=till.token, json=body)

    assert_error(response, 422, "currency_mismatch")


# -- refunds -----------------------------------------------------------------------------------


def test_a_refund_of_some_lines_has_its_own_receipt(api, till, latte, muffin, shopper):
    sale = sold(
        api, till, [("LATTE", 2), ("MUFFIN", 1)], [("card_balance", 1_233)], shopper.card_number
    )
    stars_before = stars_of(api, shopper)

    response = refund(api, till, sale["id"], [("LATTE", 1)])
    assert response.status_code == 201, response.json
    given_back = response.json
    receipt = receipt_of(api, given_back)

    assert receipt["kind"] == "refund"
    assert receipt["number"] == f"R-{given_back['id']:06d}"
    assert receipt["refund_id"] == given_back["id"]
    assert receipt["sale_id"] == sale["id"]
    assert receipt["sale_number"] == sale["number"]
    assert receipt["lines"] == [
        {"sku": "LATTE", "name": "Latte", "quantity": 1, "unit_price": usd(450),
         "line_total": usd(450)}
    ]  # fmt: skip
    assert receipt["total"] == usd(450)
    assert receipt["tenders"] == [{"type": "card_balance", "amount": usd(450)}]
    assert receipt["card"] == {
        "last4": shopper.card_number[-4:],
        "balance_after": usd(2_000 - 1_233 + 450),
    }
    taken = given_back["stars_taken_back"] + given_back["stars_owed"]
    assert taken > 0
    assert receipt["stars"] == {"earned": -taken, "balance": stars_before - taken}
    assert receipt["stars"]["balance"] == stars_of(api, shopper)
    assert receipt["cash_given"] is None and receipt["change"] is None


def test_a_receipt_stays_as_it_was_handed_over(api, till, latte, shopper):
    sale = sold(api, till, [("LATTE", 2)], [("card_balance", 900)], shopper.card_number)
    before = receipt_of(api, sale)

    assert refund(api, till, sale["id"], [("LATTE", 1)]).status_code == 201
    sold(api, till, [("LATTE", 1)], [("card_balance", 450)], shopper.card_number)

    assert receipt_of(api, sale) == before


def test_a_refund_of_a_cash_sale_gives_cash_back_and_shows_no_card(api, till, latte):
    sale = sold(api, till, [("LATTE", 2)], [("cash", 900)])

    given_back = refund(api, till, sale["id"])
    assert given_back.status_code == 201, given_back.json
    receipt = receipt_of(api, given_back.json)

    assert receipt["tenders"] == [{"type": "cash", "amount": usd(900)}]
    assert receipt["card"] is None and receipt["stars"] is None


def test_a_refund_to_a_lost_cards_replacement_shows_the_replacement(api, db, till, latte, shopper):
    sale = sold(api, till, [("LATTE", 2)], [("card_balance", 900)], shopper.card_number)
    replacement = db.get(Card, report_lost(api, shopper, shopper.card_id))

    receipt = receipt_of(api, refund(api, till, sale["id"]).json)

    assert receipt["card"] == {"last4": replacement.number[-4:], "balance_after": usd(2_000)}


def test_a_refund_of_a_cash_sale_to_a_known_card_shows_the_cards_balance_unchanged(
    api, till, latte, shopper
):
    sale = sold(api, till, [("LATTE", 1)], [("cash", 450)], shopper.card_number)

    receipt = receipt_of(api, refund(api, till, sale["id"]).json)

    assert receipt["tenders"] == [{"type": "cash", "amount": usd(450)}]
    assert receipt["card"] == {"last4": shopper.card_number[-4:], "balance_after": usd(2_000)}
    assert receipt["stars"]["earned"] < 0


def test_a_refund_whose_stars_were_spent_shows_all_it_took_back_and_the_balance_left(
    api, app, db, till, latte, shopper
):
    sale = sold(api, till, [("LATTE", 2)], [("card_balance", 900)], shopper.card_number)
    earned = sale["stars_earned"]
    spend_stars(app, db, shopper, earned - 3)

    given_back = refund(api, till, sale["id"]).json
    receipt = receipt_of(api, given_back)

    assert (given_back["stars_taken_back"], given_back["stars_owed"]) == (3, earned - 3)
    assert receipt["stars"] == {"earned": -earned, "balance": 0}


def test_a_sale_replayed_from_an_offline_till_says_so_on_its_receipt(app, db, api, till, latte):
    token = db.scalar(select(AuthToken).where(AuthToken.device_id == till.device.id))
    cashier = Principal(
        "cashier", staff_id=token.staff_id, role="cashier", device_id=till.device.id,
        device_kind="pos", store_id=till.store.id, token_id=token.id,
    )  # fmt: skip
    with app.test_request_context():
        outcome = sales.make_sale(
            db, settings(), cashier, presented=None, lines=[("LATTE", 1)],
            tenders=[("cash", 450)],
            offline={"made_at": datetime.now(UTC) - timedelta(minutes=5), "allowance": None},
        )  # fmt: skip
        write_kept_now(db)  # its receipt, read next through the API in this transaction

    receipt = api.get(f"/v1/receipts/{outcome.receipt.id}")
    assert receipt.json["offline"] is True
    assert "OFFLINE" in api.get(f"/r/{outcome.receipt.id}").get_data(as_text=True)


def test_a_sale_from_before_receipts_were_kept_answers_no_receipt(api, db, till, latte):
    sale = sold(api, till, [("LATTE", 1)], [("cash", 450)])
    db.execute(delete(Receipt).where(Receipt.sale_id == sale["id"]))

    by_id = api.get(f"/v1/sales/{sale['id']}", token=till.token)
    listed = api.get("/v1/sales", token=till.token)

    assert by_id.status_code == 200, by_id.json
    assert by_id.json["receipt"] is None
    assert by_id.json["card_balance"] is None
    assert listed.json["items"][0]["receipt"] is None


# -- who can read it ---------------------------------------------------------------------------


def test_a_receipt_is_not_found_by_a_wrong_id(api, till, latte):
    receipt_id = sold(api, till, [("LATTE", 1)], [("cash", 450)])["receipt"]["id"]
    near = ("A" if receipt_id[0] != "A" else "B") + receipt_id[1:]

    for wrong in (near, receipt_id[:-1], receipt_id + "A", receipt_id.upper(), "x", "1"):
        assert_error(api.get(f"/v1/receipts/{wrong}"), 404, "receipt_not_found")
        page = api.get(f"/r/{wrong}")
        assert page.status_code == 404
        assert page.mimetype == "text/html"
        assert "Latte" not in page.get_data(as_text=True)


def test_a_sale_answered_by_id_and_in_the_days_list_links_the_same_receipt(api, till, latte):
    sale = sold(api, till, [("LATTE", 1)], [("cash", 450)])

    by_id = api.get(f"/v1/sales/{sale['id']}", token=till.token)
    assert by_id.status_code == 200, by_id.json
    assert by_id.json == sale


# -- the page ----------------------------------------------------------------------------------


def test_the_receipt_page_is_plain_html_under_the_pages_policy(api, db, till, latte, shopper):
    sale = sold(api, till, [("LATTE", 2)], [("card_balance", 900)], shopper.card_number)

    page = api.get(f"/r/{sale['receipt']['id']}")

    assert page.status_code == 200
    assert page.mimetype == "text/html"
    assert page.headers["Content-Security-Policy"] == PAGE_CSP
    html = page.get_data(as_text=True)
    assert "<script" not in html and "style=" not in html and "<style" not in html
    for shown in (till.store.name, sale["number"], "Latte", "9.00 USD", till.device.name):
        assert shown in html
    stylesheet = re.search(r'<link rel="stylesheet" href="([^"]+)"', html).group(1)
    css = api.get(stylesheet)
    css.close()  # a file sent as it is stays open until the answer is closed
    assert css.status_code == 200 and css.mimetype == "text/css"


@pytest.mark.parametrize(
    "wrong",
    ["%00", "a%00b", "..%2F..%2Fetc%2Fpasswd", "7" * 5_000, "%C3%A9t%C3%A9", "%FF%FE", "%20"],
)
def test_the_receipt_page_answers_a_hostile_id_not_found(api, till, latte, wrong):
    sold(api, till, [("LATTE", 1)], [("cash", 450)])

    page = api.get(f"/r/{wrong}")
    as_json = api.get(f"/v1/receipts/{wrong}")

    # (A "/" in it leaves the route: the app's own JSON 404 answers.)
    assert page.status_code == 404 and "Latte" not in page.get_data(as_text=True)
    assert as_json.status_code == 404 and as_json.json["error"]["code"] in (
        "receipt_not_found",
        "not_found",
    )


def test_the_receipt_page_escapes_what_the_store_named(api, db, world, latte):
    store = world.store(name='<script>alert("x")</script> & Co')
    till = Till(*world.till(store))
    sale = sold(api, till, [("LATTE", 1)], [("cash", 450)])

    html = api.get(f"/r/{sale['receipt']['id']}").get_data(as_text=True)

    assert "<script>" not in html
    assert "&lt;script&gt;" in html


# -- the day's sales -----------------------------------------------------------------------------


def test_the_days_sales_are_this_stores_newest_first_a_page_at_a_time(api, db, world, latte):
    till = Till(*world.till())
    other = Till(*world.till())
    mine = [sold(api, till, [("LATTE", 1)], [("cash", 450)]) for _ in range(5)]
    sold(api, other, [("LATTE", 1)], [("cash", 450)])
    yesterday = sold(api, till, [("LATTE", 1)], [("cash", 450)])
    db.execute(
        update(Sale)
        .where(Sale.id == yesterday["id"])
        .values(created_at=datetime.now(UTC) - timedelta(days=1))
    )
    today = datetime.now(UTC).date().isoformat()

    seen, cursor = [], None
    while True:
        query = {"date": today, "limit": 2} | ({"cursor": cursor} if cursor else {})
        page = api.get("/v1/sales", token=till.token, query_string=query)
        assert page.status_code == 200, page.json
        seen += page.json["items"]
        cursor = page.json["next_cursor"]
        if cursor is None:
            break

    assert [s["id"] for s in seen] == [s["id"] for s in reversed(mine)]
    assert seen == list(reversed(mine))
    no_date = api.get("/v1/sales", token=till.token, query_string={"limit": 100})
    assert [s["id"] for s in no_date.json["items"]] == [s["id"] for s in reversed(mine)]


def test_the_days_sales_show_refunded_quantities_and_the_balance_after(api, till, latte, shopper):
    sale = sold(api, till, [("LATTE", 2)], [("card_balance", 900)], shopper.card_number)
    assert refund(api, till, sale["id"], [("LATTE", 1)]).status_code == 201

    items = api.get("/v1/sales", token=till.token).json["items"]

    assert items[0]["id"] == sale["id"]
    assert items[0]["lines"][0]["refunded_quantity"] == 1
    assert items[0]["card_balance"] == usd(2_000 - 900)
    assert items[0]["receipt"] == sale["receipt"]


@pytest.mark.parametrize(
    "date", ["2026-13-01", "yesterday", "2026-12-04T00:00:00", "", "9999-12-31", "10000-01-01"]
)
def test_a_day_that_is_not_a_date_is_refused(api, till, date):
    assert_error(
        api.get("/v1/sales", token=till.token, query_string={"date": date}),
        422,
        "validation_error",
    )


def test_every_sale_and_refund_has_exactly_one_receipt(api, db, till, latte):
    sale = sold(api, till, [("LATTE", 3)], [("cash", 1_350)])
    refund(api, till, sale["id"], [("LATTE", 1)])
    refund(api, till, sale["id"], [("LATTE", 1)])

    kinds = db.execute(
        select(Receipt.kind, func.count()).where(Receipt.sale_id == sale["id"])
        .group_by(Receipt.kind)
    ).all()  # fmt: skip
    assert dict(kinds) == {"sale": 1, "refund": 2}


@pytest.mark.parametrize("date", ["0001-01-01", "9999-12-30"])
def test_the_first_and_last_days_of_the_calendar_have_no_sales(api, till, latte, date):
    sold(api, till, [("LATTE", 1)], [("cash", 450)])

    response = api.get("/v1/sales", token=till.token, query_string={"date": date})

    assert response.status_code == 200, response.json
    assert response.json == {"items": [], "next_cursor": None}

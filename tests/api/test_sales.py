"""Selling at the till through real HTTP: prices from the catalog, split tenders, Stars,
refunds back to where the money came from, and one card sold from by two tills at once.

Ledger amounts are credits: a liability (a card) or income (the store's sales) grows upwards,
an asset (the cash in the tills, bank-card payments due) grows downwards.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pytest
from sqlalchemy import func, select, text

from app.cards.models import Card
from app.cards.services import issue_card
from app.core.db import database
from app.customers.models import Customer
from app.ledger import services as ledger
from app.ledger.models import LedgerTransaction, Posting
from app.ledger.rules import Leg
from app.sales.models import Refund, Sale
from tests.conftest import Api, World, sign_in_tills
from tests.wire import wire


@dataclass(frozen=True)
class Till:
    store: object
    device: object
    token: str


@dataclass(frozen=True)
class Shopper:
    token: str
    customer_id: int
    stars_account_id: int
    card_id: int
    card_number: str
    card_account_id: int


def usd(amount: int) -> dict:
    return {"amount": amount, "currency": "USD"}


def new_shopper(world, db, name="Ada") -> Shopper:
    token, me = world.shopper(name)
    card = db.get(Card, me["cards"][0]["id"])
    customer = db.get(Customer, me["id"])
    return Shopper(
        token, customer.id, customer.stars_account_id, card.id, card.number, card.account_id
    )


@pytest.fixture
def till(world):
    return Till(*world.till())


@pytest.fixture
def latte(world):
    return world.product(sku="LATTE", price=450, name="Latte")


@pytest.fixture
def muffin(world):
    return world.product(sku="MUFFIN", price=333, name="Muffin")


@pytest.fixture
def shopper(world, db, till):
    """A registered shopper whose card holds 20.00, loaded at the till."""
    shopper = new_shopper(world, db)
    world.load(shopper.card_id, 2_000, till.token)
    return shopper


def sale_request(lines, tenders, card_number=None) -> dict:
    body = {
        "lines": [{"sku": sku, "quantity": quantity} for sku, quantity in lines],
        "tenders": [{"type": kind, "amount": usd(amount)} for kind, amount in tenders],
    }
    if card_number is not None:
        body["customer"] = {"card_number": card_number}
    return body


def sell(api, till, lines, tenders, card_number=None, **kw):
    return api.post(
        "/v1/sales", token=till.token, json=sale_request(lines, tenders, card_number), **kw
    )


def sold(api, till, lines, tenders, card_number=None) -> dict:
    """A sale that must go through: its body."""
    response = sell(api, till, lines, tenders, card_number)
    assert response.status_code == 201, response.json
    return response.json


def refund(api, till, sale_id, lines=None, **kw):
    body = {}
    if lines is not None:
        body["lines"] = [{"sku": sku, "quantity": quantity} for sku, quantity in lines]
    return api.post(f"/v1/sales/{sale_id}/refunds", token=till.token, json=body, **kw)


def stars_of(api, shopper) -> int:
    response = api.get("/v1/me", token=shopper.token)
    assert response.status_code == 200, response.json
    return response.json["stars"]


def balance(db, account_id) -> int:
    return ledger.balance_of(db, account_id)


def count(db, model) -> int:
    return db.scalar(select(func.count()).select_from(model))


def units_posted(db, transaction_id) -> set[str]:
    return set(db.scalars(select(Posting.unit).where(Posting.transaction_id == transaction_id)))


def store_accounts(till) -> tuple[int, int, int]:
    store = till.store
    return store.sales_account_id, store.cash_account_id, store.bank_card_account_id


def state(db, *account_ids) -> dict:
    """What a refused request must leave exactly as it was."""
    return {
        "sales": count(db, Sale),
        "refunds": count(db, Refund),
        "ledger_transactions": count(db, LedgerTransaction),
        "balances": {account_id: balance(db, account_id) for account_id in account_ids},
    }


def watched(shopper, till) -> tuple[int, ...]:
    return (shopper.card_account_id, shopper.stars_account_id, *store_accounts(till))


def assert_error(response, status, code):
    assert response.status_code == status, response.json
    assert response.json["error"]["code"] == code, response.json


def spend_stars(app, db, shopper, stars):
    """The shopper spends Stars (a reward): they go back where Stars come from."""
    with app.app_context():
        issuance = ledger.account_by_code(db, "stars:issuance")
        ledger.post(
            db,
            kind="reward",
            legs=[Leg(shopper.stars_account_id, -stars, "STAR"), Leg(issuance.id, stars, "STAR")],
        )


def stars_owed_account(db, shopper):
    return ledger.account_by_code(db, f"stars:owed:{shopper.customer_id}")


def stars_in_issuance(db) -> int:
    issuance = ledger.account_by_code(db, "stars:issuance")
    return balance(db, issuance.id) if issuance is not None else 0


# -- a sale ---------------------------------------------------------------------------------


def test_sale_is_priced_from_the_catalog_and_answers_the_priced_lines(api, till, latte, muffin):
    response = sell(api, till, [("LATTE", 2), ("MUFFIN", 1)], [("cash", 1_233)])

    assert response.status_code == 201, response.json
    body = response.json
    assert body["lines"] == [
        {
            "sku": "LATTE",
            "name": "Latte",
            "quantity": 2,
            "unit_price": usd(450),
            "line_total": usd(900),
            "stars_earned": 0,
            "refunded_quantity": 0,
        },
        {
            "sku": "MUFFIN",
            "name": "Muffin",
            "quantity": 1,
            "unit_price": usd(333),
            "line_total": usd(333),
            "stars_earned": 0,
            "refunded_quantity": 0,
        },
    ]
    assert body["total"] == usd(1_233)
    assert body["tenders"] == [{"type": "cash", "amount": usd(1_233), "refunded": usd(0)}]
    assert body["card_balance"] is None
    assert body["stars_earned"] == 0
    assert (body["store_id"], body["device_id"]) == (till.store.id, till.device.id)
    assert (body["customer_id"], body["card_id"]) == (None, None)
    again = api.get(f"/v1/sales/{body['id']}", token=till.token)
    assert again.status_code == 200
    assert again.json == body


@pytest.mark.parametrize(
    "change",
    [
        lambda body: body["lines"][0].update(unit_price=usd(1)),
        lambda body: body["lines"][0].update(price=1),
        lambda body: body["lines"][0].update(line_total=usd(1)),
        lambda body: body.update(total=usd(1)),
    ],
    ids=["unit_price", "price", "line_total", "total"],
)
def test_client_cannot_send_prices(api, db, till, latte, change):
    body = sale_request([("LATTE", 1)], [("cash", 450)])  # a valid sale but for the price
    change(body)
    before = state(db, *store_accounts(till))

    response = api.post("/v1/sales", token=till.token, json=body)

    assert_error(response, 422, "validation_error")
    assert response.json["error"]["details"]["fields"]
    assert state(db, *store_accounts(till)) == before


def test_card_balance_tender_takes_exactly_the_amount_from_the_card(api, db, till, latte, shopper):
    sales_before = balance(db, till.store.sales_account_id)

    response = sell(api, till, [("LATTE", 1)], [("card_balance", 450)], shopper.card_number)

    assert response.status_code == 201, response.json
    assert response.json["card_balance"] == usd(1_550)
    assert response.json["card_id"] == shopper.card_id
    assert response.json["customer_id"] == shopper.customer_id
    assert balance(db, shopper.card_account_id) == 1_550
    me = api.get("/v1/me", token=shopper.token).json
    assert me["cards"][0]["balance"] == usd(1_550)
    assert balance(db, till.store.sales_account_id) == sales_before + 450


def test_split_tenders_are_taken_from_the_card_the_till_and_the_card_terminal(
    api, db, till, latte, muffin, shopper
):
    sales_account, cash, bank_card = store_accounts(till)
    before = {a: balance(db, a) for a in (sales_account, cash, bank_card)}

    response = sell(
        api,
        till,
        [("LATTE", 2), ("MUFFIN", 1)],
        [("card_balance", 500), ("cash", 533), ("bank_card", 200)],
        shopper.card_number,
    )

    assert response.status_code == 201, response.json
    assert response.json["total"] == usd(1_233)
    assert [(t["type"], t["amount"]["amount"]) for t in response.json["tenders"]] == [
        ("card_balance", 500),
        ("cash", 533),
        ("bank_card", 200),
    ]
    assert response.json["card_balance"] == usd(1_500)
    assert balance(db, shopper.card_account_id) == 1_500
    assert balance(db, sales_account) == before[sales_account] + 1_233
    assert balance(db, cash) == before[cash] - 533
    assert balance(db, bank_card) == before[bank_card] - 200


@pytest.mark.parametrize(
    "tenders",
    [
        [("card_balance", 500), ("cash", 533), ("bank_card", 199)],
        [("card_balance", 500), ("cash", 533), ("bank_card", 201)],
        [("cash", 1)],
    ],
    ids=["short-by-one", "over-by-one", "far-short"],
)
def test_tenders_that_do_not_add_up_to_the_total_are_refused(
    api, db, till, latte, muffin, shopper, tenders
):
    before = state(db, *watched(shopper, till))

    response = sell(api, till, [("LATTE", 2), ("MUFFIN", 1)], tenders, shopper.card_number)

    assert_error(response, 422, "tenders_do_not_match_total")
    assert response.json["error"]["details"] == {
        "total": 1_233,
        "tendered": sum(amount for _, amount in tenders),
    }
    assert state(db, *watched(shopper, till)) == before


def test_unknown_sku_is_refused(api, db, till, latte):
    before = state(db, *store_accounts(till))

    response = sell(api, till, [("LATTE", 1), ("NO-SUCH", 1)], [("cash", 900)])

    assert_error(response, 422, "unknown_sku")
    assert response.json["error"]["details"] == {"sku": "NO-SUCH"}
    assert state(db, *store_accounts(till)) == before


def test_inactive_product_cannot_be_sold(api, db, world, till):
    world.product(sku="OLD", price=450, active=False)

    response = sell(api, till, [("OLD", 1)], [("cash", 450)])

    assert_error(response, 422, "unknown_sku")
    assert count(db, Sale) == 0


def test_card_balance_without_a_presented_card_is_refused(api, db, till, latte):
    before = state(db, *store_accounts(till))

    response = sell(api, till, [("LATTE", 1)], [("card_balance", 450)])

    assert_error(response, 422, "card_required")
    assert state(db, *store_accounts(till)) == before


def test_insufficient_balance_is_refused_and_changes_nothing(api, db, till, latte, shopper):
    before = state(db, *watched(shopper, till))

    response = sell(api, till, [("LATTE", 5)], [("card_balance", 2_250)], shopper.card_number)

    assert_error(response, 409, "insufficient_funds")
    assert state(db, *watched(shopper, till)) == before
    assert balance(db, shopper.card_account_id) == 2_000
    assert stars_of(api, shopper) == 0


def test_frozen_card_is_refused_even_for_a_cash_sale(api, db, till, latte, shopper):
    lost = api.post(f"/v1/cards/{shopper.card_id}/report-lost", token=shopper.token)
    assert lost.status_code == 200, lost.json
    before = state(db, *watched(shopper, till))

    paid_from_card = sell(api, till, [("LATTE", 1)], [("card_balance", 450)], shopper.card_number)
    paid_cash = sell(api, till, [("LATTE", 1)], [("cash", 450)], shopper.card_number)

    assert_error(paid_from_card, 409, "card_frozen")
    assert_error(paid_cash, 409, "card_frozen")
    assert state(db, *watched(shopper, till)) == before


def test_unknown_card_number_is_refused(api, db, till, latte):
    response = sell(api, till, [("LATTE", 1)], [("cash", 450)], "0000000000000000")

    assert_error(response, 422, "customer_not_identified")
    assert count(db, Sale) == 0


@pytest.mark.parametrize("quantity", [0, -1, 1.5, "2", None, 1_000, 10**12])
def test_bad_quantity_is_refused_and_changes_nothing(api, db, till, latte, shopper, quantity):
    before = state(db, *watched(shopper, till))

    response = sell(api, till, [("LATTE", quantity)], [("card_balance", 450)], shopper.card_number)

    assert_error(response, 422, "validation_error")
    assert "lines" in response.json["error"]["details"]["fields"]["json"]
    assert state(db, *watched(shopper, till)) == before


@pytest.mark.parametrize(
    "tender",
    [
        {"type": "cash", "amount": {"amount": 0, "currency": "USD"}},
        {"type": "cash", "amount": {"amount": -450, "currency": "USD"}},
        {"type": "cash", "amount": {"amount": 4.5, "currency": "USD"}},
        {"type": "cash", "amount": {"amount": "450", "currency": "USD"}},
        {"type": "cash", "amount": {"amount": 450, "currency": "usd"}},
        {"type": "cash", "amount": 450},
        {"type": "voucher", "amount": {"amount": 450, "currency": "USD"}},
    ],
    ids=["zero", "negative", "fraction", "string", "lowercase", "bare-number", "voucher"],
)
def test_malformed_tender_is_refused(api, db, till, latte, tender):
    body = {"lines": [{"sku": "LATTE", "quantity": 1}], "tenders": [tender]}
    before = state(db, *store_accounts(till))

    response = api.post("/v1/sales", token=till.token, json=body)

    assert_error(response, 422, "validation_error")
    assert state(db, *store_accounts(till)) == before


@pytest.mark.parametrize(
    "body",
    [
        {"lines": [], "tenders": [{"type": "cash", "amount": usd(450)}]},
        {"lines": [{"sku": "LATTE", "quantity": 1}], "tenders": []},
        {"tenders": [{"type": "cash", "amount": usd(450)}]},
        {"lines": [{"sku": "LATTE", "quantity": 1}]},
        {
            "lines": [{"sku": "LATTE", "quantity": 1}],
            "tenders": [{"type": "cash", "amount": usd(450)}],
            "customer": {},
        },
    ],
    ids=["no-lines", "no-tenders", "lines-missing", "tenders-missing", "empty-customer"],
)
def test_incomplete_sale_is_refused(api, db, till, latte, body):
    response = api.post("/v1/sales", token=till.token, json=body)

    assert_error(response, 422, "validation_error")
    assert count(db, Sale) == 0


def test_tender_in_another_currency_is_refused(api, db, till, latte):
    body = sale_request([("LATTE", 1)], [("cash", 450)])
    body["tenders"][0]["amount"]["currency"] = "EUR"
    before = state(db, *store_accounts(till))

    response = api.post("/v1/sales", token=till.token, json=body)

    assert_error(response, 422, "currency_mismatch")
    assert response.json["error"]["details"] == {"expected": "USD", "given": "EUR"}
    assert state(db, *store_accounts(till)) == before


def test_malformed_json_is_refused(api, db, till, latte):
    before = state(db, *store_accounts(till))

    response = api.post(
        "/v1/sales",
        token=till.token,
        data='{"lines": [{"sku": "LATTE", "quantity": 1}],',
        headers={"Content-Type": "application/json"},
    )

    assert_error(response, 400, "malformed_json")
    assert state(db, *store_accounts(till)) == before


def test_sale_without_an_idempotency_key_is_refused(api, db, till, latte, shopper):
    before = state(db, *watched(shopper, till))

    response = sell(
        api, till, [("LATTE", 1)], [("card_balance", 450)], shopper.card_number, key=None
    )

    assert_error(response, 400, "idempotency_key_missing")
    assert state(db, *watched(shopper, till)) == before


def test_replay_with_the_same_key_returns_the_same_sale_and_charges_once(
    api, db, till, latte, shopper
):
    first = sell(
        api, till, [("LATTE", 1)], [("card_balance", 450)], shopper.card_number, key="sale-1"
    )
    again = sell(
        api, till, [("LATTE", 1)], [("card_balance", 450)], shopper.card_number, key="sale-1"
    )

    assert first.status_code == again.status_code == 201
    assert again.json == first.json
    assert again.headers["Idempotent-Replayed"] == "true"
    assert count(db, Sale) == 1
    assert balance(db, shopper.card_account_id) == 1_550
    assert stars_of(api, shopper) == 9


def test_a_retried_sale_answers_as_it_did_though_the_card_has_since_run_dry(
    api, db, till, latte, shopper
):
    """The retry's claim of its key stops it before it could try the card again: the first
    answer, not a refusal for want of funds, and nothing moved."""
    first = sell(
        api, till, [("LATTE", 1)], [("card_balance", 450)], shopper.card_number, key="sale-1"
    )
    emptied = sell(
        api, till, [("LATTE", 1)], [("card_balance", 450)], shopper.card_number, key="sale-2"
    )
    assert first.status_code == emptied.status_code == 201
    while sell(api, till, [("LATTE", 1)], [("card_balance", 450)], shopper.card_number,
               key=f"more-{balance(db, shopper.card_account_id)}").status_code == 201:  # fmt: skip
        pass
    assert balance(db, shopper.card_account_id) < 450
    before = state(db, *watched(shopper, till))

    again = sell(
        api, till, [("LATTE", 1)], [("card_balance", 450)], shopper.card_number, key="sale-1"
    )

    assert again.status_code == 201
    assert again.json == first.json
    assert again.headers["Idempotent-Replayed"] == "true"
    assert state(db, *watched(shopper, till)) == before


def test_same_key_for_another_sale_is_a_conflict_and_charges_nothing_more(
    api, db, till, latte, shopper
):
    first = sell(
        api, till, [("LATTE", 1)], [("card_balance", 450)], shopper.card_number, key="sale-1"
    )
    assert first.status_code == 201
    before = state(db, *watched(shopper, till))

    other = sell(
        api, till, [("LATTE", 2)], [("card_balance", 900)], shopper.card_number, key="sale-1"
    )

    assert_error(other, 409, "idempotency_key_reused")
    assert state(db, *watched(shopper, till)) == before


def test_only_a_cashier_at_a_till_may_sell(api, db, latte, shopper):
    body = sale_request([("LATTE", 1)], [("card_balance", 450)], shopper.card_number)

    assert_error(api.post("/v1/sales", json=body), 401, "unauthenticated")
    assert_error(api.post("/v1/sales", token=shopper.token, json=body), 403, "forbidden")
    assert count(db, Sale) == 0
    assert balance(db, shopper.card_account_id) == 2_000


# -- Stars ----------------------------------------------------------------------------------


def test_shopper_earns_two_stars_per_unit_paid_from_the_card_balance(api, till, latte, shopper):
    response = sell(api, till, [("LATTE", 2)], [("card_balance", 900)], shopper.card_number)

    assert response.status_code == 201, response.json
    assert response.json["stars_earned"] == 18
    assert [line["stars_earned"] for line in response.json["lines"]] == [18]
    assert stars_of(api, shopper) == 18


def test_shopper_earns_one_star_per_unit_paid_otherwise(api, till, latte, muffin, shopper):
    response = sell(
        api,
        till,
        [("LATTE", 2), ("MUFFIN", 1)],
        [("cash", 1_000), ("bank_card", 233)],
        shopper.card_number,
    )

    assert response.status_code == 201, response.json
    assert response.json["stars_earned"] == 12  # 12.33 units
    assert stars_of(api, shopper) == 12


def test_line_stars_of_a_split_tender_sale_add_up_to_the_sales_stars(
    api, till, latte, muffin, shopper
):
    response = sell(
        api,
        till,
        [("LATTE", 2), ("MUFFIN", 1)],
        [("card_balance", 500), ("cash", 733)],
        shopper.card_number,
    )

    assert response.status_code == 201, response.json
    assert response.json["stars_earned"] == 17  # 2 x 5.00 + 1 x 7.33
    line_stars = [line["stars_earned"] for line in response.json["lines"]]
    assert sum(line_stars) == 17
    assert line_stars == [12, 5]  # 17 in proportion to 9.00 and 3.33
    assert stars_of(api, shopper) == 17


def test_stars_of_several_sales_add_up(api, till, latte, shopper):
    for _ in range(3):
        response = sell(api, till, [("LATTE", 1)], [("card_balance", 450)], shopper.card_number)
        assert response.status_code == 201

    assert stars_of(api, shopper) == 27


def test_anonymous_sale_earns_no_stars(api, db, till, latte):
    issued_before = stars_in_issuance(db)

    response = sell(api, till, [("LATTE", 2)], [("cash", 900)])

    assert response.status_code == 201, response.json
    assert response.json["stars_earned"] == 0
    sale = db.get(Sale, response.json["id"])
    assert units_posted(db, sale.ledger_transaction_id) == {"USD"}
    assert stars_in_issuance(db) == issued_before


def test_unregistered_gift_card_earns_no_stars(api, db, world, till, latte):
    batch = api.post("/v1/admin/card-batches", token=world.admin_token(), json={"size": 1})
    assert batch.status_code == 201, batch.json
    gift = batch.json["cards"][0]
    world.sell_gift_card(gift["number"], 1_000, till.token)

    response = sell(api, till, [("LATTE", 2)], [("card_balance", 900)], gift["number"])

    assert response.status_code == 201, response.json
    assert response.json["card_id"] == gift["id"]
    assert response.json["customer_id"] is None
    assert response.json["card_balance"] == usd(100)
    assert response.json["stars_earned"] == 0
    sale = db.get(Sale, response.json["id"])
    assert units_posted(db, sale.ledger_transaction_id) == {"USD"}


def test_top_ups_earn_no_stars(api, db, till, shopper):
    from_the_app = api.post(
        f"/v1/cards/{shopper.card_id}/top-ups",
        token=shopper.token,
        json={"amount": usd(1_000), "payment_token": "tok_visa"},
    )
    assert from_the_app.status_code == 201, from_the_app.json

    assert balance(db, shopper.card_account_id) == 3_000  # 20.00 at the till, 10.00 in the app
    assert stars_of(api, shopper) == 0
    assert stars_in_issuance(db) == 0


# -- refunds --------------------------------------------------------------------------------


def split_sale(api, till, shopper):
    """2 lattes and a muffin (12.33): 5.00 from the card, 5.33 cash, 2.00 bank card."""
    response = sell(
        api,
        till,
        [("LATTE", 2), ("MUFFIN", 1)],
        [("cash", 533), ("bank_card", 200), ("card_balance", 500)],
        shopper.card_number,
    )
    assert response.status_code == 201, response.json
    assert response.json["stars_earned"] == 17  # 2 x 5.00 + 7.33
    return response.json


def test_full_refund_returns_every_tender_to_where_it_came_from(
    api, db, till, latte, muffin, shopper
):
    accounts = (shopper.card_account_id, *store_accounts(till))
    before_sale = {a: balance(db, a) for a in accounts}
    sale = split_sale(api, till, shopper)

    response = refund(api, till, sale["id"])

    assert response.status_code == 201, response.json
    assert response.json["amount"] == usd(1_233)
    assert response.json["tenders"] == [
        {"type": "card_balance", "amount": usd(500)},
        {"type": "bank_card", "amount": usd(200)},
        {"type": "cash", "amount": usd(533)},
    ]
    assert {a: balance(db, a) for a in accounts} == before_sale
    after = api.get(f"/v1/sales/{sale['id']}", token=till.token).json
    assert [line["refunded_quantity"] for line in after["lines"]] == [2, 1]
    assert all(t["refunded"] == t["amount"] for t in after["tenders"])


def test_full_refund_takes_back_exactly_the_stars_the_sale_earned(
    api, db, till, latte, muffin, shopper
):
    earlier = sell(api, till, [("LATTE", 1)], [("card_balance", 450)], shopper.card_number)
    assert earlier.status_code == 201
    sale = split_sale(api, till, shopper)
    assert stars_of(api, shopper) == 9 + 17

    response = refund(api, till, sale["id"])

    assert response.status_code == 201, response.json
    assert response.json["stars_taken_back"] == 17
    assert response.json["stars_owed"] == 0
    assert stars_of(api, shopper) == 9
    assert stars_owed_account(db, shopper) is None


def test_partial_refunds_until_nothing_is_left_add_up_to_the_sale(
    api, db, till, latte, muffin, shopper
):
    accounts = (shopper.card_account_id, *store_accounts(till))
    before_sale = {a: balance(db, a) for a in accounts}
    sale = sold(
        api,
        till,
        [("MUFFIN", 3), ("LATTE", 2)],
        [("card_balance", 1_000), ("cash", 899)],
        shopper.card_number,
    )
    assert (sale["total"], sale["stars_earned"]) == (usd(1_899), 28)

    refunds = []
    for lines in ([("MUFFIN", 1)], [("LATTE", 1)], [("MUFFIN", 1)], [("MUFFIN", 1), ("LATTE", 1)]):
        response = refund(api, till, sale["id"], lines)
        assert response.status_code == 201, response.json
        refunds.append(response.json)

    assert sum(r["amount"]["amount"] for r in refunds) == 1_899
    assert sum(r["stars_taken_back"] + r["stars_owed"] for r in refunds) == 28
    assert [r["amount"]["amount"] for r in refunds] == [333, 450, 333, 783]
    assert stars_of(api, shopper) == 0
    assert {a: balance(db, a) for a in accounts} == before_sale
    left = state(db, *accounts)
    assert_error(refund(api, till, sale["id"]), 409, "nothing_to_refund")
    assert_error(refund(api, till, sale["id"], [("LATTE", 1)]), 422, "refund_exceeds_sale")
    assert state(db, *accounts) == left


def test_partial_refund_and_then_everything_left_adds_up_to_the_sale(
    api, db, till, latte, muffin, shopper
):
    sale = split_sale(api, till, shopper)

    first = refund(api, till, sale["id"], [("LATTE", 1)])
    rest = refund(api, till, sale["id"])

    assert first.status_code == rest.status_code == 201
    assert first.json["amount"]["amount"] + rest.json["amount"]["amount"] == 1_233
    assert first.json["stars_taken_back"] + rest.json["stars_taken_back"] == 17
    assert [(line["sku"], line["quantity"]) for line in rest.json["lines"]] == [
        ("LATTE", 1),
        ("MUFFIN", 1),
    ]
    assert stars_of(api, shopper) == 0


def test_refund_stars_of_each_line_add_up_to_what_the_line_earned(
    api, till, latte, muffin, shopper
):
    sale = sold(api, till, [("MUFFIN", 3)], [("card_balance", 999)], shopper.card_number)
    assert sale["stars_earned"] == 19  # 2 x 9.99

    stars = [refund(api, till, sale["id"], [("MUFFIN", 1)]).json["stars_taken_back"]
             for _ in range(3)]  # fmt: skip

    assert stars == [6, 6, 7]
    assert stars_of(api, shopper) == 0


@pytest.mark.parametrize(
    "lines",
    [[("LATTE", 3)], [("MUFFIN", 1)], [("LATTE", 2), ("LATTE", 1)]],
    ids=["more-than-bought", "not-on-the-sale", "more-in-two-lines"],
)
def test_refunding_more_than_was_bought_is_refused(api, db, till, latte, muffin, shopper, lines):
    sale = sold(api, till, [("LATTE", 2)], [("card_balance", 900)], shopper.card_number)
    before = state(db, *watched(shopper, till))

    response = refund(api, till, sale["id"], lines)

    assert_error(response, 422, "refund_exceeds_sale")
    assert state(db, *watched(shopper, till)) == before
    assert stars_of(api, shopper) == 18


def test_refunding_more_than_is_left_after_a_partial_refund_is_refused(
    api, db, till, latte, shopper
):
    sale = sold(api, till, [("LATTE", 2)], [("card_balance", 900)], shopper.card_number)
    assert refund(api, till, sale["id"], [("LATTE", 1)]).status_code == 201
    before = state(db, *watched(shopper, till))

    response = refund(api, till, sale["id"], [("LATTE", 2)])

    assert_error(response, 422, "refund_exceeds_sale")
    assert state(db, *watched(shopper, till)) == before


@pytest.mark.parametrize("quantity", [0, -1, 1.5, 1_000])
def test_refund_with_a_bad_quantity_is_refused(api, db, till, latte, shopper, quantity):
    sale = sold(api, till, [("LATTE", 2)], [("card_balance", 900)], shopper.card_number)
    before = state(db, *watched(shopper, till))

    response = refund(api, till, sale["id"], [("LATTE", quantity)])

    assert_error(response, 422, "validation_error")
    assert state(db, *watched(shopper, till)) == before


def test_refund_goes_to_the_card_balance_then_the_bank_card_then_cash(
    api, db, till, latte, muffin, shopper
):
    _, cash, bank_card = store_accounts(till)
    sale = split_sale(api, till, shopper)  # card 5.00, bank card 2.00, cash 5.33
    card_before = balance(db, shopper.card_account_id)
    cash_before, bank_before = balance(db, cash), balance(db, bank_card)

    def refunded(lines):
        response = refund(api, till, sale["id"], lines)
        assert response.status_code == 201, response.json
        return [(t["type"], t["amount"]["amount"]) for t in response.json["tenders"]]

    assert refunded([("MUFFIN", 1)]) == [("card_balance", 333)]
    assert refunded([("LATTE", 1)]) == [("card_balance", 167), ("bank_card", 200), ("cash", 83)]
    assert refunded([("LATTE", 1)]) == [("cash", 450)]

    assert balance(db, shopper.card_account_id) == card_before + 500
    assert balance(db, bank_card) == bank_before + 200
    assert balance(db, cash) == cash_before + 533
    tenders = api.get(f"/v1/sales/{sale['id']}", token=till.token).json["tenders"]
    assert {t["type"]: (t["amount"], t["refunded"]) for t in tenders} == {
        "card_balance": (usd(500), usd(500)),
        "bank_card": (usd(200), usd(200)),
        "cash": (usd(533), usd(533)),
    }


def test_refund_of_a_cash_sale_never_touches_a_card(api, db, till, latte, shopper):
    sale = sold(api, till, [("LATTE", 2)], [("cash", 900)], shopper.card_number)

    response = refund(api, till, sale["id"])

    assert response.status_code == 201, response.json
    assert response.json["tenders"] == [{"type": "cash", "amount": usd(900)}]
    assert balance(db, shopper.card_account_id) == 2_000


def test_refund_replay_with_the_same_key_refunds_once(api, db, till, latte, shopper):
    sale = sold(api, till, [("LATTE", 2)], [("card_balance", 900)], shopper.card_number)

    first = refund(api, till, sale["id"], [("LATTE", 1)], key="refund-1")
    again = refund(api, till, sale["id"], [("LATTE", 1)], key="refund-1")

    assert first.status_code == again.status_code == 201
    assert again.json == first.json
    assert again.headers["Idempotent-Replayed"] == "true"
    assert count(db, Refund) == 1
    assert balance(db, shopper.card_account_id) == 2_000 - 900 + 450


def test_refund_without_an_idempotency_key_is_refused(api, db, till, latte, shopper):
    sale = sold(api, till, [("LATTE", 2)], [("card_balance", 900)], shopper.card_number)
    before = state(db, *watched(shopper, till))

    response = refund(api, till, sale["id"], key=None)

    assert_error(response, 400, "idempotency_key_missing")
    assert state(db, *watched(shopper, till)) == before


def test_another_stores_till_cannot_refund_a_sale(api, db, world, till, latte, shopper):
    sale = sold(api, till, [("LATTE", 2)], [("card_balance", 900)], shopper.card_number)
    elsewhere = Till(*world.till())
    before = state(db, *watched(shopper, till))

    response = refund(api, elsewhere, sale["id"])

    assert_error(response, 404, "sale_not_found")
    assert_error(api.get(f"/v1/sales/{sale['id']}", token=elsewhere.token), 404, "sale_not_found")
    assert state(db, *watched(shopper, till)) == before


def test_another_till_of_the_same_store_can_refund_a_sale(api, db, world, till, latte, shopper):
    sale = sold(api, till, [("LATTE", 2)], [("card_balance", 900)], shopper.card_number)
    next_till = Till(*world.till(store=till.store))

    response = refund(api, next_till, sale["id"])

    assert response.status_code == 201, response.json
    assert balance(db, shopper.card_account_id) == 2_000


# -- refunds of Stars already spent -----------------------------------------------------------


def test_refund_of_spent_stars_takes_what_is_left_and_records_the_rest_as_owed(
    app, api, db, till, latte, shopper
):
    sale = sold(api, till, [("LATTE", 2)], [("card_balance", 900)], shopper.card_number)
    assert sale["stars_earned"] == 18
    spend_stars(app, db, shopper, 10)

    response = refund(api, till, sale["id"])

    assert response.status_code == 201, response.json
    assert (response.json["stars_taken_back"], response.json["stars_owed"]) == (8, 10)
    assert stars_of(api, shopper) == 0
    owed = stars_owed_account(db, shopper).id
    assert balance(db, owed) == -10
    # Every Star is somewhere: the shopper's, owed by the shopper, or back in issuance.
    assert stars_in_issuance(db) + balance(db, shopper.stars_account_id) + balance(db, owed) == 0


def test_refund_when_every_star_was_spent_owes_them_all(app, api, db, till, latte, shopper):
    sale = sold(api, till, [("LATTE", 2)], [("card_balance", 900)], shopper.card_number)
    spend_stars(app, db, shopper, 18)

    response = refund(api, till, sale["id"], [("LATTE", 1)])

    assert response.status_code == 201, response.json
    assert (response.json["stars_taken_back"], response.json["stars_owed"]) == (0, 9)
    assert stars_of(api, shopper) == 0
    assert balance(db, stars_owed_account(db, shopper).id) == -9


def test_next_sales_stars_repay_the_stars_owed_first(app, api, db, till, latte, shopper):
    sale = sold(api, till, [("LATTE", 2)], [("card_balance", 900)], shopper.card_number)
    spend_stars(app, db, shopper, 10)
    assert refund(api, till, sale["id"]).json["stars_owed"] == 10
    owed = stars_owed_account(db, shopper).id

    def stars_everywhere():
        return (
            stars_of(api, shopper),
            balance(db, owed),
            stars_in_issuance(db) + balance(db, shopper.stars_account_id) + balance(db, owed),
        )

    # (shopper's Stars, owed, sum over every STAR account: no Star created or lost)
    assert stars_everywhere() == (0, -10, 0)
    repaying = sell(api, till, [("LATTE", 1)], [("card_balance", 450)], shopper.card_number)
    assert repaying.json["stars_earned"] == 9
    assert stars_everywhere() == (0, -1, 0)
    paid_off = sell(api, till, [("LATTE", 2)], [("cash", 900)], shopper.card_number)
    assert paid_off.json["stars_earned"] == 9
    assert stars_everywhere() == (8, 0, 0)
    after = sell(api, till, [("LATTE", 1)], [("card_balance", 450)], shopper.card_number)
    assert after.json["stars_earned"] == 9
    assert stars_everywhere() == (17, 0, 0)


# -- refunds to a card that was reported lost ---------------------------------------------------


def report_lost(api, shopper, card_id) -> int:
    response = api.post(f"/v1/cards/{card_id}/report-lost", token=shopper.token)
    assert response.status_code == 200, response.json
    return response.json["replacement_card"]["id"]


def card_balance_of(api, shopper, card_id) -> int:
    response = api.get(f"/v1/cards/{card_id}", token=shopper.token)
    assert response.status_code == 200, response.json
    return response.json["balance"]["amount"]


def test_refund_to_a_card_reported_lost_goes_to_its_replacement(api, till, latte, shopper):
    sale = sold(api, till, [("LATTE", 2)], [("card_balance", 900)], shopper.card_number)
    replacement = report_lost(api, shopper, shopper.card_id)
    assert card_balance_of(api, shopper, replacement) == 1_100

    response = refund(api, till, sale["id"])

    assert response.status_code == 201, response.json
    assert response.json["tenders"] == [{"type": "card_balance", "amount": usd(900)}]
    assert card_balance_of(api, shopper, replacement) == 2_000
    assert card_balance_of(api, shopper, shopper.card_id) == 0


def test_refund_follows_a_chain_of_replacements(api, till, latte, shopper):
    sale = sold(api, till, [("LATTE", 2)], [("card_balance", 900)], shopper.card_number)
    second = report_lost(api, shopper, shopper.card_id)
    third = report_lost(api, shopper, second)

    response = refund(api, till, sale["id"], [("LATTE", 1)])

    assert response.status_code == 201, response.json
    assert card_balance_of(api, shopper, third) == 1_100 + 450
    assert card_balance_of(api, shopper, second) == 0
    assert card_balance_of(api, shopper, shopper.card_id) == 0


# -- real threads, real commits -------------------------------------------------------------


@dataclass(frozen=True)
class Live:
    """A committed world: a store with two tills, a latte, and a shopper whose primary card
    holds 20.00 from a bank card (tok_visa) and who has a second, empty card."""

    app: object
    api: Api
    tills: tuple[Till, Till]
    shopper: Shopper
    second_card_id: int

    def session(self):
        return database(self.app).sessions()

    def client(self) -> Api:
        return Api(self.app.test_client())


@pytest.fixture
def live(app, committed) -> Live:
    api = Api(app.test_client())  # no ``db`` fixture: every request commits for real
    with database(app).sessions() as s:
        world = World(app, s, api)
        store = world.store()
        devices = [world.device(store, "pos") for _ in range(2)]
        cashiers = [world.staff("cashier", store=store, pin="1357") for _ in range(2)]
        world.product(sku="LATTE", price=450, name="Latte")
        s.commit()
    tokens = sign_in_tills(api, devices, cashiers)
    tills = [Till(store, device, token) for (device, _), token in zip(devices, tokens, strict=True)]
    signup = api.post(
        "/v1/auth/signup",
        json={"email": "race@example.test", "password": "a long password", "name": "Race"},
        key=None,
    )
    assert signup.status_code == 201, signup.json
    token, me = signup.json["token"], signup.json["customer"]
    with app.app_context(), database(app).sessions() as s:
        second = {"id": issue_card(s, kind="digital", customer_id=me["id"]).id}  # a second card
        s.commit()
    loaded = api.post(
        f"/v1/cards/{me['cards'][0]['id']}/top-ups",
        token=token,
        json={"amount": usd(2_000), "payment_token": "tok_visa"},
    )
    assert loaded.status_code == 201, loaded.json
    with database(app).sessions() as s:
        card = s.get(Card, me["cards"][0]["id"])
        shopper = Shopper(
            token,
            me["id"],
            s.get(Customer, me["id"]).stars_account_id,
            card.id,
            card.number,
            card.account_id,
        )
    return Live(app, api, tuple(tills), shopper, second["id"])


def succeeded(response, *refusal: tuple[int, str]) -> bool:
    """True for a 201; otherwise the answer must be one of the expected refusals."""
    if response.status_code == 201:
        return True
    assert (response.status_code, response.json["error"]["code"]) in refusal, response.json
    return False


@pytest.mark.concurrent
def test_one_card_sold_from_at_two_tills_topped_up_and_transferred_from_at_once_never_overdraws(
    live,
):
    shopper = live.shopper
    start = threading.Barrier(4)

    def sell_repeatedly(till):
        api = live.client()
        start.wait()
        return [
            sell(api, till, [("LATTE", 1)], [("card_balance", 450)], shopper.card_number)
            for _ in range(6)
        ]

    def top_up():
        api = live.client()
        start.wait()
        return api.post(
            f"/v1/cards/{shopper.card_id}/top-ups",
            token=shopper.token,
            json={"amount": usd(1_000), "payment_token": "tok_visa"},
        )

    def transfer():
        api = live.client()
        start.wait()
        return api.post(
            f"/v1/cards/{shopper.card_id}/transfers",
            token=shopper.token,
            json={"to_card_id": live.second_card_id, "amount": usd(700)},
        )

    with ThreadPoolExecutor(4) as pool:
        selling = [pool.submit(sell_repeatedly, till) for till in live.tills]
        topping_up, transferring = pool.submit(top_up), pool.submit(transfer)
        sales = [response for till in selling for response in till.result()]
        top_up_answer, transfer_answer = topping_up.result(), transferring.result()

    out_of_money = (409, "insufficient_funds")
    assert top_up_answer.status_code == 201, top_up_answer.json
    sold = sum(succeeded(response, out_of_money) for response in sales)
    transferred = 700 if succeeded(transfer_answer, out_of_money) else 0
    assert 2 <= sold <= 6  # 30.00 at most pays for six 4.50s; 13.00 at least for two
    with live.session() as s:
        card_balance = ledger.balance_of(s, shopper.card_account_id)
        stars = ledger.balance_of(s, shopper.stars_account_id)
        sales_recorded = s.scalar(select(func.count()).select_from(Sale))
        posted_to_card = s.scalar(
            select(func.sum(Posting.amount)).where(Posting.account_id == shopper.card_account_id)
        )
    assert card_balance >= 0
    assert card_balance == 2_000 + 1_000 - 450 * sold - transferred  # no lost update
    assert posted_to_card == card_balance
    assert sales_recorded == sold
    assert stars == 9 * sold
    me = live.api.get("/v1/me", token=shopper.token).json
    assert {card["id"]: card["balance"]["amount"] for card in me["cards"]} == {
        shopper.card_id: card_balance,
        live.second_card_id: transferred,
    }


@pytest.mark.concurrent
def test_refunds_of_one_sale_from_two_tills_at_once_never_refund_more_than_was_sold(live):
    shopper, (first_till, second_till) = live.shopper, live.tills
    sale = sold(
        live.api, first_till, [("LATTE", 4)], [("card_balance", 1_800)], shopper.card_number
    )
    start = threading.Barrier(8)

    def refund_one_latte(n):
        api = live.client()
        start.wait()
        return refund(api, (first_till, second_till)[n % 2], sale["id"], [("LATTE", 1)])

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(refund_one_latte, range(8)))

    too_many = [(422, "refund_exceeds_sale"), (409, "nothing_to_refund")]
    refunded = [a.json for a in answers if succeeded(a, *too_many)]
    assert len(refunded) == 4
    assert sum(r["amount"]["amount"] for r in refunded) == 1_800
    assert sum(r["stars_taken_back"] for r in refunded) == 36
    with live.session() as s:
        assert ledger.balance_of(s, shopper.card_account_id) == 2_000
        assert ledger.balance_of(s, shopper.stars_account_id) == 0
        assert s.scalar(select(func.count()).select_from(Refund)) == 4


WAITING_ON_A_LOCK = text(
    "SELECT count(*) FROM pg_stat_activity "
    "WHERE datname = current_database() AND wait_event_type = 'Lock'"
)


def wait_until_it_waits_on_a_lock(engine, request):
    """Return once the request running in ``request`` (a future) waits on a row lock, or
    has finished: the event itself, read from PostgreSQL, not a guess at how long it takes."""
    with engine.connect() as watcher:
        while not request.done():
            if watcher.execute(WAITING_ON_A_LOCK).scalar():
                return
            watcher.rollback()


@pytest.mark.concurrent
def test_refund_while_the_shopper_spends_stars_takes_back_only_what_is_left(live, db_kind):
    if db_kind != "postgresql":
        pytest.skip("SQLite runs one writer at a time from BEGIN: the two cannot interleave")
    shopper, till = live.shopper, live.tills[0]
    sale = sold(live.api, till, [("LATTE", 2)], [("card_balance", 900)], shopper.card_number)
    assert sale["stars_earned"] == 18
    with live.session() as spending, ThreadPoolExecutor(1) as pool:
        # The shopper redeems 10 of their 18 Stars: written, locked, not committed yet.
        spend_stars(live.app, spending, shopper, 10)
        refunding = pool.submit(refund, live.client(), till, sale["id"])
        wait_until_it_waits_on_a_lock(database(live.app).engine, refunding)
        spending.commit()
        answer = refunding.result()

    assert answer.status_code == 201, answer.json
    assert (answer.json["stars_taken_back"], answer.json["stars_owed"]) == (8, 10)
    assert stars_of(live.api, shopper) == 0
    with live.session() as s:
        owed = ledger.account_by_code(s, f"stars:owed:{shopper.customer_id}")
        assert ledger.balance_of(s, owed.id) == -10


def test_refunding_only_a_free_line_says_there_is_nothing_to_give_back(api, db, world, till, latte):
    world.product(sku="SAMPLE", price=0, name="Free sample")
    sale = sold(api, till, [("LATTE", 1), ("SAMPLE", 1)], [("cash", 450)])
    before = count(db, Refund)
    response = refund(api, till, sale["id"], [("SAMPLE", 1)])
    assert_error(response, 409, "nothing_to_refund")
    assert count(db, Refund) == before
    assert refund(api, till, sale["id"]).status_code == 201  # the rest still refunds


def test_refund_with_an_empty_list_of_lines_is_invalid(api, db, till, latte):
    sale = sold(api, till, [("LATTE", 1)], [("cash", 450)])
    response = api.post(f"/v1/sales/{sale['id']}/refunds", token=till.token, json={"lines": []})
    assert_error(response, 422, "validation_error")
    assert count(db, Refund) == 0


def test_a_sale_costs_few_round_trips_to_postgresql(live, engine, db_kind):
    """A sale from the card balance, with its Stars, receipt, events and idempotency record,
    counted on the wire from the first byte of the request to the commit."""
    if db_kind != "postgresql":
        pytest.skip("round trips are PostgreSQL's")
    till, shopper = live.tills[0], live.shopper
    sale = {
        "customer": {"card_number": shopper.card_number},
        "lines": [{"sku": "LATTE", "quantity": 1}],
        "tenders": [{"type": "card_balance", "amount": usd(450)}],
    }
    for _ in range(2):  # the pool's connections warmed up
        assert live.api.post("/v1/sales", token=till.token, json=sale).status_code == 201
    with wire(engine) as seen:
        sold = live.api.post("/v1/sales", token=till.token, json=sale)
    assert sold.status_code == 201, sold.json
    # The caller with the transaction's BEGIN, the products with the key's claim, the card
    # with its shopper, the ledger's post, the sale's INSERT, and everything else with the
    # COMMIT; plus one for each statement prepared on this connection on the way.
    assert seen.round_trips - seen.preparations == 6, seen.flights


def test_sales_reach_the_kiosk_counts_soon_after_they_commit(live):
    """Counted after the commit, in the background, with no kiosk asking."""
    from app.kiosk.models import ProductStoreCount
    from app.sales import api as sales_api

    till, shopper = live.tills[0], live.shopper
    sale = {
        "customer": {"card_number": shopper.card_number},
        "lines": [{"sku": "LATTE", "quantity": 2}],
        "tenders": [{"type": "card_balance", "amount": usd(900)}],
    }
    sales_api._counted_at[0] = 0.0  # as if none was counted in the last second
    assert live.api.post("/v1/sales", token=till.token, json=sale).status_code == 201
    deadline = time.monotonic() + 10
    while True:
        with live.session() as s:
            left = s.scalar(select(func.count()).select_from(Sale).where(~Sale.kiosk_counted))
            sold = s.scalar(select(func.sum(ProductStoreCount.sold)))
        if left == 0 or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert left == 0
    assert sold == 2

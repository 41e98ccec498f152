"""Shifts at the till through real HTTP: one open shift per till, the sales, refunds and top-ups
rung up in it, and the close: a report (counts and totals by tender, expected and counted
cash) kept with the shift, and the closing cashier's session ended."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from app.payments.models import TopUp
from app.sales.models import Refund, Sale
from app.shifts.models import Shift
from tests.api import test_sales
from tests.api.test_sales import Till, assert_error, new_shopper, refund, sold, usd

till, latte, muffin = test_sales.till, test_sales.latte, test_sales.muffin


def open_shift(api, till, float_minor=10_000, **kw):
    return api.post("/v1/pos/shifts", token=till.token, json={"float": usd(float_minor)}, **kw)


def opened(api, till, float_minor=10_000) -> dict:
    response = open_shift(api, till, float_minor)
    assert response.status_code == 201, response.json
    return response.json


def close(api, till, shift_id, counted_minor, **kw):
    return api.post(
        f"/v1/pos/shifts/{shift_id}/close", token=till.token, json={"counted": usd(counted_minor)},
        **kw,
    )  # fmt: skip


def signed_in(world, till: Till) -> Till:
    """Another cashier session on the same till (the first one's ended with its shift)."""
    from app.stores.services import register_device  # noqa: F401 (the till exists already)

    cashier = world.staff("cashier", store=till.store, pin="1357")
    from app.auth.services import issue_token

    token, _ = issue_token(world.db, "cashier", 3600, staff_id=cashier.id, device_id=till.device.id)
    return Till(till.store, till.device, token)


# -- opening -----------------------------------------------------------------------------------


def test_a_cashier_opens_a_shift_with_the_float(api, till):
    shift = opened(api, till, 15_000)

    assert shift == {
        "id": shift["id"],
        "device_id": till.device.id,
        "store_id": till.store.id,
        "cashier": shift["cashier"],
        "opened_at": shift["opened_at"],
        "float": usd(15_000),
        "status": "open",
        "closed_at": None,
        "report": None,
    }
    assert shift["cashier"]["role"] == "cashier"
    assert shift["cashier"]["store_id"] == till.store.id
    current = api.get("/v1/pos/shifts/current", token=till.token)
    assert current.status_code == 200
    assert current.json == shift


def test_an_empty_drawer_is_a_float_too(api, till):
    assert opened(api, till, 0)["float"] == usd(0)


def test_one_open_shift_per_till(api, world, till):
    first = opened(api, till)
    other_cashier = signed_in(world, till)

    response = open_shift(api, other_cashier)

    assert_error(response, 409, "shift_open")
    assert response.json["error"]["details"]["shift_id"] == first["id"]


def test_tills_open_shifts_of_their_own(api, world, till):
    other = Till(*world.till(till.store))

    assert opened(api, till)["id"] != opened(api, other)["id"]


def test_opening_again_with_the_same_key_answers_the_same_shift(api, till):
    first = open_shift(api, till, key="open-the-shift-1")
    again = open_shift(api, till, key="open-the-shift-1")

    assert first.status_code == again.status_code == 201
    assert again.json == first.json
    assert again.headers.get("Idempotent-Replayed") == "true"


def test_a_till_with_no_shift_says_so(api, till):
    assert_error(api.get("/v1/pos/shifts/current", token=till.token), 404, "no_open_shift")


def test_a_float_in_another_currency_is_refused(api, till):
    response = api.post(
        "/v1/pos/shifts", token=till.token, json={"float": {"amount": 100, "currency": "EUR"}}
    )
    assert_error(response, 422, "currency_mismatch")


@pytest.mark.parametrize("amount", [-1, 1.5, "100", None])
def test_a_float_that_is_not_a_whole_amount_is_refused(api, till, amount):
    response = api.post(
        "/v1/pos/shifts", token=till.token, json={"float": {"amount": amount, "currency": "USD"}}
    )
    assert_error(response, 422, "validation_error")


@pytest.mark.parametrize("who", ["shopper", "device", "admin"])
def test_only_a_cashier_session_opens_a_shift(api, world, till, who):
    if who == "shopper":
        token, _ = world.shopper()
    elif who == "device":
        _, token = world.device(till.store, "pos")
    else:
        token = world.admin_token()

    response = api.post("/v1/pos/shifts", token=token, json={"float": usd(100)})

    assert_error(response, 403, "forbidden")


# -- what joins a shift ------------------------------------------------------------------------


def test_sales_refunds_and_top_ups_name_the_tills_open_shift(api, db, world, till, latte):
    before = sold(api, till, [("LATTE", 1)], [("cash", 450)])
    shift = opened(api, till)
    sale = sold(api, till, [("LATTE", 2)], [("cash", 900)])
    given_back = refund(api, till, sale["id"], [("LATTE", 1)]).json
    shopper = new_shopper(world, db)
    top_up = world.load(shopper.card_id, 1_000, till.token)
    other = Till(*world.till(till.store))
    elsewhere = sold(api, other, [("LATTE", 1)], [("cash", 450)])

    assert before["shift_id"] is None
    assert sale["shift_id"] == shift["id"]
    assert db.get(Sale, sale["id"]).shift_id == shift["id"]
    assert db.get(Refund, given_back["id"]).shift_id == shift["id"]
    assert db.get(TopUp, top_up["id"]).shift_id == shift["id"]
    assert elsewhere["shift_id"] is None


def test_a_refund_joins_the_shift_of_the_till_that_gives_the_money_back(
    api, db, world, till, latte
):
    sale = sold(api, till, [("LATTE", 1)], [("cash", 450)])
    other = Till(*world.till(till.store))
    shift = opened(api, other)

    given_back = refund(api, other, sale["id"]).json

    assert db.get(Refund, given_back["id"]).shift_id == shift["id"]


# -- closing -----------------------------------------------------------------------------------


def test_the_close_report_counts_by_tender_and_the_cash_the_drawer_should_hold(
    api, db, world, till, latte, muffin
):
    shopper = new_shopper(world, db)
    world.load(shopper.card_id, 5_000, till.token, tender="bank_card")  # before the shift
    shift = opened(api, till, 10_000)
    # Sales: cash 9.00 handed 20.00; card 4.50 + bank card 3.33; cash 4.50 + bank card 4.50.
    cash_sale = api.post("/v1/sales", token=till.token, json={
        "lines": [{"sku": "LATTE", "quantity": 2}],
        "tenders": [{"type": "cash", "amount": usd(900), "given": usd(2_000)}]}).json  # fmt: skip
    sold(api, till, [("LATTE", 1), ("MUFFIN", 1)], [("card_balance", 450), ("bank_card", 333)],
         shopper.card_number)  # fmt: skip
    split = sold(api, till, [("LATTE", 2)], [("cash", 450), ("bank_card", 450)])
    # Refunds: one latte of the cash sale (4.50 cash); the split sale's two lattes: bank card
    # first, then cash.
    refund(api, till, cash_sale["id"], [("LATTE", 1)])
    refund(api, till, split["id"])
    # Top-ups: 10.00 cash, 25.00 bank card.
    world.load(shopper.card_id, 1_000, till.token, tender="cash")
    world.load(shopper.card_id, 2_500, till.token, tender="bank_card")

    response = close(api, till, shift["id"], 16_000)

    assert response.status_code == 200, response.json
    closed = response.json
    assert closed["status"] == "closed"
    assert closed["closed_at"] is not None
    report = closed["report"]
    assert report["store"] == {"name": till.store.name, "address": till.store.address}
    assert report["till"] == till.device.name
    assert report["float"] == usd(10_000)
    assert report["sales"] == {
        "count": 3,
        "total": usd(900 + 783 + 900),
        "by_tender": {"card_balance": usd(450), "cash": usd(1_350), "bank_card": usd(783)},
    }
    assert report["refunds"] == {
        "count": 2,
        "total": usd(450 + 900),
        "by_tender": {"card_balance": usd(0), "cash": usd(900), "bank_card": usd(450)},
    }
    assert report["top_ups"] == {
        "count": 2,
        "total": usd(3_500),
        "by_tender": {"cash": usd(1_000), "bank_card": usd(2_500)},
    }
    # float + cash sales - cash refunds + cash top-ups: the 11.00 change never stayed.
    expected = 10_000 + 1_350 - 900 + 1_000
    assert report["expected_cash"] == usd(expected)
    assert report["counted_cash"] == usd(16_000)
    assert report["difference"] == usd(16_000 - expected)


def test_a_drawer_short_of_cash_shows_a_negative_difference(api, till, latte):
    shift = opened(api, till, 5_000)
    sold(api, till, [("LATTE", 1)], [("cash", 450)])

    report = close(api, till, shift["id"], 5_000).json["report"]

    assert report["expected_cash"] == usd(5_450)
    assert report["difference"] == usd(-450)


def test_the_report_is_kept_with_the_shift(api, world, till, latte):
    shift = opened(api, till)
    sold(api, till, [("LATTE", 1)], [("cash", 450)])
    closed = close(api, till, shift["id"], 10_450).json
    later = signed_in(world, till)
    sold(api, later, [("LATTE", 1)], [("cash", 450)])  # after the close: in no shift

    again = api.get(f"/v1/pos/shifts/{shift['id']}", token=later.token)

    assert again.status_code == 200, again.json
    assert again.json == closed
    assert again.json["report"]["sales"]["count"] == 1


def test_closing_ends_the_cashiers_session(api, world, till, latte):
    shift = opened(api, till)

    assert close(api, till, shift["id"], 10_000).status_code == 200

    after = api.get("/v1/pos/shifts/current", token=till.token)
    assert_error(after, 401, "unauthenticated")
    later = signed_in(world, till)
    assert_error(api.get("/v1/pos/shifts/current", token=later.token), 404, "no_open_shift")
    assert opened(api, later)["id"] != shift["id"]


def test_closing_again_with_the_same_key_answers_the_same_report(api, db, till, latte):
    shift = opened(api, till)
    first = close(api, till, shift["id"], 10_000, key="close-the-shift-1")

    again = close(api, till, shift["id"], 10_000, key="close-the-shift-1")

    assert first.status_code == 200, first.json
    # The session ended with the close: the replay is refused as unauthenticated, and the
    # shift was closed once.
    assert again.status_code == 401
    assert db.get(Shift, shift["id"]).status == "closed"


def test_a_shift_of_another_till_cannot_be_closed(api, db, world, till):
    shift = opened(api, till)
    other = Till(*world.till(till.store))

    assert_error(close(api, other, shift["id"], 10_000), 404, "shift_not_found")
    assert db.get(Shift, shift["id"]).status == "open"
    assert api.get("/v1/pos/shifts/current", token=till.token).status_code == 200


def test_a_closed_shift_cannot_be_closed_again(api, db, world, till):
    shift = opened(api, till)
    assert close(api, till, shift["id"], 10_000).status_code == 200
    later = signed_in(world, till)
    report = db.get(Shift, shift["id"]).report

    assert_error(close(api, later, shift["id"], 1), 409, "shift_closed")
    assert db.get(Shift, shift["id"]).report == report


def test_a_shift_of_another_store_is_not_found(api, world, till):
    shift = opened(api, till)
    elsewhere = Till(*world.till())

    assert_error(api.get(f"/v1/pos/shifts/{shift['id']}", token=elsewhere.token), 404,
                 "shift_not_found")  # fmt: skip
    assert_error(close(api, elsewhere, shift["id"], 0), 404, "shift_not_found")


def test_a_shift_of_another_till_of_the_store_can_be_read(api, world, till):
    shift = opened(api, till)
    other = Till(*world.till(till.store))

    response = api.get(f"/v1/pos/shifts/{shift['id']}", token=other.token)

    assert response.status_code == 200
    assert response.json == shift


def test_a_sale_after_the_close_joins_no_shift(api, db, world, till, latte):
    shift = opened(api, till)
    close(api, till, shift["id"], 10_000)
    later = signed_in(world, till)

    sale = sold(api, later, [("LATTE", 1)], [("cash", 450)])

    assert sale["shift_id"] is None
    assert db.scalars(select(Sale.id).where(Sale.shift_id == shift["id"])).all() == []

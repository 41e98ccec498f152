"""Gift cards sold at the till: a card from a batch is inactive, and refuses everything, until
a till sells it (activated and loaded together, or not at all); the till's look-up answers any
card, sold or not, with its holder's first name and Stars."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from app.cards.models import Card
from app.payments.models import TopUp


def usd(amount: int) -> dict:
    return {"amount": amount, "currency": "USD"}


@pytest.fixture
def till(world):
    _store, _device, token = world.till()
    return token


@pytest.fixture
def gift(api, world):
    """A gift card fresh from a batch: id, number, security_code."""
    response = api.post("/v1/admin/card-batches", token=world.admin_token(), json={"size": 1})
    assert response.status_code == 201, response.json
    return response.json["cards"][0]


def sell(api, till, number, amount=2_000, tender="cash", **kw):
    return api.post(
        "/v1/pos/gift-cards",
        token=till,
        json={"card": {"card_number": number}, "amount": usd(amount), "tender": tender},
        **kw,
    )


def test_a_card_from_a_batch_starts_inactive_with_nothing_on_it(api, db, till, gift):
    assert db.get(Card, gift["id"]).status == "inactive"
    found = api.post("/v1/pos/lookups", token=till, json={"card_number": gift["number"]}, key=None)
    assert found.status_code == 200, found.json
    assert found.json["status"] == "inactive"
    assert found.json["balance"] == usd(0)
    assert found.json["held"] == usd(0)
    assert found.json["holder"] is None


def test_selling_a_gift_card_activates_and_loads_it_in_one_go(api, db, till, gift):
    response = sell(api, till, gift["number"], 2_500, "bank_card")
    assert response.status_code == 201, response.json
    assert response.json["card"]["id"] == gift["id"]
    assert response.json["card"]["status"] == "active"
    assert response.json["card"]["balance"] == usd(2_500)
    assert response.json["top_up"]["amount"] == usd(2_500)
    assert response.json["top_up"]["source"] == "bank_card"
    assert response.json["top_up"]["status"] == "succeeded"
    assert db.get(Card, gift["id"]).status == "active"


def test_a_sold_gift_card_is_not_sold_again(api, till, gift):
    assert sell(api, till, gift["number"]).status_code == 201
    again = sell(api, till, gift["number"])
    assert again.status_code == 409
    assert again.json["error"]["code"] == "card_already_sold"


def test_the_same_sale_retried_with_its_key_is_one_sale(api, db, till, gift):
    first = sell(api, till, gift["number"], key="gift-sale-1")
    retried = sell(api, till, gift["number"], key="gift-sale-1")
    assert retried.status_code == 201
    assert retried.headers["Idempotent-Replayed"] == "true"
    assert retried.json == first.json
    assert len(db.scalars(select(TopUp).where(TopUp.card_id == gift["id"])).all()) == 1


@pytest.mark.parametrize(
    ("amount", "code"), [(100, "amount_out_of_range"), (999_999, "amount_out_of_range")]
)
def test_an_amount_outside_the_top_up_limits_sells_nothing(api, db, till, gift, amount, code):
    response = sell(api, till, gift["number"], amount)  # Api.call checks nothing changed
    assert response.status_code == 422
    assert response.json["error"]["code"] == code
    assert db.get(Card, gift["id"]).status == "inactive"


def test_a_digital_card_is_not_a_gift_card(api, db, world, till):
    _token, me = world.shopper()
    number = db.get(Card, me["cards"][0]["id"]).number
    response = sell(api, till, number)
    assert response.status_code == 422
    assert response.json["error"]["code"] == "not_a_gift_card"


def test_an_unknown_card_is_refused(api, till):
    response = sell(api, till, "4000000000000002")
    assert response.status_code == 422
    assert response.json["error"]["code"] == "customer_not_identified"


def test_only_a_cashier_sells_gift_cards(api, world, gift):
    token, _me = world.shopper()
    response = sell(api, token, gift["number"])
    assert response.status_code == 403


# --- an inactive card refuses everything ------------------------------------------------------


def refused_inactive(response):
    assert response.status_code == 409, response.json
    assert response.json["error"]["code"] == "card_inactive"
    return True


def test_an_inactive_card_cannot_pay(api, world, till, gift):
    world.product(sku="GIFT-LATTE", price=450)
    response = api.post(
        "/v1/sales",
        token=till,
        json={"customer": {"card_number": gift["number"]},
              "lines": [{"sku": "GIFT-LATTE", "quantity": 1}],
              "tenders": [{"type": "cash", "amount": usd(450)}]},
    )  # fmt: skip
    assert refused_inactive(response)


def test_an_inactive_card_cannot_be_registered(api, world, gift):
    token, _me = world.shopper()
    response = api.post(
        "/v1/me/cards",
        token=token,
        json={"number": gift["number"], "security_code": gift["security_code"]},
    )
    assert refused_inactive(response)


def test_an_inactive_card_with_a_wrong_code_looks_like_any_wrong_code(api, world, gift):
    token, _me = world.shopper()
    wrong = "0" * 8 if gift["security_code"] != "0" * 8 else "1" * 8
    response = api.post(
        "/v1/me/cards",
        token=token,
        json={"number": gift["number"], "security_code": wrong},
    )
    assert response.status_code == 422
    assert response.json["error"]["code"] == "invalid_card_details"


def test_an_inactive_card_cannot_be_loaded_as_a_top_up(api, till, gift):
    response = api.post(
        f"/v1/cards/{gift['id']}/top-ups",
        token=till,
        json={"amount": usd(1_000), "tender": "cash"},
    )
    assert refused_inactive(response)


def test_an_inactive_card_cannot_be_bound_to_a_tag(api, till, gift):
    response = api.post(
        "/v1/pos/nfc-bindings",
        token=till,
        json={"uid": "04A2B3C4D5E6F7",
              "card": {"card_number": gift["number"], "security_code": gift["security_code"]}},
    )  # fmt: skip
    assert refused_inactive(response)


def test_an_inactive_card_gets_no_offline_allowance(api, till, gift):
    response = api.post(
        "/v1/pos/offline-allowances", token=till, json={"card": {"card_number": gift["number"]}}
    )
    assert refused_inactive(response)


def test_a_sold_gift_card_registers_and_pays(api, world, till, gift):
    world.product(sku="GIFT-MOCHA", price=500)
    assert sell(api, till, gift["number"], 2_000).status_code == 201
    token, _me = world.shopper("Grace Hopper")
    registered = api.post(
        "/v1/me/cards",
        token=token,
        json={"number": gift["number"], "security_code": gift["security_code"]},
    )
    assert registered.status_code == 201, registered.json
    paid = api.post(
        "/v1/sales",
        token=till,
        json={"customer": {"card_number": gift["number"]},
              "lines": [{"sku": "GIFT-MOCHA", "quantity": 1}],
              "tenders": [{"type": "card_balance", "amount": usd(500)}]},
    )  # fmt: skip
    assert paid.status_code == 201, paid.json
    found = api.post("/v1/pos/lookups", token=till, json={"card_number": gift["number"]}, key=None)
    assert found.json["balance"] == usd(1_500)
    assert found.json["holder"] == {"first_name": "Grace", "stars": paid.json["stars_earned"]}


# --- look-ups ---------------------------------------------------------------------------------


def test_a_pay_code_looked_up_can_still_pay(api, world, db, till):
    token, me = world.shopper("Ada Lovelace")
    world.load(me["cards"][0]["id"], 1_000, till)
    world.product(sku="PAY-LATTE", price=450)
    code = api.post("/v1/me/pay-codes", token=token, json={}).json["code"]
    found = api.post("/v1/pos/lookups", token=till, json={"pay_code": code}, key=None)
    assert found.status_code == 200, found.json
    assert found.json["id"] == me["cards"][0]["id"]
    assert found.json["holder"] == {"first_name": "Ada", "stars": 0}
    paid = api.post(
        "/v1/sales",
        token=till,
        json={"customer": {"pay_code": code}, "lines": [{"sku": "PAY-LATTE", "quantity": 1}],
              "tenders": [{"type": "card_balance", "amount": usd(450)}]},
    )  # fmt: skip
    assert paid.status_code == 201, paid.json


def test_an_unknown_pay_code_is_refused_at_look_up(api, till):
    response = api.post("/v1/pos/lookups", token=till, json={"pay_code": "123456789012"}, key=None)
    assert response.status_code == 422
    assert response.json["error"]["code"] == "pay_code_invalid"

"""A card's activity as the card page shows it: where each line happened (the store, or none)
and from which channel, and the card's auto-reload read back."""

from __future__ import annotations

import pytest

from app.auth.browser import SESSION_COOKIE, csrf_for_session
from app.cards.models import Card


def usd(amount):
    return {"amount": amount, "currency": "USD"}


@pytest.fixture
def shopper(world):
    token, me = world.shopper("Ada")
    return token, me["cards"][0]["id"]


def activity(api, token, card_id):
    response = api.get(f"/v1/cards/{card_id}/activity", token=token)
    assert response.status_code == 200, response.json
    return response.json["items"]


def top_up_in_app(api, token, card_id, amount):
    response = api.post(
        f"/v1/cards/{card_id}/top-ups",
        token=token,
        json={"amount": usd(amount), "payment_token": "tok_visa"},
    )
    assert response.status_code == 201, response.json


def test_a_sale_at_a_till_shows_its_store_and_a_top_up_in_the_app_shows_none(
    api, db, world, shopper
):
    token, card_id = shopper
    store = world.store(name="Union Square")
    _store, _device, cashier = world.till(store)
    top_up_in_app(api, token, card_id, 2000)
    product = world.product(price=450)
    sale = api.post(
        "/v1/sales",
        token=cashier,
        json={
            "customer": {"card_number": db.get(Card, card_id).number},
            "lines": [{"sku": product.sku, "quantity": 1}],
            "tenders": [{"type": "card_balance", "amount": usd(450)}],
        },
    )
    assert sale.status_code == 201, sale.json

    sold, topped_up = activity(api, token, card_id)

    assert (sold["kind"], sold["amount"], sold["channel"]) == ("sale", usd(-450), "pos")
    assert sold["store"] == {"id": store.id, "name": "Union Square"}
    assert (topped_up["kind"], topped_up["amount"]) == ("top_up", usd(2000))
    assert topped_up["store"] is None


@pytest.fixture
def issue_card_for(api, world):
    """``issue_card_for(token)``: a gift card from a batch, sold at a till and registered by
    that token's shopper: its id."""

    def issue(token):
        batch = api.post("/v1/admin/card-batches", token=world.admin_token(), json={"size": 1})
        assert batch.status_code == 201, batch.json
        [gift] = batch.json["cards"]
        _store, _device, cashier = world.till()
        world.sell_gift_card(gift["number"], 500, cashier)
        registered = api.post(
            "/v1/me/cards", token=token,
            json={"number": gift["number"], "security_code": gift["security_code"]},
        )  # fmt: skip
        assert registered.status_code == 201, registered.json
        return gift["id"]

    return issue


def test_a_transfer_between_cards_happens_at_no_store(api, world, shopper, issue_card_for):
    token, card_id = shopper
    other_id = issue_card_for(token)
    top_up_in_app(api, token, card_id, 1000)
    moved = api.post(
        f"/v1/cards/{card_id}/transfers", token=token,
        json={"to_card_id": other_id, "amount": usd(300)},
    )  # fmt: skip
    assert moved.status_code == 201, moved.json

    [received, _sold] = activity(api, token, other_id)

    assert (received["kind"], received["amount"]) == ("card_transfer", usd(300))
    assert received["store"] is None


def test_a_transfer_made_on_the_website_is_shown_as_from_the_website(
    app, api, client, shopper, issue_card_for
):
    token, card_id = shopper
    other_id = issue_card_for(token)
    top_up_in_app(api, token, card_id, 1000)
    client.set_cookie(SESSION_COOKIE, token)

    moved = api.post(
        f"/v1/cards/{card_id}/transfers",
        json={"to_card_id": other_id, "amount": usd(250)},
        headers={"X-CSRF-Token": csrf_for_session(token), "X-Omnicard-Channel": "web"},
    )

    assert moved.status_code == 201, moved.json
    [sent, _top_up] = activity(api, token, card_id)
    assert (sent["kind"], sent["amount"], sent["channel"]) == ("card_transfer", usd(-250), "web")


def test_a_card_reported_lost_in_the_app_is_shown_as_from_the_app(api, shopper):
    token, card_id = shopper
    top_up_in_app(api, token, card_id, 700)

    lost = api.post(f"/v1/cards/{card_id}/report-lost", token=token)

    assert lost.status_code == 200, lost.json
    [moved] = activity(api, token, lost.json["replacement_card"]["id"])
    assert (moved["kind"], moved["amount"], moved["channel"]) == ("lost_card_move", usd(700), "app")
    assert moved["store"] is None


# --- auto-reload read back -----------------------------------------------------------------


def auto_reload(api, token, card_id):
    return api.get(f"/v1/cards/{card_id}/auto-reload", token=token)


def test_a_card_without_auto_reload_says_so(api, shopper):
    token, card_id = shopper

    response = auto_reload(api, token, card_id)

    assert response.status_code == 404
    assert response.json["error"]["code"] == "auto_reload_not_set"


def test_auto_reload_reads_back_as_set_without_its_payment_token(api, shopper):
    token, card_id = shopper
    put = api.put(
        f"/v1/cards/{card_id}/auto-reload", token=token,
        json={"threshold": usd(1000), "amount": usd(2500), "payment_token": "tok_visa"},
    )  # fmt: skip
    assert put.status_code == 200, put.json

    response = auto_reload(api, token, card_id)

    assert response.status_code == 200
    assert response.json == {
        "card_id": card_id, "threshold": usd(1000), "amount": usd(2500), "enabled": True,
    }  # fmt: skip


def test_auto_reload_turned_off_reads_back_as_not_set(api, shopper):
    token, card_id = shopper
    api.put(
        f"/v1/cards/{card_id}/auto-reload", token=token,
        json={"threshold": usd(1000), "amount": usd(2500), "payment_token": "tok_visa"},
    )  # fmt: skip
    assert api.delete(f"/v1/cards/{card_id}/auto-reload", token=token).status_code == 204

    assert auto_reload(api, token, card_id).status_code == 404


def test_another_shoppers_auto_reload_is_not_found(api, world, shopper):
    token, card_id = shopper
    api.put(
        f"/v1/cards/{card_id}/auto-reload", token=token,
        json={"threshold": usd(1000), "amount": usd(2500), "payment_token": "tok_visa"},
    )  # fmt: skip
    stranger, _ = world.shopper("Eve")

    response = auto_reload(api, stranger, card_id)

    assert response.status_code == 404
    assert response.json["error"]["code"] == "card_not_found"

"""The production server as the README runs it: ``gunicorn -c gunicorn.conf.py wsgi:app``, a
gevent worker holding the streams. Every request below goes to it, so on SQLite too the
commits happen in the process that serves the streams."""

from __future__ import annotations

import pytest

from tests.events.conftest import Quiet, is_sale, sale_body

pytestmark = pytest.mark.concurrent


@pytest.fixture
def hub_here():
    return False  # the gunicorn worker's hub is the one that sequences and serves


@pytest.fixture
def gunicorn(processes):
    return processes(production=True)


@pytest.fixture
def shop(live, gunicorn):
    admin = live.admin_token()
    store, device, cashier = live.till(admin)
    live.product(admin, "LATTE", 450)
    token, me = live.shopper()
    card_id = me["cards"][0]["id"]
    status, _ = gunicorn.post(f"/v1/cards/{card_id}/top-ups", cashier, {
        "amount": {"amount": 2_000, "currency": "USD"}, "tender": "cash"})  # fmt: skip
    assert status == 201
    return {"cashier": cashier, "token": token, "card_id": card_id,
            "number": live.card_number(card_id)}  # fmt: skip


def test_a_sale_at_the_till_reaches_the_shoppers_and_the_tills_streams(live, gunicorn, shop):
    phone = live.stream(shop["token"], port=gunicorn.port)
    till = live.stream(shop["cashier"], port=gunicorn.port)
    other_token, _ = live.shopper("Grace")
    other = live.stream(other_token, port=gunicorn.port)
    status, sale = gunicorn.post("/v1/sales", shop["cashier"], sale_body(shop["number"]))
    assert status == 201
    for stream in (phone, till):
        change = stream.until(lambda e: e.type == "card.balance_changed")[-1].data["data"]
        assert change == change | {"card_id": shop["card_id"], "reason": "sale",
                                   "balance": {"amount": 1_550, "currency": "USD"}}  # fmt: skip
        assert stream.until(is_sale(1_550))[-1].data["data"]["sale_id"] == sale["id"]
    with pytest.raises(Quiet):  # the other shopper gets heartbeats and nothing else
        other.next(quiet_after_heartbeats=2)


def test_reconnecting_to_gunicorn_with_last_event_id_yields_exactly_the_missed_events(
    live, gunicorn, shop
):
    stream = live.stream(shop["token"], port=gunicorn.port)
    gunicorn.post("/v1/sales", shop["cashier"], sale_body(shop["number"]))
    seen = stream.until(is_sale(1_550))
    stream.close()
    for _ in range(2):
        status, _ = gunicorn.post("/v1/sales", shop["cashier"], sale_body(shop["number"]))
        assert status == 201
    resumed = live.stream(shop["token"], port=gunicorn.port, last_event_id=seen[-1].id)
    missed = resumed.until(is_sale(650))
    assert [e.id for e in missed] == sorted({e.id for e in missed})
    assert missed[0].id > seen[-1].id
    assert [e.data["data"]["balance"]["amount"] for e in missed
            if e.type == "card.balance_changed"] == [1_100, 650]  # fmt: skip

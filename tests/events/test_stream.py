"""The live event stream through a real server: every channel sees every change at once."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress

import pytest

from app.events.api import hub, stream, write_streams_directly
from app.events.fanout import Subscriber
from tests.events.conftest import ChunkedReader, Quiet, connected_pair, sse_events, wait_until

pytestmark = pytest.mark.concurrent


@pytest.fixture
def shop(live):
    admin = live.admin_token()
    store, device, cashier = live.till(admin)
    live.product(admin, "LATTE", 450)
    token, me = live.shopper()
    card_id = me["cards"][0]["id"]
    live.load(card_id, 2_000, cashier)
    return {"admin": admin, "cashier": cashier, "token": token, "card_id": card_id,
            "customer_id": me["id"], "number": live.card_number(card_id), "store": store,
            "device": device}  # fmt: skip


def test_shopper_stream_receives_the_balance_change_from_a_till_sale(live, shop):
    stream = live.stream(shop["token"])
    assert stream.status == 200
    live.sell(shop["cashier"], shop["number"], "LATTE", 450)
    events = stream.until(
        lambda e: e.type == "card.balance_changed" and e.data["data"]["reason"] == "sale"
    )
    change = events[-1].data["data"]
    assert change["card_id"] == shop["card_id"]
    assert change["balance"] == {"amount": 1_550, "currency": "USD"}
    assert change["reason"] == "sale"
    stars = stream.until(lambda e: e.type == "stars.changed")[-1]
    assert stars.data["data"]["stars"] == 9
    stream.close()


def test_reconnecting_with_last_event_id_yields_exactly_the_missed_events(live, shop):
    stream = live.stream(shop["token"])
    live.sell(shop["cashier"], shop["number"], "LATTE", 450)
    seen = stream.until(lambda e: e.type == "sale.completed")
    stream.close()
    for _ in range(3):  # missed while disconnected
        live.sell(shop["cashier"], shop["number"], "LATTE", 450)
    resumed = live.stream(shop["token"], last_event_id=seen[-1].id)
    missed = resumed.until(
        lambda e: e.type == "sale.completed" and e.data["data"]["card_balance"]["amount"] == 200
    )
    ids = [e.id for e in missed]
    assert ids == sorted(set(ids))
    assert ids[0] > seen[-1].id
    assert [e.type for e in missed].count("sale.completed") == 3
    assert [e.data["data"]["balance"]["amount"] for e in missed
            if e.type == "card.balance_changed"] == [1_100, 650, 200]  # fmt: skip
    resumed.close()


def test_a_shopper_never_receives_another_shoppers_events(live, shop):
    other_token, other_me = live.shopper("Grace")
    mine, theirs = live.stream(shop["token"]), live.stream(other_token)
    live.load(other_me["cards"][0]["id"], 1_000, shop["cashier"])
    live.sell(shop["cashier"], shop["number"], "LATTE", 450)
    for event in mine.until(lambda e: e.type == "sale.completed"):
        assert event.data["data"].get("card_id") in (None, shop["card_id"])
    for event in theirs.until(
        lambda e: e.type == "card.balance_changed" and e.data["data"]["reason"] == "top_up"
    ):
        assert event.data["data"]["card_id"] == other_me["cards"][0]["id"]
    # The other shopper's stream holds nothing of the first shopper's sale.
    with pytest.raises(Quiet):
        while True:
            event = theirs.next(quiet_after_heartbeats=2)
            assert event.data["data"].get("card_id") == other_me["cards"][0]["id"]
    mine.close()
    theirs.close()


def test_the_till_sees_its_store_and_a_presented_card_topped_up_from_the_phone(live, shop):
    till = live.stream(shop["cashier"])
    lookup = live.call("POST", "/v1/pos/lookups", shop["cashier"],
                       {"card_number": shop["number"]}, key=False)  # fmt: skip
    assert lookup.status_code == 200
    phone = live.call("POST", f"/v1/cards/{shop['card_id']}/top-ups", shop["token"],
                      {"amount": {"amount": 1_000, "currency": "USD"},
                       "payment_token": "tok_visa"})  # fmt: skip
    assert phone.status_code == 201
    events = till.until(
        lambda e: e.type == "card.balance_changed" and e.data["data"]["balance"]["amount"] == 3_000
    )
    assert events[-1].data["data"]["reason"] == "top_up"
    till.close()


def test_an_idle_stream_gets_heartbeats(live, shop):
    stream = live.stream(shop["token"], timeout=5)
    with pytest.raises(Quiet):
        while True:  # the set-up's own events may still be on their way
            stream.next(quiet_after_heartbeats=2)
    assert stream.heartbeats >= 2
    stream.close()


def test_a_head_request_leaves_no_subscriber_behind(live, shop):
    response = live.client.head("/v1/events", headers={"Authorization": f"Bearer {shop['token']}"})
    assert response.status_code == 200 and response.data == b""
    response.close()
    assert not live.app.extensions["omnicard.events"]["hub"].fanout.audience.all


def test_no_token_no_stream(live):
    stream = live.stream("not-a-token")
    assert stream.status == 401
    stream.close()


@pytest.mark.parametrize("live_config", [{"EVENTS_QUEUE_LIMIT": 3}])
def test_a_stalled_stream_holds_no_one_up_and_then_catches_up_with_nothing_lost(live, shop):
    steady = live.stream(shop["token"], last_event_id=0)
    steady.until(lambda e: e.type == "top_up.settled")  # the set-up's top-up is all out
    # A stream whose reader takes the first batch of events and then stops reading.
    stalled = live.client.get(
        "/v1/events", headers={"Authorization": f"Bearer {shop['token']}"}, buffered=False
    )
    assert stalled.status_code == 200
    chunks = stalled.iter_encoded()
    assert next(chunks) == b"retry: 1000\n\n"
    first_batch = ThreadPoolExecutor(1).submit(next, chunks)  # waits for the first events

    seen = []
    for _ in range(5):  # ten events, against a limit of 3 waiting
        live.load(shop["card_id"], 500, shop["cashier"])
        seen += steady.until(lambda e: e.type == "top_up.settled")  # while the other stalls
    hub = live.app.extensions["omnicard.events"]["hub"]
    assert sum(sub.behind for sub in hub.fanout.audience.all) == 1  # the stalled one, and only it

    body = first_batch.result(timeout=10)
    while sse_events(body)[-1]["id"] < seen[-1].id:
        body += next(chunks)  # reading again: it catches up from the database
    caught_up = sse_events(body)
    assert [e["id"] for e in caught_up] == [e.id for e in seen]
    assert [e["type"] for e in caught_up] == [e.type for e in seen]
    assert [
        e["data"]["balance"]["amount"] for e in caught_up if e["type"] == "card.balance_changed"
    ] == [2_500, 3_000, 3_500, 4_000, 4_500]
    stalled.close()
    steady.close()


@pytest.mark.parametrize("live_config", [{"EVENTS_QUEUE_LIMIT": 3}])
def test_a_stream_the_hub_writes_to_directly_can_stall_and_still_loses_nothing(live, shop):
    """As under gunicorn (``write_streams_directly``): the hub writes events to the stream's
    socket itself. Its reader stops; the hub neither waits for it nor holds up the others;
    when the reader reads again, it gets every event, in order, in well-formed chunks."""
    app = live.app
    write_streams_directly(app)
    event_hub = hub(app)
    steady = live.stream(shop["token"], last_event_id=0)
    start = steady.until(lambda e: e.type == "top_up.settled")[-1].id  # the set-up's top-up
    server_end, client_end = connected_pair(1024)
    try:
        environ = {"gunicorn.socket": server_end, "SERVER_PROTOCOL": "HTTP/1.1"}
        sub = Subscriber(customer_id=shop["customer_id"])
        body = stream(app, environ, event_hub, sub, start)

        def serve() -> None:  # what the server does with the body, in the stream's own thread
            for data in body:
                server_end.sendall(b"%X\r\n%s\r\n" % (len(data), data))
            with suppress(OSError):  # the end of the body, to a client that may have gone
                server_end.sendall(b"0\r\n\r\n")

        serving = threading.Thread(target=serve, daemon=True)
        serving.start()
        reader = ChunkedReader(client_end)
        assert reader.chunk() == b"retry: 1000\n\n"
        wait_until(lambda: sub.out is not None)  # live: the hub writes to it from now on

        # Top-ups until the stalled stream falls behind: its connection full, more than 3 events
        # waited (at least 24 top-ups, 48 events, several times what such a connection holds;
        # exactly how many it holds is the kernel's to say, by how the hub's writes were batched).
        seen, loads = [], 0
        while loads < 24 or (not sub.behind and loads < 60):
            live.load(shop["card_id"], 500, shop["cashier"])
            loads += 1
            seen += steady.until(lambda e: e.type == "top_up.settled")  # while the other stalls
        assert sub.behind  # it will catch up from the database

        received = reader.events_until(seen[-1].id)
        assert [(e["id"], e["type"]) for e in received] == [(e.id, e.type) for e in seen]
        balances = [e["data"]["balance"]["amount"] for e in received
                    if e["type"] == "card.balance_changed"]  # fmt: skip
        assert balances == list(range(2_500, 2_500 + 500 * loads, 500))

        reader.close()  # the shopper goes away: a send of the hub's finds out
        for _ in range(3):  # the first send after a close may still succeed
            live.load(shop["card_id"], 500, shop["cashier"])
            steady.until(lambda e: e.type == "top_up.settled")
            serving.join(timeout=1)
        assert not serving.is_alive() and sub not in event_hub.fanout.audience.all
        steady.close()
    finally:  # a failure above leaves neither end open for a later test to find
        server_end.close()
        client_end.close()


def test_when_the_server_shuts_down_open_streams_end_and_new_ones_end_after_their_replay(
    live, shop
):
    """What ``gunicorn.conf.py`` does at SIGTERM: the clients resume elsewhere."""
    opened = live.stream(shop["token"], last_event_id=0)
    assert opened.until(lambda e: e.type == "top_up.settled")
    live.app.extensions["omnicard.events"]["hub"].close_streams()
    with pytest.raises(ConnectionError, match="stream closed"):
        opened.next()
    late = live.stream(shop["token"], last_event_id=0)  # say, on a kept-alive connection
    assert [e.type for e in late.until(lambda e: e.type == "top_up.settled")] == [
        "card.balance_changed", "top_up.settled"]  # fmt: skip
    with pytest.raises(ConnectionError, match="stream closed"):
        late.next()

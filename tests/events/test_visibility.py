"""Who sees which events, live and on a replay from ``Last-Event-ID``: a shopper their own; a
till its store's, the cards presented to it (for half an hour) and no other till's
presentations; a kiosk its own device's; an admin everything.

One scenario of two stores plays out while every kind of caller watches: two shoppers, two
tills in one store and one in the other, a kiosk and an admin. Each stream must hold exactly
the events listed for its caller, no more and no fewer, in order; then a stream opened from
``Last-Event-ID: 0`` must hold exactly the same, from the beginning.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from sqlalchemy import update

from app.core.db import database, session
from app.core.types import utcnow
from app.events.models import Event
from app.events.outbox import emit
from tests.events.conftest import Quiet

pytestmark = pytest.mark.concurrent

#: How long a card presented at a till keeps that till watching it (the README's half hour).
WATCHED_FOR = timedelta(minutes=30)


def register_device(live, admin, store, kind: str) -> dict:
    body = {"store_id": store["id"], "kind": kind, "name": kind}
    response = live.call("POST", "/v1/admin/devices", admin, body, key=False)
    assert response.status_code == 201, response.json
    return response.json


def drain(stream) -> list[tuple[int, str]]:
    """Every event the stream holds, as (position, type), for a stream whose events have all
    been handed out: read up to a heartbeat sent after the reading began (one read more than
    a second in: the heartbeats that waited in the buffer are read at once), which the server
    only sends with nothing left to send before it."""
    began, got = time.monotonic(), []
    while True:
        try:
            event = stream.next(quiet_after_heartbeats=1)
        except Quiet:
            if time.monotonic() - began > 1.5:
                return got
            continue
        got.append((event.id, event.type))


class Scenario:
    """Runs the steps, reading each one's events off the admin's stream (an admin sees
    everything) to learn which positions it wrote."""

    def __init__(self, live, admin_stream):
        self.live, self.admin_stream = live, admin_stream
        #: Every event so far, in order: (position, type, the step that wrote it).
        self.events: list[tuple[int, str, str]] = []

    def step(self, name: str, do, last_type: str) -> list[int]:
        do()
        written = self.admin_stream.until(lambda e: e.type == last_type)
        self.events += [(e.id, e.type, name) for e in written]
        return [e.id for e in written]

    def expected(self, seen: set[tuple[str, str]], after: int = 0) -> list[tuple[int, str]]:
        """The events after position ``after`` whose (step, type) is in ``seen``, in order."""
        unknown = seen - {(name, type) for _, type, name in self.events}
        assert not unknown, f"the expectations name events that never happened: {unknown}"
        return [(p, type) for p, type, name in self.events if p > after and (name, type) in seen]


def presented_ago(live, position: int, ago: timedelta) -> None:
    """Make the ``card.presented`` event at ``position`` as old as ``ago``."""
    with database(live.app).engine.begin() as c:
        c.execute(update(Event).where(Event.position == position).values(created_at=utcnow() - ago))


def test_each_caller_sees_exactly_its_own_events_live_and_from_last_event_id_0(live):
    admin = live.admin_token()
    everything = live.stream(admin)
    run = Scenario(live, everything)

    store_a, _, a1 = live.till(admin)
    _, _, a2 = live.till(admin, store_a)  # a second till in the same store
    _, _, b1 = live.till(admin)
    kiosk = register_device(live, admin, store_a, "kiosk")
    live.product(admin, "LATTE", 450)
    ada_token, ada = live.shopper("Ada")
    grace_token, grace = live.shopper("Grace")
    ada_card, grace_card = ada["cards"][0]["id"], grace["cards"][0]["id"]
    ada_number, grace_number = live.card_number(ada_card), live.card_number(grace_card)

    def look_up(cashier, number):
        return lambda: live.call("POST", "/v1/pos/lookups", cashier, {"card_number": number},
                                 key=False)  # fmt: skip

    def phone_top_up(token, card_id):
        body = {"amount": {"amount": 1_000, "currency": "USD"}, "payment_token": "tok_visa"}
        return lambda: live.call("POST", f"/v1/cards/{card_id}/top-ups", token, body)

    def kiosk_tap():  # no request of the API's names a kiosk yet: written as its taps will be
        with live.app.app_context():
            emit(session(), "product.tapped", {"sku": "LATTE"}, device_id=kiosk["id"])
            session().commit()

    # Before the streams open: history, only a replay from the beginning shows it.
    run.step("a1 loads ada", lambda: live.load(ada_card, 2_000, a1), "top_up.settled")
    run.step("b1 loads grace", lambda: live.load(grace_card, 2_000, b1), "top_up.settled")
    # Grace's card was shown at the second till of store A nearly half an hour ago (its watch
    # runs out in a few seconds, while the streams are open), and at store B's till 29
    # minutes ago (still watched).
    [almost_gone] = run.step("a2 saw grace's card", look_up(a2, grace_number), "card.presented")
    presented_ago(live, almost_gone, WATCHED_FOR - timedelta(seconds=5))
    expires_at = time.monotonic() + 5
    [still_on] = run.step("b1 saw grace's card", look_up(b1, grace_number), "card.presented")
    presented_ago(live, still_on, timedelta(minutes=29))
    before_live = run.events[-1][0]

    callers = {"ada": ada_token, "grace": grace_token, "a1": a1, "a2": a2, "b1": b1,
               "kiosk": kiosk["secret"]}  # fmt: skip
    live_streams = {who: live.stream(token) for who, token in callers.items()}

    # Grace's watch at a2 has run out: only its age keeps her top-up from that till.
    time.sleep(max(0.0, expires_at - time.monotonic()) + 0.5)
    run.step("grace tops up", phone_top_up(grace_token, grace_card), "top_up.settled")
    run.step("a1 sells to ada", lambda: live.sell(a1, ada_number, "LATTE", 450), "sale.completed")
    run.step("a2 saw ada's card", look_up(a2, ada_number), "card.presented")
    run.step("b1 sells to grace", lambda: live.sell(b1, grace_number, "LATTE", 450),
             "sale.completed")  # fmt: skip
    run.step("ada tops up", phone_top_up(ada_token, ada_card), "top_up.settled")
    run.step("the kiosk is tapped", kiosk_tap, "product.tapped")

    balance, settled = "card.balance_changed", "top_up.settled"
    sold = {"card.presented", balance, "stars.changed", "sale.completed"}
    sees = {
        # Shoppers: their own card's and Stars' changes; never a till's card.presented.
        "ada": {("a1 loads ada", balance),
                ("a1 loads ada", settled), ("a1 sells to ada", balance),
                ("a1 sells to ada", "stars.changed"), ("a1 sells to ada", "sale.completed"),
                ("ada tops up", balance), ("ada tops up", settled)},
        "grace": {("b1 loads grace", balance),
                  ("b1 loads grace", settled), ("grace tops up", balance),
                  ("grace tops up", settled), ("b1 sells to grace", balance),
                  ("b1 sells to grace", "stars.changed"), ("b1 sells to grace", "sale.completed")},
        # Tills: their store's sales and loads (not the shopper's Stars), their own
        # presentations, and the phone top-ups of cards presented to them in the last half
        # hour; never another till's presentation, even of a card they watch.
        "a1": {("a1 loads ada", balance), ("a1 loads ada", settled),
               ("a1 sells to ada", "card.presented"), ("a1 sells to ada", balance),
               ("a1 sells to ada", "sale.completed"),
               ("ada tops up", balance), ("ada tops up", settled)},
        "a2": {("a1 loads ada", balance), ("a1 loads ada", settled),
               ("a2 saw grace's card", "card.presented"),
               ("a1 sells to ada", balance), ("a1 sells to ada", "sale.completed"),
               ("a2 saw ada's card", "card.presented"),
               ("ada tops up", balance), ("ada tops up", settled)},
        "b1": {("b1 loads grace", balance), ("b1 loads grace", settled),
               ("b1 saw grace's card", "card.presented"),
               ("grace tops up", balance), ("grace tops up", settled),
               ("b1 sells to grace", "card.presented"), ("b1 sells to grace", balance),
               ("b1 sells to grace", "sale.completed")},
        # A kiosk in store A: only what names its own device, none of the store's sales.
        "kiosk": {("the kiosk is tapped", "product.tapped")},
    }  # fmt: skip
    assert {type for _, type, name in run.events if name == "a1 sells to ada"} == sold

    with ThreadPoolExecutor(len(callers)) as pool:
        received = dict(zip(callers, pool.map(drain, live_streams.values()), strict=True))
        for who in callers:
            assert received[who] == run.expected(sees[who], after=before_live), f"{who}, live"
        assert drain(everything) == []  # the admin saw each event once, nothing more

        replays = {who: live.stream(token, last_event_id=0) for who, token in callers.items()}
        replays["admin"] = live.stream(admin, last_event_id=0)
        received = dict(zip(replays, pool.map(drain, replays.values()), strict=True))
    for who in callers:
        assert received[who] == run.expected(sees[who]), f"{who}, from Last-Event-ID: 0"
    assert received["admin"] == [(p, type) for p, type, _ in run.events]

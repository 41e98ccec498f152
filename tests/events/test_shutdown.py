"""Stopping the production server (SIGTERM to gunicorn's master, as a service manager or a
deploy does): it ends the event streams at once and exits within a few seconds, and a request
that is moving money finishes and answers first. Clients resume from ``Last-Event-ID`` on the
next server, and lose nothing."""

from __future__ import annotations

import http.client
import signal
import threading
import time

import pytest
from sqlalchemy import text

from app.cards.models import Card
from app.core.db import database, session
from app.ledger import services as ledger
from tests.events.conftest import open_stream, sse_events, wait_until

pytestmark = pytest.mark.concurrent

#: "Within a few seconds": gunicorn looks once a second whether its worker may go.
EXITS_WITHIN_S = 5.0


@pytest.fixture
def hub_here():
    return False  # the servers' hubs sequence, as in production


@pytest.fixture
def shop(live):
    admin = live.admin_token()
    _, _, cashier = live.till(admin)
    token, me = live.shopper()
    card_id = me["cards"][0]["id"]
    live.load(card_id, 2_000, cashier)
    with live.app.app_context():
        account_id = session().get(Card, card_id).account_id
    return {"cashier": cashier, "token": token, "card_id": card_id, "account_id": account_id}


def top_up_body(amount: int) -> dict:
    return {"amount": {"amount": amount, "currency": "USD"}, "tender": "cash"}


def ends_cleanly(stream) -> bool:
    """The stream's response ends with its last chunk: nothing is cut off midway (a cut
    connection fails ``chunk``)."""
    while stream.chunk() != b"":
        pass
    return True


def until_settled(stream) -> list[dict]:
    """The stream's events up to the next ``top_up.settled`` (a top-up's last event)."""
    body = b""
    while not any(e["type"] == "top_up.settled" for e in sse_events(body)):
        body += stream.chunk()
    return sse_events(body)


def balances(events: list[dict]) -> list[int]:
    return [e["data"]["balance"]["amount"] for e in events if e["type"] == "card.balance_changed"]


def test_sigterm_ends_the_streams_at_once_and_clients_resume_on_the_next_server_losing_nothing(
    live, shop, processes, db_kind
):
    server = processes(production=True, workers=2 if db_kind == "postgresql" else 1)
    streams = [open_stream(server.port, shop["token"], "HTTP/1.1", 0)[1] for _ in range(4)]
    seen = [until_settled(stream) for stream in streams]  # the set-up's top-up, replayed
    assert all(balances(s) == [2_000] for s in seen)
    idle = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)  # kept alive
    idle.request("GET", "/v1/health")
    assert idle.getresponse().read()

    stopped_at = time.monotonic()
    server.process.send_signal(signal.SIGTERM)
    for stream in streams:
        assert ends_cleanly(stream)
    server.process.wait(timeout=30)
    assert time.monotonic() - stopped_at < EXITS_WITHIN_S
    idle.close()

    live.load(shop["card_id"], 500, shop["cashier"])  # while no server runs
    successor = processes(production=True)
    for stream, before in zip(streams, seen, strict=True):
        stream.close()
        _, resumed = open_stream(successor.port, shop["token"], "HTTP/1.1", before[-1]["id"])
        missed = until_settled(resumed)
        assert balances(missed) == [2_500]
        assert missed[0]["id"] == before[-1]["id"] + 1
        resumed.close()


def test_a_top_up_in_progress_at_sigterm_completes_and_answers_before_the_server_exits(
    live, shop, processes, postgresql_only
):
    server = processes(production=True)
    _, stream = open_stream(server.port, shop["token"], "HTTP/1.1", 0)
    until_settled(stream)
    engine = database(live.app).engine
    answers = []
    with engine.connect() as holder:
        # The card's account row held by another transaction: the top-up waits for it, as it
        # would behind a sale of the same card.
        holder.execute(text("SELECT 1 FROM ledger_accounts WHERE id = :id FOR UPDATE"),
                       {"id": shop["account_id"]})  # fmt: skip
        path = f"/v1/cards/{shop['card_id']}/top-ups"
        top_up = threading.Thread(target=lambda: answers.append(
            server.post(path, shop["cashier"], top_up_body(700))))  # fmt: skip
        top_up.start()
        with engine.connect() as watcher:
            wait_until(lambda: watcher.scalar(text(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE datname = current_database() AND wait_event_type = 'Lock'")))  # fmt: skip
        server.process.send_signal(signal.SIGTERM)
        assert ends_cleanly(stream)  # the worker is stopping
        stream.close()
        assert server.process.poll() is None  # and waits for the top-up
        holder.rollback()
    top_up.join(timeout=30)
    stopped_at = time.monotonic()
    server.process.wait(timeout=30)
    assert time.monotonic() - stopped_at < EXITS_WITHIN_S
    status, body = answers[0]
    assert status == 201 and body["status"] == "succeeded"
    with live.app.app_context():
        assert ledger.balance_of(session(), shop["account_id"]) == 2_700

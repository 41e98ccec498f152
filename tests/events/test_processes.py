"""Several app processes on one PostgreSQL: each delivers every event, and losing one loses
nothing. (SQLite is the embedded, single-process default.)"""

from __future__ import annotations

import os
import socket
import uuid
from contextlib import contextmanager

import psycopg
import pytest
from sqlalchemy import create_engine, select, text

from app.events.election import SEQUENCER_LOCK, TRY_TO_SEQUENCE_SQL
from app.events.hub import EventHub
from app.events.models import Event
from app.events.outbox import emit, waiting_in_outbox
from tests.conftest import DEFAULT_POSTGRES
from tests.events.conftest import is_sale, sale_body, wait_until

pytestmark = [pytest.mark.concurrent, pytest.mark.usefixtures("postgresql_only")]


@pytest.fixture
def hub_here():
    return False  # only the server processes run hubs, so one of them sequences


@pytest.fixture
def shop(live):
    admin = live.admin_token()
    _, _, cashier = live.till(admin)
    live.product(admin, "LATTE", 450)
    token, me = live.shopper()
    card_id = me["cards"][0]["id"]
    live.load(card_id, 5_000, cashier)
    return {"cashier": cashier, "token": token, "number": live.card_number(card_id)}


def test_an_event_committed_in_one_process_reaches_subscribers_of_another(live, shop, processes):
    first, second = processes(), processes()
    on_first = live.stream(shop["token"], port=first.port)
    on_second = live.stream(shop["token"], port=second.port)
    status, _ = second.post("/v1/sales", shop["cashier"], sale_body(shop["number"]))
    assert status == 201
    assert on_first.until(is_sale(4_550))[-1].type == "sale.completed"
    assert on_second.until(is_sale(4_550))[-1].type == "sale.completed"
    status, _ = first.post("/v1/sales", shop["cashier"], sale_body(shop["number"]))
    assert status == 201
    assert on_second.until(is_sale(4_100))[-1].type == "sale.completed"


def test_after_a_process_is_killed_a_client_that_reconnects_elsewhere_loses_nothing(
    live, shop, processes
):
    first = processes()
    on_first = live.stream(shop["token"], port=first.port)  # the first hub: it sequences
    second = processes()
    live.stream(shop["token"], port=second.port)  # the second hub runs too
    status, _ = second.post("/v1/sales", shop["cashier"], sale_body(shop["number"]))
    assert status == 201
    last_seen = on_first.until(is_sale(4_550))[-1].id

    first.kill()
    for _ in range(3):  # committed while the client is away and the sequencer is gone
        status, _ = second.post("/v1/sales", shop["cashier"], sale_body(shop["number"]))
        assert status == 201

    resumed = live.stream(shop["token"], last_event_id=last_seen, port=second.port)
    missed = resumed.until(is_sale(3_200))
    assert [e.type for e in missed].count("sale.completed") == 3
    balances = [e.data["data"]["balance"]["amount"] for e in missed
                if e.type == "card.balance_changed"]  # fmt: skip
    assert balances == [4_100, 3_650, 3_200]
    ids = [e.id for e in missed]
    assert ids == sorted(set(ids)) and ids[0] > last_seen


@contextmanager
def two_hubs(engine, asks_host: str | None = None):
    """Two hubs, as in two processes, the first sequencing: neither looks on its own for a
    minute, so an event is sequenced only because an ask arrived."""
    dsn = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    sequencer = EventHub(engine, dsn, poll_s=60, asks_host=asks_host).start()
    other = None
    try:
        wait_until(lambda: sequencer.election.leader)
        other = EventHub(engine, dsn, poll_s=60).start()
        yield sequencer, other
    finally:
        if other is not None:
            other.stop()
        sequencer.stop()


def commit_an_event_unannounced(s) -> None:
    emit(s, "stars.changed", {"stars": 5}, customer_id=1)
    s.commit()  # in "the other process": nothing wakes the sequencer yet


def sequenced_types(s) -> list[str]:
    wait_until(lambda: not waiting_in_outbox(s.connection()))
    s.rollback()
    return s.scalars(select(Event.type)).all()


def test_a_process_asks_the_sequencer_by_datagram_and_only_the_sequencers_token_counts(
    committed, engine
):
    with two_hubs(engine) as (sequencer, other):
        wait_until(lambda: other.election.sequencer_asks is not None)
        address, token = other.election.sequencer_asks
        assert address == sequencer.election.asks_in.getsockname()[:2]

        commit_an_event_unannounced(committed)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as stranger:
            stranger.sendto(b"not the token", address)
        other.poke()
        assert sequenced_types(committed) == ["stars.changed"]
        assert sequencer.election.asks_heard == 1  # the stranger's datagram woke nobody


@pytest.fixture
def neighbour():
    """Another Omnicard on the same PostgreSQL server, in a database of its own, whose
    sequencer holds its lock and names its port for asks: its application_name."""
    admin = create_engine(
        os.environ.get("OMNICARD_TEST_POSTGRES_URL", DEFAULT_POSTGRES), isolation_level="AUTOCOMMIT"
    )
    name = f"omnicard_neighbour_{uuid.uuid4().hex[:12]}"
    with admin.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}"'))
    dsn = admin.url.set(database=name, drivername="postgresql").render_as_string(
        hide_password=False
    )
    application_name = "omnicard-asks 192.0.2.1 9 neighbour"
    try:
        with psycopg.connect(dsn, autocommit=True, application_name=application_name) as conn:
            conn.execute("SELECT pg_advisory_lock(%s)", (SEQUENCER_LOCK,))
            yield application_name
    finally:
        with admin.connect() as c:
            c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def test_the_look_up_of_the_sequencer_never_finds_another_databases(engine, neighbour):
    """The neighbour's sequencer is the only one on the server: a process of this database
    takes the lock and is told of no other sequencer (not the neighbour's, whose asks would
    go to the wrong Omnicard and leave this one's events to the fallback look)."""
    dsn = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    ours = "omnicard-asks 127.0.0.1 7 ours"
    with psycopg.connect(dsn, autocommit=True, application_name=ours) as first:
        assert first.execute(TRY_TO_SEQUENCE_SQL, {"key": SEQUENCER_LOCK}).fetchone() == (
            True,
            None,
        )
        with psycopg.connect(dsn, autocommit=True) as second:
            assert second.execute(TRY_TO_SEQUENCE_SQL, {"key": SEQUENCER_LOCK}).fetchone() == (
                False,
                ours,
            )


def test_beside_another_deployments_sequencer_a_process_asks_its_own(committed, engine, neighbour):
    with two_hubs(engine) as (sequencer, other):
        wait_until(lambda: other.election.sequencer_asks is not None)
        assert other.election.sequencer_asks[0] == sequencer.election.asks_in.getsockname()[:2]
        commit_an_event_unannounced(committed)
        other.poke()
        assert sequenced_types(committed) == ["stars.changed"]
        assert sequencer.election.asks_heard == 1


def test_when_the_sequencer_changes_an_ask_sent_to_the_one_before_is_not_lost(committed, engine):
    """The sequencer stops; another process takes over. A third still holds the old one's
    address until its next try for the lock (up to a second), and asks the closed port. When
    it learns of the new sequencer it asks that one: the event does not wait for the new
    sequencer's own look (a minute here)."""
    dsn = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    first = EventHub(engine, dsn, poll_s=60).start()
    hubs = []
    try:
        wait_until(lambda: first.election.leader)
        hubs = [EventHub(engine, dsn, poll_s=60).start() for _ in range(2)]
        wait_until(lambda: all(h.election.sequencer_asks is not None for h in hubs))
        old_address = hubs[0].election.sequencer_asks
        first.stop()
        wait_until(lambda: any(h.election.leader for h in hubs))
        successor, other = sorted(hubs, key=lambda h: not h.election.leader)
        # Its first round as the sequencer, which looks without being asked, is over.
        wait_until(lambda: successor.sequencer.pacer.round_at > 0)
        # Its view a moment after the takeover, before its next try for the lock (set here,
        # in case its try already came: the test is of what follows).
        other.election.sequencer_asks = old_address
        commit_an_event_unannounced(committed)
        other.poke()  # a datagram to the old sequencer's closed port
        assert sequenced_types(committed) == ["stars.changed"]
        assert other.election.sequencer_asks[0] == successor.election.asks_in.getsockname()[:2]
    finally:
        first.stop()
        for h in hubs:
            h.stop()


def test_with_no_port_for_asks_a_process_asks_the_sequencer_by_notify(committed, engine):
    with two_hubs(engine, asks_host="none") as (sequencer, other):
        commit_an_event_unannounced(committed)
        other.poke()
        assert sequenced_types(committed) == ["stars.changed"]
        asks = (sequencer.election.asks_in, sequencer.election.asks_heard)
        assert (*asks, other.election.sequencer_asks) == (None, 0, None)


def test_omnicard_sessions_never_jit_compile(engine):
    """PostgreSQL's JIT compiles afresh at every execution of a plan it deems costly: 20 ms
    and more of the server's CPU, on every round of the sequencer once the outbox has grown.
    Omnicard's sessions, the app's and the hub's own, turn it off."""
    costly = "EXPLAIN (ANALYZE, FORMAT JSON) SELECT COUNT(*) FROM events"
    with engine.connect() as c:
        c.exec_driver_sql("SET jit_above_cost = 0")  # every plan "costly"
        try:
            assert "JIT" not in c.exec_driver_sql(costly).scalar()[0]
        finally:
            c.exec_driver_sql("RESET jit_above_cost")  # the connection goes back to the pool
    with two_hubs(engine) as (sequencer, _other):
        # Its first round opens the sequencer's own connection: wait for that one (asked for
        # here at the same moment, a second connection would be opened and left open).
        wait_until(lambda: sequencer.sequencer.plain.opened is not None)
        for conn in (sequencer.sequencer.plain.get(), sequencer.election.listener):
            assert conn.execute("SELECT current_setting('jit')").fetchone() == ("off",)
        # With JIT on, the same plan is compiled (this server can): the test can fail.
        probe = sequencer.sequencer.plain.get()
        probe.execute("SET jit = on")
        probe.execute("SET jit_above_cost = 0")
        assert "JIT" in probe.execute(costly).fetchone()[0][0]

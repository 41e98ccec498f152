"""The outbox: a change's events are written in its own transaction, all in one row, and only
if it commits; events of a savepoint that rolls back are dropped with it. The sequencer moves
them into the log in the order they committed."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from app.events.hub import EventHub
from app.events.models import Event, OutboxEntry
from app.events.outbox import emit, waiting_in_outbox, write_events
from app.events.sequencing import (
    BUSY_EVENTS_PER_S,
    QUIET_EVENTS_PER_S,
    ROUND_GAP_MAX_S,
    RoundPacer,
    sequence_committed,
)


def types_written(s) -> list[str]:
    return [event["type"] for event in waiting_in_outbox(s.connection())]


def payloads_written(s) -> list[dict]:
    return [event["payload"] for event in waiting_in_outbox(s.connection())]


def test_events_are_written_when_their_transaction_commits(db):
    emit(db, "card.added", {"card_id": 1}, customer_id=7)
    emit(db, "stars.changed", {"stars": 3}, customer_id=7)
    assert types_written(db) == []  # waiting for the commit
    db.commit()
    waiting = waiting_in_outbox(db.connection())
    assert [(e["type"], e["customer_id"], e["payload"]) for e in waiting] == [
        ("card.added", 7, {"card_id": 1}),
        ("stars.changed", 7, {"stars": 3}),
    ]
    assert db.scalars(select(Event)).all() == []  # the sequencer numbers them later


def test_all_of_a_transactions_events_go_in_one_row(db, engine: Engine):
    inserts = []

    def count(_conn, _cursor, statement, *_args):
        if statement.lstrip().upper().startswith("INSERT INTO EVENT_OUTBOX"):
            inserts.append(statement)

    from sqlalchemy import event as sa_event

    sa_event.listen(engine, "before_cursor_execute", count)
    try:
        for n in range(4):
            emit(db, "stars.changed", {"stars": n}, customer_id=7)
        db.commit()
    finally:
        sa_event.remove(engine, "before_cursor_execute", count)
    assert types_written(db) == ["stars.changed"] * 4
    assert db.scalar(select(func.count()).select_from(OutboxEntry)) == 1
    assert len(inserts) == 1


def test_a_bulk_change_writes_every_one_of_its_events_in_order(db):
    for n in range(10_000):
        emit(db, "card.added", {"card_id": n}, customer_id=7)
    db.commit()
    assert [p["card_id"] for p in payloads_written(db)] == list(range(10_000))


def test_the_sequencer_moves_each_transactions_events_into_the_log_in_commit_order(db):
    for n in range(3):
        emit(db, "card.added", {"card_id": n}, customer_id=7, card_id=n)
        emit(db, "stars.changed", {"stars": n}, customer_id=7, store_id=2)
        db.commit()
    sequenced, _ = sequence_committed(db.connection(), batch=2)  # two transactions a batch
    assert [e.position for e in sequenced] == [1, 2, 3, 4, 5, 6]
    assert [(e.type, e.payload) for e in sequenced] == [
        (t, p) for n in range(3) for t, p in
        (("card.added", {"card_id": n}), ("stars.changed", {"stars": n}))
    ]  # fmt: skip
    logged = db.execute(select(Event.position, Event.card_id, Event.store_id, Event.type)
                        .order_by(Event.position)).all()  # fmt: skip
    assert logged == [(e.position, e.card_id, e.store_id, e.type) for e in sequenced]
    assert [e.created_at.tzinfo is not None for e in sequenced] == [True] * 6
    assert waiting_in_outbox(db.connection()) == []
    emit(db, "card.added", {"card_id": 9}, customer_id=7)
    db.commit()
    assert [e.position for e in sequence_committed(db.connection())[0]] == [7]  # after the top


def test_a_rolled_back_transaction_writes_no_events(db):
    emit(db, "card.added", {"card_id": 1}, customer_id=7)
    db.rollback()
    db.commit()
    assert types_written(db) == []


def test_a_session_closed_without_committing_writes_no_events(db):
    emit(db, "card.added", {"card_id": 1}, customer_id=7)
    db.close()
    emit(db, "card.added", {"card_id": 2}, customer_id=7)
    db.commit()
    assert [p["card_id"] for p in payloads_written(db)] == [2]


def test_events_of_a_savepoint_that_rolls_back_are_dropped_and_the_others_kept(db):
    emit(db, "card.added", {"card_id": 1}, customer_id=7)
    with pytest.raises(LookupError), db.begin_nested():
        emit(db, "card.added", {"card_id": 2}, customer_id=7)
        with db.begin_nested():
            emit(db, "card.added", {"card_id": 3}, customer_id=7)
        raise LookupError("the outer savepoint fails")
    with db.begin_nested():
        emit(db, "card.added", {"card_id": 4}, customer_id=7)
    db.commit()
    assert [p["card_id"] for p in payloads_written(db)] == [1, 4]


def test_write_events_makes_them_visible_before_the_commit(db):
    emit(db, "card.added", {"card_id": 1}, customer_id=7)
    write_events(db)
    assert types_written(db) == ["card.added"]
    db.commit()
    assert types_written(db) == ["card.added"]  # written once


def test_a_quiet_sequencer_starts_a_round_at_once_and_a_busy_one_waits_for_more():
    pacer = RoundPacer()
    t = 1000.0
    pacer.count(t, 0)
    for _ in range(40):  # a top-up (two events) every 50 ms: 40 events a second
        t += 0.05
        pacer.count(t, 2)
    assert pacer.gap_s(t + 0.01) == 0
    for _ in range(20):  # sales, 600 events a second, in rounds of a tenth of a second
        t += 0.1
        pacer.count(t, 60)
    assert pacer.gap_s(t + 0.01) == ROUND_GAP_MAX_S
    half_way = (QUIET_EVENTS_PER_S + BUSY_EVENTS_PER_S) / 2
    pacer.events_per_s, pacer.round_at = half_way, t
    assert pacer.gap_s(t) == pytest.approx(ROUND_GAP_MAX_S / 2)
    assert pacer.gap_s(t + 1.0) == 0  # a lull of a second: quiet again


def test_a_busy_sequencers_round_waits_out_the_gap_and_then_takes_the_event(committed, engine):
    hub = EventHub(engine, None, poll_s=60).start()
    try:
        pacer = hub.sequencer.pacer
        # Busy, and a round began just now: the next may begin only a whole gap later. Set
        # before the event commits, so that no round can take it before the hub knows (a
        # round woken by the commit, on a slow machine, would otherwise start earlier).
        last_round_at = time.monotonic()
        pacer.events_per_s, pacer.round_at = 10 * BUSY_EVENTS_PER_S, last_round_at
        emit(committed, "stars.changed", {"stars": 5}, customer_id=1)
        committed.commit()
        hub.poke()
        while waiting_in_outbox(committed.connection()):
            committed.rollback()
            assert time.monotonic() - last_round_at < 10, "never sequenced"
            time.sleep(0.005)
        # When the round that took the event began, by the hub's own clock: a slow machine
        # makes the hub late, never early, so only its wait can put a whole gap before it.
        assert pacer.round_at - last_round_at >= ROUND_GAP_MAX_S
    finally:
        hub.stop()

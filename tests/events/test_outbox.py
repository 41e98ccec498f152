"""The outbox: a change's events are written in its own transaction, all in one statement, and
only if it commits; events of a savepoint that rolls back are dropped with it."""

from __future__ import annotations

import pytest
from sqlalchemy import select, text
from sqlalchemy.engine import Engine

from app.events.models import Event
from app.events.outbox import emit, write_events


def types_written(s) -> list[str]:
    return list(s.scalars(select(Event.type).order_by(Event.id)))


def test_events_are_written_when_their_transaction_commits(db):
    emit(db, "card.added", {"card_id": 1}, customer_id=7)
    emit(db, "stars.changed", {"stars": 3}, customer_id=7)
    assert types_written(db) == []  # waiting for the commit
    db.commit()
    rows = db.scalars(select(Event).order_by(Event.id)).all()
    assert [(e.type, e.customer_id, e.payload) for e in rows] == [
        ("card.added", 7, {"card_id": 1}),
        ("stars.changed", 7, {"stars": 3}),
    ]
    assert [e.position for e in rows] == [None, None]  # the sequencer numbers them later


def test_all_of_a_transactions_events_go_in_one_statement(db, engine: Engine):
    inserts = []

    def count(_conn, _cursor, statement, *_args):
        if statement.lstrip().upper().startswith("INSERT INTO EVENTS"):
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
    if engine.dialect.name == "postgresql":
        # Written straight through psycopg, past SQLAlchemy: the rows one statement writes
        # share its command id within the transaction.
        assert inserts == []
        assert len(db.scalars(text("SELECT DISTINCT cmin::text FROM events")).all()) == 1
    else:
        assert len(inserts) == 1


def test_a_bulk_change_writes_every_one_of_its_events_in_order(db):
    # More rows than one statement's parameters allow on PostgreSQL (65,535 / 7 columns).
    for n in range(10_000):
        emit(db, "card.added", {"card_id": n}, customer_id=7)
    db.commit()
    payloads = db.scalars(select(Event.payload).order_by(Event.id)).all()
    assert [p["card_id"] for p in payloads] == list(range(10_000))


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
    assert [p["card_id"] for p in db.scalars(select(Event.payload))] == [2]


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
    assert [p["card_id"] for p in db.scalars(select(Event.payload).order_by(Event.id))] == [1, 4]


def test_write_events_makes_them_visible_before_the_commit(db):
    emit(db, "card.added", {"card_id": 1}, customer_id=7)
    write_events(db)
    assert types_written(db) == ["card.added"]
    db.commit()
    assert types_written(db) == ["card.added"]  # written once

"""Webhook deliveries are written by the sequencing round, in its transaction, by the rule of
``app.webhooks.services``: on PostgreSQL its ``ENQUEUE_SQL`` inside the round's one statement,
on SQLite its ``enqueue``. Both give every matching active webhook one delivery of each event,
with the same account key and body as ``deliveries_for``."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import func, select

from app.events.outbox import emit
from app.events.sequencing import (
    Follower,
    PlainConnection,
    Sequencer,
    follow_sequencing,
    sequence_committed,
    sequence_sql,
)
from app.webhooks.models import Webhook, WebhookDelivery
from app.webhooks.services import deliveries_for


def test_the_round_writes_each_matching_webhook_one_delivery_of_each_event_by_the_one_rule(db):
    both = Webhook(url="http://a.example/", event_types=["card.added", "stars.changed"],
                   secret="s", active=True)  # fmt: skip
    stars = Webhook(url="http://b.example/", event_types=["stars.changed"], secret="s",
                    active=True)  # fmt: skip
    off = Webhook(url="http://c.example/", event_types=["stars.changed"], secret="s",
                  active=False)  # fmt: skip
    db.add_all([both, stars, off])
    db.flush()
    emit(db, "stars.changed", {"stars": 1, "note": "café ☕"}, customer_id=7, store_id=2)
    emit(db, "card.added", {"card_id": 3}, store_id=2, device_id=4, card_id=3)
    db.commit()
    emit(db, "stars.changed", {"stars": 2}, device_id=4)
    emit(db, "stars.changed", {"stars": 3})  # nobody's in particular
    emit(db, "sale.completed", {"sale_id": 1}, customer_id=7)  # no webhook wants it
    db.commit()

    sequenced, written = sequence_committed(db.connection())

    rows = db.execute(
        select(WebhookDelivery.webhook_id, WebhookDelivery.event_id, WebhookDelivery.event_type,
               WebhookDelivery.account_key, WebhookDelivery.body, WebhookDelivery.status,
               WebhookDelivery.attempts)
        .order_by(WebhookDelivery.id)
    ).all()  # fmt: skip
    expected = deliveries_for(
        sequenced, [(both.id, both.event_types), (stars.id, stars.event_types)]
    )
    assert written == len(rows) == len(expected) == 7
    assert [(r.webhook_id, r.event_id, r.event_type, r.account_key, r.status, r.attempts)
            for r in rows] == [
        (d["webhook_id"], d["event_id"], d["event_type"], d["account_key"], "pending", 0)
        for d in expected
    ]  # fmt: skip
    assert [(r.webhook_id, r.account_key) for r in rows] == [
        (both.id, "customer:7"), (stars.id, "customer:7"), (both.id, "store:2"),
        (both.id, "device:4"), (stars.id, "device:4"), (both.id, "all"), (stars.id, "all"),
    ]  # fmt: skip
    assert [json.loads(r.body) for r in rows] == [json.loads(d["body"]) for d in expected]
    assert json.loads(rows[0].body) == sequenced[0].wire()  # the event as a stream sends it


def test_a_postgresql_round_with_its_deliveries_is_one_statement(committed, engine, db_kind):
    """The sequencer's hot loop: one prepared statement, one round trip, deliveries and all."""
    if db_kind != "postgresql":
        pytest.skip("SQLite's round is the same work step by step, in one process")
    dsn = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    committed.add(Webhook(url="http://a.example/", event_types=["stars.changed"], secret="s"))
    emit(committed, "stars.changed", {"stars": 1}, customer_id=7)
    committed.commit()
    sequencer = Sequencer(engine, PlainConnection(dsn))
    statements = []
    try:
        connection = sequencer.plain.get()
        execute = connection.execute
        connection.execute = lambda query, *args, **kwargs: (
            statements.append(query) or execute(query, *args, **kwargs)
        )
        sequenced, written = sequencer.round()
    finally:
        sequencer.close()
    assert [e.type for e in sequenced] == ["stars.changed"] and written == 1
    assert len(statements) == 1 and "INSERT INTO webhook_deliveries" in statements[0]
    assert committed.scalar(select(func.count()).select_from(WebhookDelivery)) == 1


def test_a_followers_sql_with_a_percent_sign_is_refused_and_rounds_stay_as_they_were():
    before = sequence_sql()
    with pytest.raises(ValueError):
        follow_sequencing(Follower(sql="SELECT 1 WHERE 'a' LIKE '%'", write=lambda c, e: 0))
    assert sequence_sql() == before and "LIKE" not in before

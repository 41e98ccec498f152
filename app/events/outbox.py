"""Writing events (in the caller's transaction) and sequencing them (after commit).

The sale path only inserts one row: all of a transaction's events, as one JSON array in the
outbox, just before it commits. No NOTIFY inside its transaction, so it never queues on
PostgreSQL's notification lock, and no index of the event log to update. After the commit, the
process wakes its own event hub in memory; the hub sequences what has committed (or asks the
sequencing process to) and the sequencer moves the events into the log with their positions,
in one statement, and sends one NOTIFY per batch, which wakes the hubs that have streams to
serve.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property

from sqlalchemy import Integer, Text, cast, column, delete, func, insert, select, text
from sqlalchemy import event as sa_event
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from app.core.db import driver_cursor
from app.core.types import utcnow
from app.events.models import Event, OutboxEntry

EVENTS_CHANNEL = "omnicard_events"
PENDING_CHANNEL = "omnicard_outbox"
#: Held by whichever process sequences events (PostgreSQL advisory lock key).
SEQUENCER_LOCK = 0x0C0A_2D_E7
#: Transactions whose events are numbered in one sequencing round at the most.
SEQUENCE_BATCH = 1000


def emit(
    s: Session,
    type: str,
    payload: dict,
    *,
    customer_id: int | None = None,
    store_id: int | None = None,
    device_id: int | None = None,
    card_id: int | None = None,
) -> None:
    """Write an event in ``s``'s transaction: it exists if and only if the change commits.

    It is written with the transaction's other events when the session commits (or
    ``write_events`` is called); one emitted inside a savepoint that rolls back is dropped.
    """
    row = {
        "type": type, "created_at": utcnow().isoformat(), "customer_id": customer_id,
        "store_id": store_id, "device_id": device_id, "card_id": card_id, "payload": payload,
    }  # fmt: skip
    if not s.in_transaction():
        s.connection()  # the change's transaction: its rollback must take the event with it
    s.info.setdefault(_WAITING, []).append((s.get_nested_transaction(), row))
    s.info["events_emitted"] = True


#: Session.info key: (savepoint or None, row) for each event emitted and not yet written.
_WAITING = "omnicard.events.waiting"


def write_events(s: Session) -> None:
    """Write the events emitted in ``s`` so far: one outbox row, one statement."""
    waiting = s.info.pop(_WAITING, None)
    if not waiting:
        return
    events = json.dumps([row for _, row in waiting], separators=(",", ":"))
    connection = s.connection()
    if connection.dialect.name != "postgresql":
        connection.execute(_INSERT_OUTBOX, {"events": events})
        return
    # On the sale path the client's CPU is what is scarce: one prepared statement straight
    # through psycopg, as the ledger's own call goes.
    with driver_cursor(connection) as cursor:
        cursor.execute(_INSERT_OUTBOX_SQL, (events,), prepare=True)


_INSERT_OUTBOX = text("INSERT INTO event_outbox (events) VALUES (:events)")
_INSERT_OUTBOX_SQL = "INSERT INTO event_outbox (events) VALUES (%s::json)"


def _rolled_back(s: Session, savepoint) -> None:
    """Drop the events emitted inside ``savepoint`` (or any savepoint within it)."""

    def inside(tx) -> bool:
        while tx is not None:
            if tx is savepoint:
                return True
            tx = tx.parent
        return False

    if _WAITING in s.info:
        s.info[_WAITING] = [(tx, row) for tx, row in s.info[_WAITING] if not inside(tx)]


@sa_event.listens_for(Session, "before_commit")
def _write_before_commit(s: Session) -> None:
    if s.get_nested_transaction() is None:  # the transaction itself, not a savepoint
        write_events(s)


@sa_event.listens_for(Session, "after_soft_rollback")
def _drop_rolled_back(s: Session, previous_transaction) -> None:
    if previous_transaction.nested:
        _rolled_back(s, previous_transaction)


@sa_event.listens_for(Session, "after_transaction_end")
def _drop_at_the_end(s: Session, transaction) -> None:
    if transaction.parent is None:  # committed (so written), rolled back or closed
        s.info.pop(_WAITING, None)


def sequence_committed(
    connection: Connection, batch: int = SEQUENCE_BATCH
) -> tuple[list[Delivered], int]:
    """Move every committed transaction's events from the outbox into the log, in outbox
    order, giving each its position, and write their webhook deliveries (one sequencer at a
    time holds the lock, so positions only grow; a second one's positions would collide with
    the first's and its round roll back). Returns the events just sequenced, in order (the
    sequencing process hands them on without reading them back), and how many deliveries
    were written."""
    sequenced: list[Delivered] = []
    deliveries = 0
    while True:
        if connection.dialect.name == "postgresql":
            rows = connection.execute(_SEQUENCE, {"batch": batch, "channel": EVENTS_CHANNEL}).all()
            page = sorted((Delivered(*row[:-1]) for row in rows), key=lambda e: e.position)
            deliveries += rows[0].deliveries if rows else 0
        else:
            from app.webhooks.services import enqueue  # it knows events through this module

            page = _sequence_in_python(connection, batch)
            deliveries += enqueue(connection, page)
        sequenced += page
        if len(page) < batch:
            return sequenced, deliveries


def _sequence_in_python(connection: Connection, batch: int) -> list[Delivered]:
    """The sequencing statement's work, step by step (SQLite has no data-modifying WITH)."""
    taken = connection.execute(
        select(OutboxEntry.id, OutboxEntry.events).order_by(OutboxEntry.id).limit(batch)
    ).all()
    if not taken:
        return []
    top = connection.execute(select(func.coalesce(func.max(Event.position), 0))).scalar()
    rows = [
        {**event, "position": top + n, "created_at": datetime.fromisoformat(event["created_at"])}
        for n, event in enumerate((e for _, events in taken for e in events), start=1)
    ]
    connection.execute(delete(OutboxEntry).where(OutboxEntry.id.in_([id for id, _ in taken])))
    connection.execute(insert(Event), rows)
    return [
        Delivered(r["position"], r["type"], r["created_at"], r["customer_id"], r["store_id"],
                  r["device_id"], r["card_id"], json.dumps(r["payload"]))
        for r in rows
    ]  # fmt: skip


def waiting_in_outbox(connection: Connection) -> list[dict]:
    """The committed events not yet sequenced, in order."""
    rows = connection.execute(select(OutboxEntry.events).order_by(OutboxEntry.id)).scalars()
    return [event for events in rows for event in events]


def wake_after_commit(sessions, hub_of) -> None:
    """After any session that emitted events commits, wake this process's hub."""

    @sa_event.listens_for(sessions, "after_commit")
    def _after_commit(session: Session) -> None:
        if session.get_nested_transaction() is not None:
            return  # a savepoint was released; the transaction itself goes on
        if session.info.pop("events_emitted", False):
            hub = hub_of()
            if hub is not None:
                hub.poke()

    @sa_event.listens_for(sessions, "after_rollback")
    def _after_rollback(session: Session) -> None:
        session.info.pop("events_emitted", None)


@dataclass(frozen=True)
class Delivered:
    position: int
    type: str
    created_at: datetime
    customer_id: int | None
    store_id: int | None
    device_id: int | None
    card_id: int | None
    #: The payload as the database holds it, JSON text: a stream sends it on as it is.
    payload_json: str

    @cached_property
    def payload(self) -> dict:
        return json.loads(self.payload_json)

    def wire(self) -> dict:
        return {
            "id": self.position,
            "type": self.type,
            "created_at": self.created_at.astimezone(UTC).isoformat(),
            "data": self.payload,
        }

    @cached_property
    def sse(self) -> bytes:
        """The event as a Server-Sent Events message: made once, however many streams, with
        the payload's JSON passed through rather than parsed and written again."""
        data = (
            f'{{"id": {self.position}, "type": {json.dumps(self.type)}, '
            f'"created_at": "{self.created_at.astimezone(UTC).isoformat()}", '
            f'"data": {self.payload_json}}}'
        )
        return f"id: {self.position}\nevent: {self.type}\ndata: {data}\n\n".encode()


EVENT_COLUMNS = (
    Event.position,
    Event.type,
    Event.created_at,
    Event.customer_id,
    Event.store_id,
    Event.device_id,
    Event.card_id,
    cast(Event.payload, Text).label("payload_json"),
)


def fetch_after(connection: Connection, after: int, limit: int, *where) -> list[Delivered]:
    """Sequenced events after ``after``, in order, optionally only those matching ``where``."""
    query = (
        select(*EVENT_COLUMNS)
        .where(Event.position > after, *where)
        .order_by(Event.position)
        .limit(limit)
    )
    return [Delivered(*row) for row in connection.execute(query)]


#: A sequencing round on PostgreSQL, in one statement and so one transaction: take a batch of
#: committed transactions' events out of the outbox; number them after the newest position and
#: write them to the log; write their webhook deliveries (as ``app.webhooks.services.enqueue``
#: does on SQLite: the body is the event as a stream sends it, the account key its first
#: owner); and, if it numbered anything, announce the new top to the listening processes (the
#: NOTIFY goes out with the COMMIT). It returns the events, and how many deliveries it wrote.
_SEQUENCE_SQL = """
WITH taken AS (
    DELETE FROM event_outbox
    WHERE id IN (SELECT id FROM event_outbox ORDER BY id LIMIT {batch})
    RETURNING id, events
), logged AS (
    INSERT INTO events (position, type, created_at, customer_id, store_id, device_id, card_id,
                        payload)
    SELECT newest.top + row_number() OVER (ORDER BY taken.id, e.n), e.event->>'type',
           (e.event->>'created_at')::timestamptz, (e.event->>'customer_id')::bigint,
           (e.event->>'store_id')::bigint, (e.event->>'device_id')::bigint,
           (e.event->>'card_id')::bigint, (e.event->'payload')::jsonb
    FROM (SELECT COALESCE(MAX(position), 0) AS top FROM events) AS newest, taken,
         json_array_elements(taken.events) WITH ORDINALITY AS e(event, n)
    RETURNING position, type, created_at, customer_id, store_id, device_id, card_id, payload
), delivered AS (
    INSERT INTO webhook_deliveries (webhook_id, event_id, event_type, account_key, body, status,
                                    attempts, next_attempt_at, created_at)
    SELECT hook.id, logged.position, logged.type,
           CASE WHEN logged.customer_id IS NOT NULL THEN 'customer:' || logged.customer_id
                WHEN logged.store_id IS NOT NULL THEN 'store:' || logged.store_id
                WHEN logged.device_id IS NOT NULL THEN 'device:' || logged.device_id
                ELSE 'all' END,
           json_build_object(
               'id', logged.position, 'type', logged.type,
               'created_at', to_char(logged.created_at AT TIME ZONE 'UTC',
                                     'YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"'),
               'data', logged.payload)::text,
           'pending', 0, now(), now()
    FROM logged JOIN webhooks AS hook ON hook.active AND hook.event_types ? logged.type
    ORDER BY logged.position, hook.id  -- a delivery's id orders it within its account
    RETURNING id
), announced AS (
    SELECT pg_notify({channel}, MAX(position)::text) FROM logged HAVING COUNT(*) > 0
)
SELECT logged.position, logged.type, logged.created_at, logged.customer_id, logged.store_id,
       logged.device_id, logged.card_id, logged.payload::text,
       (SELECT COUNT(*) FROM delivered) AS deliveries
FROM logged, announced
"""
_SEQUENCE = text(_SEQUENCE_SQL.format(batch=":batch", channel=":channel")).columns(
    *EVENT_COLUMNS[:-1], column("payload_json", Text), column("deliveries", Integer)
)
#: The same, for the sequencer's own psycopg connection.
SEQUENCE_SQL = _SEQUENCE_SQL.format(batch="%(batch)s", channel="%(channel)s")

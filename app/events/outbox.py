"""Writing events (in the caller's transaction) and sequencing them (after commit).

The sale path only inserts a row: no NOTIFY inside its transaction, so it never queues on
PostgreSQL's notification lock. After the commit, the process wakes its own event hub in
memory; the hub sequences what has committed and sends one NOTIFY per batch, which wakes the
hubs of every other process.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property

from sqlalchemy import event as sa_event
from sqlalchemy import insert, select, text
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from app.core.types import utcnow
from app.events.models import Event

EVENTS_CHANNEL = "omnicard_events"
PENDING_CHANNEL = "omnicard_outbox"
#: Held by whichever process sequences events (PostgreSQL advisory lock key).
SEQUENCER_LOCK = 0x0C0A_2D_E7


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
    """Write an event in ``s``'s transaction: it exists if and only if the change commits."""
    s.execute(
        insert(Event),
        {
            "type": type,
            "created_at": utcnow(),
            "customer_id": customer_id,
            "store_id": store_id,
            "device_id": device_id,
            "card_id": card_id,
            "payload": payload,
        },
    )
    s.info["events_emitted"] = True


def sequence_committed(connection: Connection, batch: int = 5000) -> list[Delivered]:
    """Give every committed, unsequenced event its position, in id order (one sequencer at a
    time holds the lock, so positions only grow). Returns the events just sequenced, in order:
    the sequencing process hands them on without reading them back."""
    sequenced: list[Delivered] = []
    while True:
        page = [Delivered(*row) for row in connection.execute(_SEQUENCE, {"batch": batch})]
        sequenced += page
        if len(page) < batch:
            sequenced.sort(key=lambda e: e.position)
            return sequenced


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
    payload: dict

    def wire(self) -> dict:
        return {
            "id": self.position,
            "type": self.type,
            "created_at": self.created_at.isoformat(),
            "data": self.payload,
        }

    @cached_property
    def sse(self) -> bytes:
        """The event as a Server-Sent Events message: made once, however many streams."""
        data = json.dumps(self.wire())
        return f"id: {self.position}\nevent: {self.type}\ndata: {data}\n\n".encode()


EVENT_COLUMNS = (
    Event.position,
    Event.type,
    Event.created_at,
    Event.customer_id,
    Event.store_id,
    Event.device_id,
    Event.card_id,
    Event.payload,
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


#: One statement numbers a batch and returns it (PostgreSQL and SQLite alike).
_SEQUENCE = text(
    "UPDATE events SET position = numbered.base + numbered.n "
    "FROM (SELECT id, row_number() OVER (ORDER BY id) AS n, "
    "      (SELECT COALESCE(MAX(position), 0) FROM events) AS base "
    "      FROM events WHERE position IS NULL ORDER BY id LIMIT :batch) AS numbered "
    "WHERE events.id = numbered.id "
    "RETURNING events.position, events.type, events.created_at, events.customer_id, "
    "events.store_id, events.device_id, events.card_id, events.payload"
).columns(*EVENT_COLUMNS)

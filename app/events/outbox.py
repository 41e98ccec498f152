"""Writing events (in the caller's transaction), and the events as the log gives them back.

The sale path only inserts one row: all of a transaction's events, as one JSON array in the
outbox, sent with its COMMIT (``app.core.db.COMMIT_WRITES``). No NOTIFY inside its
transaction, so it never queues on PostgreSQL's notification lock, and no index of the event
log to update. After the commit, the
process wakes its own event hub in memory; the hub sequences what has committed (or asks the
sequencing process to) and the sequencer moves the events into the log with their positions,
in one statement, and sends one NOTIFY per batch, which wakes the hubs that have streams to
serve (``app.events.sequencing``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property

from sqlalchemy import Text, cast, select, text
from sqlalchemy import event as sa_event
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from app.core import db
from app.core.types import utcnow
from app.events.models import Event, OutboxEntry


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
    ``write_events`` is called), in the commit's own round trip; one emitted inside a savepoint
    that rolls back is dropped.
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
    """Write the events emitted in ``s`` so far, now (the commit does it otherwise)."""
    events = _events_to_write(s)
    if events is not None:
        s.connection().execute(_INSERT_OUTBOX, events)


def _events_to_write(s: Session) -> dict | None:
    """All of the transaction's events waiting to be written: one outbox row."""
    waiting = s.info.pop(_WAITING, None)
    if not waiting:
        return None
    return {"events": json.dumps([row for _, row in waiting], separators=(",", ":"))}


_INSERT_OUTBOX = text("INSERT INTO event_outbox (events) VALUES (:events)")


def _rolled_back(s: Session, savepoint) -> None:
    """Drop the events emitted inside ``savepoint`` (or any savepoint within it)."""
    if _WAITING in s.info:
        s.info[_WAITING] = [
            (tx, row) for tx, row in s.info[_WAITING] if not db.made_within(tx, savepoint)
        ]


db.COMMIT_WRITES.append((_INSERT_OUTBOX, _events_to_write))


@sa_event.listens_for(Session, "after_soft_rollback")
def _drop_rolled_back(s: Session, previous_transaction) -> None:
    if previous_transaction.nested:
        _rolled_back(s, previous_transaction)


@sa_event.listens_for(Session, "after_transaction_end")
def _drop_at_the_end(s: Session, transaction) -> None:
    if transaction.parent is None:  # committed (so written), rolled back or closed
        s.info.pop(_WAITING, None)


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

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, BigInteger, Index, String, text
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import Base
from app.core.types import BigId, Json, UtcDateTime


def _where_given(column: str) -> dict:
    """A partial index's condition: most events name no device and many no store, and an
    index entry that no query can use is only a cost to every sale."""
    condition = text(f"{column} IS NOT NULL")
    return {"postgresql_where": condition, "sqlite_where": condition}


class OutboxEntry(Base):
    """A committed transaction's events, waiting for the sequencer (the transactional outbox).

    A transaction writes its events here as one row, in the same transaction as the change
    itself, so they exist if and only if the change commits. The sequencer takes committed
    rows in id order, moves their events into ``events`` with their positions, and deletes
    the rows: the table only ever holds the last few milliseconds' work."""

    __tablename__ = "event_outbox"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    #: The transaction's events, in the order emitted: each a JSON object with the columns
    #: of ``events`` but ``position`` (``created_at`` in ISO 8601). Plain JSON text, not
    #: JSONB: it is written once and read once, by the sequencer.
    events: Mapped[list] = mapped_column(JSON)


class Event(Base):
    """Something a channel may show, in the order of delivery. Rows are only ever added, by
    the sequencer, each with its ``position``: the strictly increasing id that subscribers
    see, resume from and never see twice."""

    __tablename__ = "events"
    __table_args__ = (
        Index("ix_events_customer_position", "customer_id", "position",
              **_where_given("customer_id")),
        Index("ix_events_store_position", "store_id", "position", **_where_given("store_id")),
        Index("ix_events_device_position", "device_id", "position",
              **_where_given("device_id")),
    )  # fmt: skip

    #: Order of delivery: given after commit, in commit order.
    position: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=False)
    #: ``card.balance_changed``, ``card.status_changed``, ``stars.changed``, ``sale.completed``,
    #: ``refund.completed``, ``top_up.settled``, ``card.presented``, ...
    type: Mapped[str] = mapped_column(String(40))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    #: Who may see it: the shopper, the store's tills, one device, a card's watchers.
    customer_id: Mapped[int | None] = mapped_column(BigInteger)
    store_id: Mapped[int | None] = mapped_column(BigInteger)
    device_id: Mapped[int | None] = mapped_column(BigInteger)
    card_id: Mapped[int | None] = mapped_column(BigInteger)
    #: The new state, not just "something changed".
    payload: Mapped[dict] = mapped_column(Json)

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Index, String, text
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import Base
from app.core.types import BigId, Json, UtcDateTime, utcnow


class Event(Base):
    """Something a channel may show, written in the same transaction as the change itself
    (the transactional outbox). Once committed, the sequencer gives it its ``position``: the
    strictly increasing id that subscribers see, resume from and never see twice."""

    __tablename__ = "events"
    __table_args__ = (
        Index(
            "ix_events_unsequenced",
            "id",
            postgresql_where=text("position IS NULL"),
            sqlite_where=text("position IS NULL"),
        ),
        Index("ix_events_customer_position", "customer_id", "position"),
        Index("ix_events_store_position", "store_id", "position"),
        Index("ix_events_device_position", "device_id", "position"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    #: Order of delivery: given after commit, in commit order; None until then.
    position: Mapped[int | None] = mapped_column(BigInteger, unique=True)
    #: ``card.balance_changed``, ``card.status_changed``, ``stars.changed``, ``sale.completed``,
    #: ``refund.completed``, ``top_up.settled``, ``card.presented``, ...
    type: Mapped[str] = mapped_column(String(40))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    #: Who may see it: the shopper, the store's tills, one device, a card's watchers.
    customer_id: Mapped[int | None] = mapped_column(BigInteger)
    store_id: Mapped[int | None] = mapped_column(BigInteger)
    device_id: Mapped[int | None] = mapped_column(BigInteger)
    card_id: Mapped[int | None] = mapped_column(BigInteger)
    #: The new state, not just "something changed".
    payload: Mapped[dict] = mapped_column(Json)

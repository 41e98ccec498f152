from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, CheckConstraint, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import Base
from app.core.types import BigId, Json, UtcDateTime, utcnow


class Webhook(Base):
    """An outside system (a CRM, an email or SMS service) that wants some event types."""

    __tablename__ = "webhooks"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    url: Mapped[str] = mapped_column(String(500))
    #: The event types it wants, e.g. ["card.balance_changed", "sale.completed"].
    event_types: Mapped[list] = mapped_column(Json)
    #: Signs every delivery (HMAC-SHA256); shown once, when the webhook is registered.
    secret: Mapped[str] = mapped_column(String(100))
    active: Mapped[bool] = mapped_column(default=True)
    created_by_staff_id: Mapped[int | None] = mapped_column(ForeignKey("staff.id"))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class WebhookDelivery(Base):
    """One event on its way to one webhook, retried with backoff until it lands."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        CheckConstraint("status IN ('pending','delivered','failed')", "status"),
        Index("ix_webhook_deliveries_due", "status", "next_attempt_at"),
        Index("ix_webhook_deliveries_account", "webhook_id", "account_key", "id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    webhook_id: Mapped[int] = mapped_column(ForeignKey("webhooks.id"))
    #: The event's position in the stream.
    event_id: Mapped[int] = mapped_column(BigInteger)
    event_type: Mapped[str] = mapped_column(String(40))
    #: Deliveries for one account (``customer:7``, ``store:2``) go out in order.
    account_key: Mapped[str] = mapped_column(String(40))
    #: The body sent, exactly as signed.
    body: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(10), default="pending")
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    #: The delivery this one replays, when an admin asked for it again.
    replay_of_id: Mapped[int | None] = mapped_column(ForeignKey("webhook_deliveries.id"))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    delivered_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class WebhookAttempt(Base):
    __tablename__ = "webhook_attempts"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    delivery_id: Mapped[int] = mapped_column(ForeignKey("webhook_deliveries.id"), index=True)
    at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    #: The receiver's HTTP status, or None when it could not be reached.
    status_code: Mapped[int | None]
    error: Mapped[str | None] = mapped_column(String(300))
    duration_ms: Mapped[int]

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, CheckConstraint, ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import Base
from app.core.idempotency import MAX_KEY_LENGTH
from app.core.types import BigId, UtcDateTime, utcnow


class TopUp(Base):
    """Value loaded onto a card: from a bank card through the payment gateway (app, web,
    auto-reload), or with cash or a bank card at the till."""

    __tablename__ = "top_ups"
    __table_args__ = (
        CheckConstraint("amount_minor > 0", "amount"),
        CheckConstraint("status IN ('pending','succeeded','declined')", "status"),
        CheckConstraint("source IN ('gateway','cash','bank_card')", "source"),
        UniqueConstraint("principal", "idempotency_key"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    card_id: Mapped[int] = mapped_column(ForeignKey("cards.id"), index=True)
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    source: Mapped[str] = mapped_column(String(10))
    status: Mapped[str] = mapped_column(String(10))
    channel: Mapped[str] = mapped_column(String(10))
    #: Our reference for the charge, sent to the gateway: the gateway's idempotency key.
    reference: Mapped[str] = mapped_column(String(64), unique=True)
    #: The gateway's token for the shopper's bank card. Never a card number.
    payment_token: Mapped[str | None] = mapped_column(String(100))
    processor_ref: Mapped[str | None] = mapped_column(String(100))
    decline_code: Mapped[str | None] = mapped_column(String(60))
    #: Who asked, and the Idempotency-Key they sent (None for an auto-reload).
    principal: Mapped[str | None] = mapped_column(String(80))
    idempotency_key: Mapped[str | None] = mapped_column(String(MAX_KEY_LENGTH))
    #: The sale whose drop below the threshold fired this auto-reload: once per sale.
    trigger_sale_id: Mapped[int | None] = mapped_column(ForeignKey("sales.id"), unique=True)
    store_id: Mapped[int | None] = mapped_column(ForeignKey("stores.id"))
    device_id: Mapped[int | None] = mapped_column(ForeignKey("devices.id"))
    ledger_transaction_id: Mapped[int | None] = mapped_column(ForeignKey("ledger_transactions.id"))
    #: For a top-up at a till: the till's open shift, if one was.
    shift_id: Mapped[int | None] = mapped_column(ForeignKey("shifts.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    settled_at: Mapped[datetime | None] = mapped_column(UtcDateTime)

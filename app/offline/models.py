"""Offline allowances, and the offline sales the server refused."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, CheckConstraint, ForeignKey, Index, String, text
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import Base
from app.core.types import BigId, Json, UtcDateTime, utcnow


class OfflineAllowance(Base):
    """Money of one card set aside for one till, which may take it from the card while the
    API cannot be reached. The money sits in the card's hold account (``card:<id>:held``)
    until offline sales replayed from the till use it or the allowance is released.
    """

    __tablename__ = "offline_allowances"
    __table_args__ = (
        CheckConstraint("status IN ('live','released')", "status"),
        CheckConstraint("amount_minor >= 0", "amount"),
        CheckConstraint("used_minor >= 0 AND used_minor <= amount_minor", "used"),
        # One live allowance per card and till: asking again answers the live one.
        Index(
            "uq_offline_allowances_live",
            "card_id",
            "device_id",
            unique=True,
            postgresql_where=text("status = 'live'"),
            sqlite_where=text("status = 'live'"),
        ),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    card_id: Mapped[int] = mapped_column(ForeignKey("cards.id"), index=True)
    device_id: Mapped[int] = mapped_column(ForeignKey("devices.id"), index=True)
    store_id: Mapped[int] = mapped_column(ForeignKey("stores.id"))
    cashier_id: Mapped[int] = mapped_column(ForeignKey("staff.id"))
    currency: Mapped[str] = mapped_column(String(3))
    #: What was set aside: the amount asked for, or the card's whole balance if less.
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    #: What replayed offline sales have taken of it.
    used_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    #: What went back to the card when it was released.
    released_minor: Mapped[int | None] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(10), default="live")
    #: Random per allowance: the till recognises the card by HMACs under it, not its number.
    salt: Mapped[str] = mapped_column(String(64))
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    released_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    hold_transaction_id: Mapped[int | None] = mapped_column(ForeignKey("ledger_transactions.id"))

    @property
    def left_minor(self) -> int:
        return self.amount_minor - self.used_minor


class OfflineRefusal(Base):
    """An offline sale the server refused (a forged, expired or spent allowance), kept for
    whoever looks into a till's offline takings: the refusal itself changes nothing else."""

    __tablename__ = "offline_refusals"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    device_id: Mapped[int] = mapped_column(ForeignKey("devices.id"), index=True)
    cashier_id: Mapped[int] = mapped_column(ForeignKey("staff.id"))
    #: The error code answered: ``allowance_invalid``, ``allowance_expired``, ...
    reason: Mapped[str] = mapped_column(String(40))
    #: The request's body as sent.
    body: Mapped[dict] = mapped_column(Json)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)

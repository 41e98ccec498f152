from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, CheckConstraint, ForeignKey, Index, String, text
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import Base
from app.core.types import BigId, UtcDateTime, utcnow


class Card(Base):
    """A stored-value card: the digital one every shopper gets, or a physical gift card.

    Its balance is a ledger account (a liability of the retailer to the card's holder).
    """

    __tablename__ = "cards"
    __table_args__ = (
        CheckConstraint("kind IN ('digital','physical')", "kind"),
        CheckConstraint("status IN ('active','frozen','inactive')", "status"),
        CheckConstraint("NOT is_primary OR customer_id IS NOT NULL", "primary_has_owner"),
        # One primary card per shopper.
        Index(
            "uq_cards_one_primary",
            "customer_id",
            unique=True,
            postgresql_where=text("is_primary"),
            sqlite_where=text("is_primary"),
        ),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    #: 16 digits, the last a Luhn check digit.
    number: Mapped[str] = mapped_column(String(16), unique=True)
    #: argon2 hash of the 8-digit security code printed on a physical card; None for digital.
    security_code_hash: Mapped[str | None] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(10))
    status: Mapped[str] = mapped_column(String(10), default="active")
    customer_id: Mapped[int | None] = mapped_column(ForeignKey("customers.id"), index=True)
    is_primary: Mapped[bool] = mapped_column(default=False)
    account_id: Mapped[int] = mapped_column(ForeignKey("ledger_accounts.id"), unique=True)
    #: What offline allowances hold of the card's money (see app.offline), opened with the
    #: first allowance: money there can be spent only at the till that holds it.
    held_account_id: Mapped[int | None] = mapped_column(
        ForeignKey("ledger_accounts.id"), unique=True
    )
    #: UID of an NFC card or wristband bound to this card.
    nfc_uid: Mapped[str | None] = mapped_column(String(32), unique=True)
    batch_id: Mapped[int | None] = mapped_column(ForeignKey("card_batches.id"))
    #: Where the balance went when this card was reported lost.
    replaced_by_id: Mapped[int | None] = mapped_column(ForeignKey("cards.id"))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    registered_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    frozen_at: Mapped[datetime | None] = mapped_column(UtcDateTime)

    @property
    def last4(self) -> str:
        return self.number[-4:]


class CardBatch(Base):
    """Physical gift cards issued together by staff."""

    __tablename__ = "card_batches"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    size: Mapped[int]
    note: Mapped[str] = mapped_column(String(200), default="")
    created_by_staff_id: Mapped[int] = mapped_column(ForeignKey("staff.id"))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class PayCode(Base):
    """A short-lived code the app shows as a barcode/QR; it names one card, once."""

    __tablename__ = "pay_codes"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    #: SHA-256 of the code: a code is worth money for a minute.
    code_hash: Mapped[str] = mapped_column(String(64), unique=True)
    card_id: Mapped[int] = mapped_column(ForeignKey("cards.id"), index=True)
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime)
    used_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class AutoReload(Base):
    """'When the card drops below ``threshold``, add ``amount``' with a saved payment token."""

    __tablename__ = "auto_reloads"
    __table_args__ = (
        CheckConstraint("threshold_minor >= 0", "threshold"),
        CheckConstraint("amount_minor > 0", "amount"),
    )

    card_id: Mapped[int] = mapped_column(ForeignKey("cards.id"), primary_key=True)
    threshold_minor: Mapped[int] = mapped_column(BigInteger)
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    #: The payment processor's token for the shopper's bank card; never the card number.
    payment_token: Mapped[str] = mapped_column(String(100))
    enabled: Mapped[bool] = mapped_column(default=True)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)

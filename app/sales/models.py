from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    ForeignKey,
    Index,
    String,
    UniqueConstraint,
    false,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.core.db import Base
from app.core.types import BigId, Json, UtcDateTime, utcnow


class Sale(Base):
    """A purchase at a till, priced by the server, paid by one or more tenders."""

    __tablename__ = "sales"
    __table_args__ = (
        CheckConstraint("total_minor >= 0", "total"),
        Index(
            "ix_sales_to_count_for_kiosks", "id",
            postgresql_where=text("NOT kiosk_counted"), sqlite_where=text("NOT kiosk_counted"),
        ),
    )  # fmt: skip

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    store_id: Mapped[int] = mapped_column(ForeignKey("stores.id"), index=True)
    device_id: Mapped[int] = mapped_column(ForeignKey("devices.id"))
    cashier_id: Mapped[int] = mapped_column(ForeignKey("staff.id"))
    #: The shopper, when a card identified one (a registered card).
    customer_id: Mapped[int | None] = mapped_column(ForeignKey("customers.id"), index=True)
    #: The card presented, if any (it may be an unregistered gift card).
    card_id: Mapped[int | None] = mapped_column(ForeignKey("cards.id"), index=True)
    #: How the card was presented: ``card_number``, ``nfc_uid`` or ``pay_code``.
    identified_by: Mapped[str | None] = mapped_column(String(12))
    currency: Mapped[str] = mapped_column(String(3))
    total_minor: Mapped[int] = mapped_column(BigInteger)
    stars_earned: Mapped[int] = mapped_column(BigInteger, default=0)
    ledger_transaction_id: Mapped[int] = mapped_column(ForeignKey("ledger_transactions.id"))
    #: The till's open shift when the sale was rung up, if one was.
    shift_id: Mapped[int | None] = mapped_column(ForeignKey("shifts.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow, index=True)
    #: When the till made it, for a sale made offline and replayed later; else None.
    offline_made_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    #: The offline allowance its card balance part came from, if any.
    offline_allowance_id: Mapped[int | None] = mapped_column(ForeignKey("offline_allowances.id"))
    #: In the kiosk suggestions' counts yet (app.kiosk.counts.count_new_sales)?
    kiosk_counted: Mapped[bool] = mapped_column(default=False, server_default=false())

    lines: Mapped[list[SaleLine]] = relationship(order_by="SaleLine.line_no")
    tenders: Mapped[list[SaleTender]] = relationship(order_by="SaleTender.id")


class SaleLine(Base):
    __tablename__ = "sale_lines"
    __table_args__ = (
        UniqueConstraint("sale_id", "line_no"),
        CheckConstraint("quantity > 0", "quantity"),
        CheckConstraint("refunded_quantity BETWEEN 0 AND quantity", "refunded"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    sale_id: Mapped[int] = mapped_column(ForeignKey("sales.id"))
    line_no: Mapped[int]
    product_id: Mapped[int] = mapped_column(ForeignKey("products.id"))
    sku: Mapped[str] = mapped_column(String(40))
    name: Mapped[str] = mapped_column(String(200))
    quantity: Mapped[int]
    unit_price_minor: Mapped[int] = mapped_column(BigInteger)
    line_total_minor: Mapped[int] = mapped_column(BigInteger)
    #: The Stars this line earned; a refund of the line takes exactly these back.
    stars_earned: Mapped[int] = mapped_column(BigInteger, default=0)
    refunded_quantity: Mapped[int] = mapped_column(default=0)


class SaleTender(Base):
    __tablename__ = "sale_tenders"
    __table_args__ = (
        CheckConstraint("type IN ('card_balance','cash','bank_card')", "type"),
        CheckConstraint("amount_minor > 0", "amount"),
        CheckConstraint("refunded_minor BETWEEN 0 AND amount_minor", "refunded"),
        CheckConstraint(
            "given_minor IS NULL OR (type = 'cash' AND given_minor >= amount_minor)", "given"
        ),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    sale_id: Mapped[int] = mapped_column(ForeignKey("sales.id"), index=True)
    type: Mapped[str] = mapped_column(String(12))
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    refunded_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    #: Cash handed over by the shopper for this tender, when more than its amount (the
    #: rest was given back as change); None when it was exact.
    given_minor: Mapped[int | None] = mapped_column(BigInteger)


class Refund(Base):
    __tablename__ = "refunds"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    sale_id: Mapped[int] = mapped_column(ForeignKey("sales.id"), index=True)
    device_id: Mapped[int] = mapped_column(ForeignKey("devices.id"))
    cashier_id: Mapped[int] = mapped_column(ForeignKey("staff.id"))
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    #: Stars taken back from the shopper's balance.
    stars_taken_back: Mapped[int] = mapped_column(BigInteger, default=0)
    #: Stars the lines earned that had been spent already: now owed by the shopper.
    stars_owed: Mapped[int] = mapped_column(BigInteger, default=0)
    #: [{sku, quantity, amount_minor, stars}] and [{type, amount_minor}].
    lines: Mapped[list] = mapped_column(Json)
    tenders: Mapped[list] = mapped_column(Json)
    ledger_transaction_id: Mapped[int] = mapped_column(ForeignKey("ledger_transactions.id"))
    #: The shift open at the till that gave the money back, if one was.
    shift_id: Mapped[int | None] = mapped_column(ForeignKey("shifts.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class Receipt(Base):
    """What the shopper was handed for a sale or a refund, as it was then: a snapshot that
    later changes (a refund, a card's new balance, a store renamed) leave as it is. Its id is
    the secret of the link the receipt's QR code opens."""

    __tablename__ = "receipts"
    __table_args__ = (
        CheckConstraint(
            "(kind = 'sale' AND refund_id IS NULL) OR (kind = 'refund' AND refund_id IS NOT NULL)",
            "kind",
        ),
    )

    #: Unguessable (192 random bits, URL-safe): whoever holds it may read the receipt.
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(8))
    sale_id: Mapped[int] = mapped_column(ForeignKey("sales.id"), index=True)
    refund_id: Mapped[int | None] = mapped_column(ForeignKey("refunds.id"), unique=True)
    #: The receipt's content (see app.sales.receipts), without its id, url and time.
    body: Mapped[dict] = mapped_column(Json)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)

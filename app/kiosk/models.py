"""What the kiosks record: every tag tapped, the sessions taps fall into, the products a
shopper saved for later, and the one-use codes that pair a screen to its kiosk."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    ForeignKey,
    Index,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import Base
from app.core.types import BigId, UtcDateTime, utcnow

TAP_KINDS = ("product", "sign", "card", "unknown", "refused")


class KioskSession(Base):
    """Taps at one kiosk with no more than ``KIOSK_SESSION_IDLE_S`` between them; a loyalty
    card tapped during it joins it to that shopper."""

    __tablename__ = "kiosk_sessions"
    __table_args__ = (Index(None, "device_id", "last_tap_at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    device_id: Mapped[int] = mapped_column(ForeignKey("devices.id"))
    store_id: Mapped[int] = mapped_column(ForeignKey("stores.id"))
    customer_id: Mapped[int | None] = mapped_column(ForeignKey("customers.id"), index=True)
    started_at: Mapped[datetime] = mapped_column(UtcDateTime)
    last_tap_at: Mapped[datetime] = mapped_column(UtcDateTime)
    #: Set when the session is known to be over (a later tap found it idle).
    ended_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class KioskTap(Base):
    """One tag pressed against a kiosk's reader, as the kiosk reported it."""

    __tablename__ = "kiosk_taps"
    __table_args__ = (
        UniqueConstraint("device_id", "tap_ref"),
        CheckConstraint("kind IN ('product','sign','card','unknown','refused')", "kind"),
        Index(None, "store_id", "tapped_at"),
        Index(None, "customer_id", "tapped_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    device_id: Mapped[int] = mapped_column(ForeignKey("devices.id"))
    store_id: Mapped[int] = mapped_column(ForeignKey("stores.id"))
    #: The kiosk's own id for the tap: a replay of the same tap is the same row.
    tap_ref: Mapped[str] = mapped_column(String(64))
    #: When the tag was tapped, by the kiosk's clock.
    tapped_at: Mapped[datetime] = mapped_column(UtcDateTime)
    received_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    kind: Mapped[str] = mapped_column(String(8))
    product_id: Mapped[int | None] = mapped_column(ForeignKey("products.id"), index=True)
    #: The shelf sign's category (kind ``sign``).
    category: Mapped[str | None] = mapped_column(String(80))
    #: The session's shopper when one had joined it (or joins with this tap).
    customer_id: Mapped[int | None] = mapped_column(ForeignKey("customers.id"))
    kiosk_session_id: Mapped[int] = mapped_column(ForeignKey("kiosk_sessions.id"), index=True)
    #: Why a tap is ``unknown`` or ``refused``, or that the product is not sold here.
    detail: Mapped[str] = mapped_column(String(200), default="")


class SavedProduct(Base):
    """A product a shopper saved for later at a kiosk; saving it again moves it up."""

    __tablename__ = "saved_products"
    __table_args__ = (UniqueConstraint("customer_id", "product_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"))
    product_id: Mapped[int] = mapped_column(ForeignKey("products.id"))
    saved_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    store_id: Mapped[int] = mapped_column(ForeignKey("stores.id"))
    device_id: Mapped[int] = mapped_column(ForeignKey("devices.id"))


class KioskPairingCode(Base):
    """A short code staff read off the kiosk and type on its screen, once, to pair them."""

    __tablename__ = "kiosk_pairing_codes"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    #: SHA-256 of the code, normalised (upper case, no dash).
    code_hash: Mapped[str] = mapped_column(String(64), unique=True)
    device_id: Mapped[int] = mapped_column(ForeignKey("devices.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime)
    used_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class ProductPairCount(Base):
    """How often two products went together, kept up to date as taps and sales are recorded
    (app.kiosk.counts), so that a suggestion reads counts instead of history. One row per
    ordered pair: (a, b) and (b, a) always hold the same numbers."""

    __tablename__ = "kiosk_pair_counts"
    __table_args__ = (
        CheckConstraint("product_id <> other_id", "distinct_products"),
        CheckConstraint("bought >= 0 AND tapped >= 0", "counts"),
        Index(None, "product_id", "score"),
    )

    product_id: Mapped[int] = mapped_column(ForeignKey("products.id"), primary_key=True)
    other_id: Mapped[int] = mapped_column(ForeignKey("products.id"), primary_key=True)
    #: Sales holding both, plus sales of one to a shopper who bought the other within
    #: app.kiosk.counts.BOUGHT_TOGETHER_DAYS before.
    bought: Mapped[int] = mapped_column(BigInteger, default=0)
    #: Kiosk sessions in which both were tapped.
    tapped: Mapped[int] = mapped_column(BigInteger, default=0)
    #: 2 x bought + tapped (app.kiosk.ranking's weights): a product's best partners are read
    #: first, through the index on (product_id, score).
    score: Mapped[int] = mapped_column(BigInteger, default=0)


class ProductStoreCount(Base):
    """A product's kiosk taps and units sold in one store, for the hidden-gem boost."""

    __tablename__ = "kiosk_product_counts"
    __table_args__ = (CheckConstraint("taps >= 0 AND sold >= 0", "counts"),)

    product_id: Mapped[int] = mapped_column(ForeignKey("products.id"), primary_key=True)
    store_id: Mapped[int] = mapped_column(ForeignKey("stores.id"), primary_key=True)
    taps: Mapped[int] = mapped_column(BigInteger, default=0)
    #: Units sold (refunds are not taken off: the count says what shoppers chose).
    sold: Mapped[int] = mapped_column(BigInteger, default=0)

"""Bearer tokens: shopper and staff logins, cashier sessions on a POS terminal, and the
screens paired to a kiosk.

Only a SHA-256 of each token is stored; the token itself is shown once, to its owner.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, CheckConstraint, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import Base
from app.core.types import BigId, UtcDateTime, utcnow


class AuthToken(Base):
    __tablename__ = "auth_tokens"
    __table_args__ = (
        CheckConstraint("kind IN ('customer','staff','cashier','kiosk_screen')", "kind"),
        CheckConstraint(
            "(kind = 'customer' AND customer_id IS NOT NULL) OR "
            "(kind = 'staff' AND staff_id IS NOT NULL) OR "
            "(kind = 'cashier' AND staff_id IS NOT NULL AND device_id IS NOT NULL) OR "
            "(kind = 'kiosk_screen' AND device_id IS NOT NULL)",
            "owner",
        ),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    #: ``customer`` (a shopper's login), ``staff`` (a staff login), ``cashier`` (a cashier
    #: signed in on one POS terminal), ``kiosk_screen`` (the screen paired to one kiosk).
    kind: Mapped[str] = mapped_column(String(16))
    customer_id: Mapped[int | None] = mapped_column(ForeignKey("customers.id"), index=True)
    staff_id: Mapped[int | None] = mapped_column(ForeignKey("staff.id"), index=True)
    device_id: Mapped[int | None] = mapped_column(ForeignKey("devices.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    #: Last 4 characters, to tell a user's sessions apart without revealing them.
    hint: Mapped[str] = mapped_column(String(4), default="")


class Staff(Base):
    """Store staff: an ``admin`` runs the program, a ``cashier`` works a till."""

    __tablename__ = "staff"
    __table_args__ = (CheckConstraint("role IN ('admin','cashier')", "role"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    email: Mapped[str] = mapped_column(String(254), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(16))
    password_hash: Mapped[str] = mapped_column(String(200))
    #: What a cashier types on the till with a PIN; unique across the retailer.
    staff_code: Mapped[str | None] = mapped_column(String(16), unique=True)
    pin_hash: Mapped[str | None] = mapped_column(String(200))
    #: The store a cashier belongs to; None for admins, who work across stores.
    store_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("stores.id"))
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)

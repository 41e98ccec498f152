from __future__ import annotations

from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import Base
from app.core.types import BigId, UtcDateTime, utcnow


class Store(Base):
    __tablename__ = "stores"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    code: Mapped[str] = mapped_column(String(40), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    address: Mapped[str] = mapped_column(String(400), default="")
    #: The store's takings: a hot income account.
    sales_account_id: Mapped[int] = mapped_column(ForeignKey("ledger_accounts.id"))
    #: Cash taken at the tills, for sales and top-ups: a hot asset account.
    cash_account_id: Mapped[int] = mapped_column(ForeignKey("ledger_accounts.id"))
    #: Bank-card payments taken at the tills' card terminals, to be settled by the acquirer.
    bank_card_account_id: Mapped[int] = mapped_column(ForeignKey("ledger_accounts.id"))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class Device(Base):
    """A POS terminal or a kiosk, registered by an admin to exactly one store."""

    __tablename__ = "devices"
    __table_args__ = (CheckConstraint("kind IN ('pos','kiosk')", "kind"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    store_id: Mapped[int] = mapped_column(ForeignKey("stores.id"), index=True)
    kind: Mapped[str] = mapped_column(String(8))
    name: Mapped[str] = mapped_column(String(200))
    #: SHA-256 of the device's secret, which was shown once when it was registered.
    secret_hash: Mapped[str] = mapped_column(String(64), unique=True)
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import Base
from app.core.types import BigId, UtcDateTime, utcnow


class Customer(Base):
    """A shopper with an account: one login, one Stars balance, any number of cards."""

    __tablename__ = "customers"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    #: Lower-cased, so that one address is one account.
    email: Mapped[str] = mapped_column(String(254), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    password_hash: Mapped[str] = mapped_column(String(200))
    #: The shopper's Stars, a STAR ledger account that must not go negative.
    stars_account_id: Mapped[int] = mapped_column(ForeignKey("ledger_accounts.id"), unique=True)
    #: Stars ever earned less Stars taken back by refunds: decides the tier.
    lifetime_stars: Mapped[int] = mapped_column(BigInteger, default=0)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)

"""The double-entry ledger's tables.

Every movement of money or Stars is one ``LedgerTransaction`` made of ``Posting`` rows whose
amounts sum to zero per unit. An account's balance is the sum of its postings; the cached copy
lives on the account row, or, for a hot account that only receives, across
``BalanceShard`` rows so that concurrent sales never queue on one row lock.
Only ``app.ledger.services.post`` writes to these tables.
"""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    false,
)
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import Base
from app.core.types import BigId, Json, UtcDateTime, utcnow


class AccountType(enum.StrEnum):
    ASSET = "asset"
    LIABILITY = "liability"
    INCOME = "income"
    EXPENSE = "expense"
    EQUITY = "equity"


class Account(Base):
    __tablename__ = "ledger_accounts"
    __table_args__ = (
        CheckConstraint("type IN ('asset','liability','income','expense','equity')", "type"),
        CheckConstraint("length(unit) BETWEEN 3 AND 4 AND unit = upper(unit)", "unit"),
        CheckConstraint("shard_count >= 1", "shard_count"),
        CheckConstraint("NOT no_negative OR balance >= 0", "no_negative"),
        CheckConstraint("max_balance IS NULL OR balance <= max_balance", "max_balance"),
        # Only an account with no limit to check may spread its balance over shards.
        CheckConstraint(
            "shard_count = 1 OR (NOT no_negative AND max_balance IS NULL AND NOT frozen)",
            "sharded_unlimited",
        ),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    #: Stable natural key, e.g. ``card:42``, ``store:3:sales``, ``stars:issuance``.
    code: Mapped[str] = mapped_column(String(80), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    #: ISO 4217 currency code, or ``STAR`` for loyalty Stars.
    unit: Mapped[str] = mapped_column(String(4))
    type: Mapped[str] = mapped_column(String(16))
    #: The balance must never go below zero (a shopper's card, a shopper's Stars).
    no_negative: Mapped[bool] = mapped_column(Boolean, default=False)
    #: A frozen account refuses every posting (a card reported lost).
    frozen: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    #: The most the balance may hold, if limited.
    max_balance: Mapped[int | None] = mapped_column(BigInteger)
    #: 1 for an ordinary account; more for a hot account whose cached balance is the
    #: account row's part plus the sum of that many ``BalanceShard`` rows.
    shard_count: Mapped[int] = mapped_column(Integer, default=1)
    #: Cached balance in minor units (or Stars): the account row's part of it.
    balance: Mapped[int] = mapped_column(BigInteger, default=0)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class BalanceShard(Base):
    """One slice of a hot account's cached balance."""

    __tablename__ = "ledger_balance_shards"

    account_id: Mapped[int] = mapped_column(ForeignKey("ledger_accounts.id"), primary_key=True)
    shard: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    balance: Mapped[int] = mapped_column(BigInteger, default=0)


class LedgerTransaction(Base):
    __tablename__ = "ledger_transactions"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    #: What happened: ``top_up``, ``sale``, ``refund``, ``transfer``, ``adjustment``, ...
    kind: Mapped[str] = mapped_column(String(40))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    #: Where it came from: ``app``, ``web``, ``pos``, ``kiosk``, ``admin``, ``system``.
    channel: Mapped[str | None] = mapped_column(String(20))
    store_id: Mapped[int | None] = mapped_column(BigInteger)
    device_id: Mapped[int | None] = mapped_column(BigInteger)
    #: Who did it, as ``kind:id`` (``customer:7``, ``staff:2``, ``device:5``).
    actor: Mapped[str | None] = mapped_column(String(80))
    meta: Mapped[dict] = mapped_column(Json, default=dict)
    #: The transaction this one reverses (a refund, a correction), if any.
    reverses_id: Mapped[int | None] = mapped_column(ForeignKey("ledger_transactions.id"))


class Posting(Base):
    __tablename__ = "ledger_postings"
    __table_args__ = (
        CheckConstraint("amount <> 0", "amount_nonzero"),
        Index("ix_ledger_postings_account_id_id", "account_id", "id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    transaction_id: Mapped[int] = mapped_column(ForeignKey("ledger_transactions.id"), index=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("ledger_accounts.id"))
    #: Signed: positive raises the account's balance, negative lowers it.
    amount: Mapped[int] = mapped_column(BigInteger)
    #: The account's unit, repeated so that a transaction can be checked on its own.
    unit: Mapped[str] = mapped_column(String(4))

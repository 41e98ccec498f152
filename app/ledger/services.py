"""The ledger service: the one place that writes postings.

``post`` runs inside the caller's database transaction and only flushes; the caller commits.
For every account with a limit it takes the row lock in account-id order (so two transactions
can never wait on each other in a cycle), checks the limit against the locked, newest balance
and writes the new balance, all in one conditional UPDATE. Hot accounts that only receive
(a store's sales, a clearing account, Stars issuance) have no limit to check, so their cached
balance is spread over shard rows and each writer takes whichever shard is free
(``FOR UPDATE SKIP LOCKED``): 32 tills selling into one store never queue on one row.

On PostgreSQL these steps run inside the database, in the ``ledger_post()`` function
(migration 0003), so a sale costs one round trip instead of seven; on SQLite they run from
here. The whole test suite runs on both.
"""

from __future__ import annotations

import json
import random
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import bindparam, func, insert, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.core.db import driver_cursor
from app.core.types import fitted, utcnow
from app.ledger.errors import (
    AccountFrozen,
    AccountNotFound,
    BalanceLimitExceeded,
    InsufficientFunds,
    UnitMismatch,
)
from app.ledger.models import Account, BalanceShard, LedgerTransaction, Posting
from app.ledger.rules import Leg, check_legs, limit_breach, net_by_account

accounts = Account.__table__
shards = BalanceShard.__table__
transactions = LedgerTransaction.__table__
postings = Posting.__table__

DEFAULT_HOT_SHARDS = 64


@dataclass(frozen=True)
class Posted:
    transaction_id: int
    #: The new balance of every account with a limit (cards, a shopper's Stars, ...).
    balances: dict[int, int]


def open_account(
    session: Session,
    *,
    code: str,
    name: str,
    unit: str,
    type: str,
    no_negative: bool = False,
    max_balance: int | None = None,
    hot: bool = False,
    shard_count: int = DEFAULT_HOT_SHARDS,
) -> Account:
    """Create an account. ``hot`` spreads its balance over shards; only for unlimited accounts."""
    account = Account(
        code=code,
        name=fitted(name, Account.name),  # made from a store's name, a shopper's email
        unit=unit,
        type=type,
        no_negative=no_negative,
        max_balance=max_balance,
        shard_count=shard_count if hot else 1,
        balance=0,
    )
    session.add(account)
    session.flush()
    if hot:
        session.execute(
            insert(shards),
            [{"account_id": account.id, "shard": n, "balance": 0} for n in range(shard_count)],
        )
    return account


def balance_of(session: Session, account_id: int) -> int:
    """The cached balance: one row, or a hot account's row plus its shards. Never sums history."""
    row = session.execute(
        select(accounts.c.balance, accounts.c.shard_count).where(accounts.c.id == account_id)
    ).one_or_none()
    if row is None:
        raise AccountNotFound(account_id=account_id)
    if row.shard_count == 1:
        return row.balance
    spread = session.scalar(
        select(func.coalesce(func.sum(shards.c.balance), 0)).where(
            shards.c.account_id == account_id
        )
    )
    return row.balance + int(spread)


def balance_for_update(session: Session, account_id: int) -> int:
    """An ordinary account's balance, locked until the transaction ends: nothing can post to
    it meanwhile (to move a whole balance away exactly)."""
    balance = session.execute(
        select(accounts.c.balance)
        .where(accounts.c.id == account_id, accounts.c.shard_count == 1)
        .with_for_update()
    ).scalar()
    if balance is None:
        raise AccountNotFound(account_id=account_id)
    return balance


_LOAD = select(accounts.c.id, accounts.c.unit, accounts.c.shard_count).where(
    accounts.c.id.in_(bindparam("ids", expanding=True))
)

_CHANGE_LIMITED = text(
    "UPDATE ledger_accounts SET balance = balance + :delta "
    "WHERE id = :id AND NOT frozen "
    "AND (NOT no_negative OR balance + :delta >= 0) "
    "AND (max_balance IS NULL OR balance + :delta <= max_balance) "
    "RETURNING balance"
)

_UNDO_LIMITED = text("UPDATE ledger_accounts SET balance = balance - :delta WHERE id = :id")

_CHANGE_SHARD = text(
    "UPDATE ledger_balance_shards SET balance = balance + :delta "
    "WHERE account_id = :id AND shard = :shard"
)


def post(
    session: Session,
    *,
    kind: str,
    legs: Sequence[Leg],
    channel: str | None = None,
    store_id: int | None = None,
    device_id: int | None = None,
    actor: str | None = None,
    meta: dict | None = None,
    reverses_id: int | None = None,
) -> Posted:
    """Write one balanced transaction and its postings, and update the cached balances.

    On PostgreSQL the work is one call of the ``ledger_post()`` database function (one round
    trip: see migration 0003); elsewhere the same steps run from here. Either way a refused
    post has changed nothing, and the caller's transaction stays usable.

    Raises InvalidPosting, UnbalancedTransaction, AccountNotFound, UnitMismatch,
    InsufficientFunds, BalanceLimitExceeded, AccountFrozen.
    """
    check_legs(legs)
    session.flush()
    context = {
        "kind": kind,
        "created_at": utcnow(),
        "channel": channel,
        "store_id": store_id,
        "device_id": device_id,
        "actor": actor,
        "meta": meta or {},
        "reverses_id": reverses_id,
    }
    if session.get_bind().dialect.name == "postgresql":
        outcome = _post_in_postgresql(session, legs, context)
    else:
        outcome = _post_here(session, legs, context)
    if "error" in outcome:
        raise _REFUSALS[outcome["error"]](**outcome["details"])
    balances = {int(k): v for k, v in outcome["balances"].items()}
    return Posted(transaction_id=outcome["transaction_id"], balances=balances)


_REFUSALS = {
    error.code: error
    for error in (
        AccountNotFound,
        UnitMismatch,
        InsufficientFunds,
        BalanceLimitExceeded,
        AccountFrozen,
    )
}

# Sent straight through psycopg (a prepared statement) rather than SQLAlchemy's execution
# layer: on the sale path the client's CPU is the scarce resource, and this is its hot spot.
_LEDGER_POST = (
    "SELECT ledger_post(%s, %s, %s, %s, %s, %s, %s::jsonb, %s, %s::bigint[], %s::bigint[], "
    "%s::text[], %s)"
)


def _post_in_postgresql(session: Session, legs: Sequence[Leg], context: dict) -> dict:
    params = (
        context["kind"],
        context["created_at"],
        context["channel"],
        context["store_id"],
        context["device_id"],
        context["actor"],
        json.dumps(context["meta"]),
        context["reverses_id"],
        [leg.account_id for leg in legs],
        [leg.amount for leg in legs],
        [leg.unit for leg in legs],
        random.randrange(1 << 30),
    )
    with driver_cursor(session.connection()) as cursor:
        cursor.execute(_LEDGER_POST, params, prepare=True)
        return cursor.fetchone()[0]


def _post_here(session: Session, legs: Sequence[Leg], context: dict) -> dict:
    """The steps of ``ledger_post()``, for databases without it (SQLite: one writer at a
    time, so the locks are the database's own write lock)."""
    net = net_by_account(legs)
    found = {row.id: row for row in session.execute(_LOAD, {"ids": list(net)})}
    # Account by account in id order, as ledger_post() does: a posting wrong in two ways is
    # refused for the same one on either database.
    units: dict[int, set[str]] = defaultdict(set)
    for leg in legs:
        units[leg.account_id].add(leg.unit)
    for account_id in net:
        account = found.get(account_id)
        if account is None:
            return {"error": "account_not_found", "details": {"account_id": account_id}}
        if units[account_id] != {account.unit}:
            details = {"account_id": account_id, "account_unit": account.unit}
            return {"error": "unit_mismatch", "details": details}

    # Accounts that can refuse go first, in account-id order (the one locking order); if one
    # refuses, the changes already made are put back. Hot accounts cannot refuse: last.
    balances: dict[int, int] = {}
    for account_id, delta in net.items():
        if delta == 0 or found[account_id].shard_count > 1:
            continue
        new_balance = session.execute(_CHANGE_LIMITED, {"id": account_id, "delta": delta}).scalar()
        if new_balance is None:
            for done_id in balances:
                session.execute(_UNDO_LIMITED, {"id": done_id, "delta": net[done_id]})
            return _refusal(session, account_id, delta)
        balances[account_id] = new_balance
    for account_id, delta in net.items():
        shard_count = found[account_id].shard_count
        if delta and shard_count > 1:
            shard = random.randrange(shard_count)
            session.execute(_CHANGE_SHARD, {"id": account_id, "delta": delta, "shard": shard})

    transaction_id = session.execute(
        insert(transactions).returning(transactions.c.id), context
    ).scalar_one()
    session.execute(
        insert(postings),
        [
            {
                "transaction_id": transaction_id,
                "account_id": leg.account_id,
                "amount": leg.amount,
                "unit": leg.unit,
            }
            for leg in legs
        ],
    )
    return {"transaction_id": transaction_id, "balances": balances}


def _refusal(session: Session, account_id: int, delta: int) -> dict:
    """Which limit refused ``delta``, read from the row as it stands."""
    row = session.execute(
        select(
            accounts.c.balance, accounts.c.no_negative, accounts.c.max_balance, accounts.c.frozen
        ).where(accounts.c.id == account_id)
    ).one()
    if row.frozen:
        return {"error": "account_frozen", "details": {"account_id": account_id}}
    breach = limit_breach(
        row.balance + delta, no_negative=row.no_negative, max_balance=row.max_balance
    )
    if breach == "maximum":
        details = {"account_id": account_id, "balance": row.balance, "max_balance": row.max_balance}
        return {"error": "balance_limit_exceeded", "details": details}
    details = {"account_id": account_id, "balance": row.balance, "requested": -delta}
    return {"error": "insufficient_funds", "details": details}


def reverse(
    session: Session,
    transaction_id: int,
    *,
    kind: str = "reversal",
    **context,
) -> Posted:
    """Post the exact opposite of a transaction (all of it), pointing back at it.

    Raises the errors of ``post``.
    """
    rows = session.execute(
        select(postings.c.account_id, postings.c.amount, postings.c.unit).where(
            postings.c.transaction_id == transaction_id
        )
    ).all()
    if not rows:
        raise AccountNotFound("No such transaction.", transaction_id=transaction_id)
    legs = [Leg(r.account_id, -r.amount, r.unit) for r in rows]
    return post(session, kind=kind, legs=legs, reverses_id=transaction_id, **context)


def freeze(session: Session, account_id: int) -> None:
    """From now on the account refuses every posting, in whichever transaction comes next."""
    session.execute(
        text("UPDATE ledger_accounts SET frozen = true WHERE id = :id AND shard_count = 1"),
        {"id": account_id},
    )


def account_by_code(session: Session, code: str) -> Account | None:
    return session.scalar(select(Account).where(Account.code == code))


def system_account(session: Session, code: str, **spec) -> Account:
    """The account with this code, opened with ``spec`` the first time anyone asks.

    Two requests asking at once both end up with the one account.
    """
    account = account_by_code(session, code)
    if account is not None:
        return account
    try:
        with session.begin_nested():
            return open_account(session, code=code, **spec)
    except IntegrityError:
        account = account_by_code(session, code)
        if account is None:
            raise
        return account

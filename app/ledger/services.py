"""The ledger service: the one place that writes postings.

``post`` runs inside the caller's database transaction and only flushes; the caller commits.
For every account with a limit it takes the row lock in account-id order (so two transactions
can never wait on each other in a cycle), checks the limit against the locked, newest balance
and writes the new balance, all in one conditional UPDATE. Hot accounts that only receive
(a store's sales, a clearing account, Stars issuance) have no limit to check, so their cached
balance is spread over shard rows and each writer takes whichever shard is free
(``FOR UPDATE SKIP LOCKED``): 32 tills selling into one store never queue on one row.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import bindparam, func, insert, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.core.types import utcnow
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
        name=name,
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

# Take any shard nobody holds, starting from a random one so writers spread out.
_CHANGE_FREE_SHARD = text(
    "UPDATE ledger_balance_shards SET balance = balance + :delta "
    "WHERE account_id = :id AND shard = ("
    " SELECT shard FROM ledger_balance_shards WHERE account_id = :id"
    " ORDER BY (shard + :offset) % :n LIMIT 1 FOR UPDATE SKIP LOCKED"
    ") RETURNING shard"
)

_CHANGE_SHARD = text(
    "UPDATE ledger_balance_shards SET balance = balance + :delta "
    "WHERE account_id = :id AND shard = :shard RETURNING shard"
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

    Raises InvalidPosting, UnbalancedTransaction, AccountNotFound, UnitMismatch,
    InsufficientFunds, BalanceLimitExceeded, AccountFrozen. On any of them nothing has been written
    that the caller's rollback would not undo; the caller should roll back.
    """
    check_legs(legs)
    net = net_by_account(legs)
    session.flush()

    found = {row.id: row for row in session.execute(_LOAD, {"ids": list(net)})}
    for leg in legs:
        account = found.get(leg.account_id)
        if account is None:
            raise AccountNotFound(account_id=leg.account_id)
        if account.unit != leg.unit:
            raise UnitMismatch(account_id=leg.account_id, account_unit=account.unit)

    # Accounts that can refuse go first, in account-id order (the one locking order); if one
    # refuses, the changes already made are put back, so a refused post leaves no trace even
    # if the caller does not roll back. Hot accounts cannot refuse and go last.
    balances: dict[int, int] = {}
    hot: list[tuple[int, int]] = []
    for account_id, delta in net.items():
        if delta == 0:
            continue
        if found[account_id].shard_count > 1:
            hot.append((account_id, delta))
            continue
        try:
            balances[account_id] = _change_limited(session, account_id, delta)
        except (InsufficientFunds, BalanceLimitExceeded, AccountFrozen):
            for done_id in balances:
                session.execute(_UNDO_LIMITED, {"id": done_id, "delta": net[done_id]})
            raise
    for account_id, delta in hot:
        _change_hot(session, account_id, delta, found[account_id].shard_count)

    transaction_id = session.execute(
        insert(transactions).returning(transactions.c.id),
        {
            "kind": kind,
            "created_at": utcnow(),
            "channel": channel,
            "store_id": store_id,
            "device_id": device_id,
            "actor": actor,
            "meta": meta or {},
            "reverses_id": reverses_id,
        },
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
    return Posted(transaction_id=transaction_id, balances=balances)


def _change_limited(session: Session, account_id: int, delta: int) -> int:
    new_balance = session.execute(_CHANGE_LIMITED, {"id": account_id, "delta": delta}).scalar()
    if new_balance is not None:
        return new_balance
    # The conditional update refused: say which limit, from the row we now hold locked.
    row = session.execute(
        select(
            accounts.c.balance, accounts.c.no_negative, accounts.c.max_balance, accounts.c.frozen
        )
        .where(accounts.c.id == account_id)
        .with_for_update()
    ).one()
    if row.frozen:
        raise AccountFrozen(account_id=account_id)
    breach = limit_breach(
        row.balance + delta, no_negative=row.no_negative, max_balance=row.max_balance
    )
    if breach == "maximum":
        raise BalanceLimitExceeded(
            account_id=account_id, balance=row.balance, max_balance=row.max_balance
        )
    raise InsufficientFunds(account_id=account_id, balance=row.balance, requested=-delta)


def _change_hot(session: Session, account_id: int, delta: int, shard_count: int) -> None:
    offset = random.randrange(shard_count)
    if session.get_bind().dialect.name == "postgresql":
        params = {"id": account_id, "delta": delta, "offset": offset, "n": shard_count}
        if session.execute(_CHANGE_FREE_SHARD, params).scalar() is not None:
            return
    # SQLite has one writer at a time anyway; on PostgreSQL every shard is busy: wait for one.
    session.execute(_CHANGE_SHARD, {"id": account_id, "delta": delta, "shard": offset}).one()


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

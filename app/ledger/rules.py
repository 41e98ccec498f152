"""The rules of a valid transaction: plain functions over plain values, no I/O."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from app.ledger.errors import InvalidPosting, UnbalancedTransaction

#: Far above any real balance, far below 2**63: sums of many postings can never overflow.
MAX_POSTING = 10**15


@dataclass(frozen=True, slots=True)
class Leg:
    """One side of a transaction: move ``amount`` (signed, minor units) on an account."""

    account_id: int
    amount: int
    unit: str


def check_legs(legs: list[Leg] | tuple[Leg, ...]) -> None:
    """Raise unless every amount is a whole non-zero number and every unit nets to zero.

    Raises InvalidPosting, UnbalancedTransaction.
    """
    if len(legs) < 2:
        raise InvalidPosting("A transaction needs at least two postings.")
    totals: dict[str, int] = defaultdict(int)
    for leg in legs:
        if type(leg.amount) is not int:  # bool and float are not amounts
            raise InvalidPosting(account_id=leg.account_id, amount=repr(leg.amount))
        if leg.amount == 0 or abs(leg.amount) > MAX_POSTING:
            raise InvalidPosting(account_id=leg.account_id, amount=leg.amount)
        totals[leg.unit] += leg.amount
    unbalanced = {unit: total for unit, total in totals.items() if total}
    if unbalanced:
        raise UnbalancedTransaction(totals=unbalanced)


def net_by_account(legs: list[Leg] | tuple[Leg, ...]) -> dict[int, int]:
    """What each account's balance changes by, in account-id order (the locking order)."""
    net: dict[int, int] = defaultdict(int)
    for leg in legs:
        net[leg.account_id] += leg.amount
    return dict(sorted(net.items()))


def limit_breach(balance_after: int, *, no_negative: bool, max_balance: int | None) -> str | None:
    """Which limit a balance would break: ``"negative"``, ``"maximum"`` or None."""
    if no_negative and balance_after < 0:
        return "negative"
    if max_balance is not None and balance_after > max_balance:
        return "maximum"
    return None

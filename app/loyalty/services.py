"""Stars in the ledger: earned on sales, taken back on refunds, owed when already spent.

Policy for a refund whose Stars were spent already: the refund takes back what the shopper
still has; the rest goes on the shopper's Stars-owed account and is repaid first from the
Stars they earn next. No Star is created or lost: every one is in the ledger.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import bindparam, update
from sqlalchemy.orm import Session

from app.core.db import write_at_commit
from app.core.settings import Settings
from app.customers.models import Customer
from app.ledger import services as ledger
from app.ledger.models import Account
from app.ledger.rules import Leg
from app.loyalty import rules

STAR = "STAR"


#: The account Stars come from, and the prefix of each shopper's Stars-owed account's code.
ISSUANCE_CODE = "stars:issuance"
OWED_PREFIX = "stars:owed:"


def issuance(s: Session) -> Account:
    """Where Stars come from: the cost of the programme, debited as Stars are earned."""
    return ledger.system_account(
        s, ISSUANCE_CODE, name="Stars issued", unit=STAR, type="expense", hot=True
    )


def owed_account(s: Session, customer: Customer) -> Account:
    return ledger.system_account(
        s,
        f"{OWED_PREFIX}{customer.id}",
        name=f"Stars owed by customer {customer.id}",
        unit=STAR,
        type="asset",
        max_balance=0,  # holds only a debt (negative): never more than is owed
    )


def stars_for_tenders(
    settings: Settings, paid_from_card_minor: int, paid_otherwise_minor: int
) -> int:
    return rules.stars_earned(
        paid_from_card_minor=paid_from_card_minor,
        paid_otherwise_minor=paid_otherwise_minor,
        currency=settings.currency,
        per_unit_card=settings.stars_per_unit_card,
        per_unit_other=settings.stars_per_unit_other,
    )


@dataclass(frozen=True)
class StarsAccounts:
    """A shopper's Stars accounts as read with their card (unlocked): Stars issuance's id
    (None until the first Star is earned anywhere), and their Stars-owed account's id and
    balance (None: they never owed any)."""

    issuance_id: int | None
    owed_id: int | None
    owed_balance: int | None


def earn_legs(
    s: Session, customer: Customer, stars: int, known: StarsAccounts | None = None
) -> list[Leg]:
    """Legs that give ``stars`` to the shopper, repaying any Stars they owe first. ``known``:
    the accounts as the caller read them already; only a debt is read again, locked."""
    if stars <= 0:
        return []
    if known is None:
        owed = ledger.account_by_code(s, f"{OWED_PREFIX}{customer.id}")
        known = StarsAccounts(None, owed.id if owed else None, -1 if owed else None)
    issuance_id = known.issuance_id or issuance(s).id
    debt = 0
    if known.owed_id is not None and known.owed_balance < 0:
        # Locked: two sales at once must not both repay the same debt.
        debt = -ledger.balance_for_update(s, known.owed_id)
    repay = min(debt, stars)
    legs = [Leg(issuance_id, -stars, STAR)]
    if repay:
        legs.append(Leg(known.owed_id, repay, STAR))
    if stars - repay:
        legs.append(Leg(customer.stars_account_id, stars - repay, STAR))
    return legs


def take_back_legs(s: Session, customer: Customer, stars: int) -> tuple[list[Leg], int, int]:
    """Legs that take back ``stars`` a refund's lines earned; also (taken, owed)."""
    if stars <= 0:
        return [], 0, 0
    # Locked, then read: Stars spent meanwhile must not be counted as still there.
    available = ledger.balance_for_update(s, customer.stars_account_id)
    taken, owed = rules.take_back(stars, available)
    legs = [Leg(issuance(s).id, stars, STAR)]
    if taken:
        legs.append(Leg(customer.stars_account_id, -taken, STAR))
    if owed:
        legs.append(Leg(owed_account(s, customer).id, -owed, STAR))
    return legs, taken, owed


def count_lifetime(s: Session, customer_id: int, stars: int) -> None:
    """Add ``stars`` to the shopper's lifetime count (their tier), sent with the commit."""
    if stars:
        write_at_commit(s, _ADD_LIFETIME, {"customer": customer_id, "stars": stars})


_ADD_LIFETIME = (
    update(Customer)
    .where(Customer.id == bindparam("customer"))
    .values(lifetime_stars=Customer.lifetime_stars + bindparam("stars"))
)

"""Stars in the ledger: earned on sales, taken back on refunds, owed when already spent.

Policy for a refund whose Stars were spent already: the refund takes back what the shopper
still has; the rest goes on the shopper's Stars-owed account and is repaid first from the
Stars they earn next. No Star is created or lost: every one is in the ledger.
"""

from __future__ import annotations

from flask import current_app
from sqlalchemy import update
from sqlalchemy.orm import Session

from app.customers.models import Customer
from app.ledger import services as ledger
from app.ledger.models import Account
from app.ledger.rules import Leg
from app.loyalty import rules

STAR = "STAR"


def issuance(s: Session) -> Account:
    """Where Stars come from: the cost of the programme, debited as Stars are earned."""
    return ledger.system_account(
        s, "stars:issuance", name="Stars issued", unit=STAR, type="expense", hot=True
    )


def owed_account(s: Session, customer: Customer) -> Account:
    return ledger.system_account(
        s,
        f"stars:owed:{customer.id}",
        name=f"Stars owed by customer {customer.id}",
        unit=STAR,
        type="asset",
        max_balance=0,  # holds only a debt (negative): never more than is owed
    )


def stars_for_tenders(paid_from_card_minor: int, paid_otherwise_minor: int, currency: str) -> int:
    cfg = current_app.config
    return rules.stars_earned(
        paid_from_card_minor=paid_from_card_minor,
        paid_otherwise_minor=paid_otherwise_minor,
        currency=currency,
        per_unit_card=cfg["STARS_PER_UNIT_CARD"],
        per_unit_other=cfg["STARS_PER_UNIT_OTHER"],
    )


def earn_legs(s: Session, customer: Customer, stars: int) -> list[Leg]:
    """Legs that give ``stars`` to the shopper, repaying any Stars they owe first."""
    if stars <= 0:
        return []
    legs = [Leg(issuance(s).id, -stars, STAR)]
    owed = ledger.account_by_code(s, f"stars:owed:{customer.id}")
    # Locked: two sales at once must not both repay the same debt.
    debt = -ledger.balance_for_update(s, owed.id) if owed is not None else 0
    repay = min(debt, stars)
    if repay:
        legs.append(Leg(owed.id, repay, STAR))
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
    if stars:
        s.execute(
            update(Customer)
            .where(Customer.id == customer_id)
            .values(lifetime_stars=Customer.lifetime_stars + stars)
        )

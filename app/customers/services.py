"""Shoppers: signing up (with a Stars balance and a digital card) and their profile."""

from __future__ import annotations

import secrets

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.auth.errors import EmailTaken
from app.auth.passwords import hash_new_password
from app.auth.services import email_in_use, issue_token, normalise_email
from app.cards import services as cards
from app.core.errors import ValidationFailed
from app.core.settings import Settings
from app.customers.models import Customer
from app.ledger import services as ledger


def sign_up(
    s: Session, settings: Settings, *, email: str, password: str, name: str
) -> tuple[str, Customer]:
    """A new shopper with an empty Stars balance and a primary digital card.

    Raises EmailTaken, ValidationFailed, WeakPassword.
    """
    email = normalise_email(email)
    if len(email) > Customer.email.type.length:  # lower-casing can lengthen it ("İ" → "i̇")
        raise ValidationFailed(fields={"email": ["Longer than 254 characters."]})
    if email_in_use(s, email):
        raise EmailTaken()
    password_hash = hash_new_password(password, email=email, name=name, settings=settings)
    try:
        with s.begin_nested():
            stars = ledger.open_account(
                s,
                code=f"stars:customer:{secrets.token_hex(8)}",
                name=f"Stars of {email}",
                unit="STAR",
                type="liability",
                no_negative=True,
            )
            customer = Customer(
                email=email, name=name, password_hash=password_hash, stars_account_id=stars.id
            )
            s.add(customer)
            s.flush()
    except IntegrityError:  # the same email, signing up at the same moment
        raise EmailTaken() from None
    cards.issue_card(s, kind="digital", customer_id=customer.id, primary=True)
    token, _ = issue_token(s, "customer", settings.customer_token_ttl_s, customer_id=customer.id)
    return token, customer


def load_customer(s: Session, customer_id: int) -> Customer:
    """A shopper known to exist (a token's or a card's)."""
    return s.get(Customer, customer_id)


def tier_of(customer: Customer, gold_tier_stars: int) -> str:
    return "gold" if customer.lifetime_stars >= gold_tier_stars else "green"


def stars_balance(s: Session, customer: Customer) -> int:
    return ledger.balance_of(s, customer.stars_account_id)


def first_name_and_stars(s: Session, customer_id: int | None) -> dict | None:
    """What a till or a kiosk's screen may show of a shopper: a first name and the Stars,
    nothing more (None for no shopper)."""
    if customer_id is None:
        return None
    customer = load_customer(s, customer_id)
    first = customer.name.split()
    return {"first_name": first[0] if first else "", "stars": stars_balance(s, customer)}

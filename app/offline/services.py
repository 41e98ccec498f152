"""Offline allowances: a card's money set aside for one till, on the ledger.

When a till may lose the API (a network cut, the server down), it asks ahead, for each card
presented, for an allowance: up to ``OFFLINE_ALLOWANCE_MAX_MINOR`` moves from the card's
account to the card's hold account (``card:<id>:held``, a liability that can never go
negative) in one ledger transaction. From then on that money cannot be spent online or at
another till: the ledger refuses it like any other money the card does not have. The till
gets the allowance signed by the server, and takes card-balance payments within it while
offline; replayed later, those sales take their card part from the hold. Releasing the
allowance (the till, once its queue is drained, or ``flask pos release-allowances`` a day
after it expired) gives back what was not used.

A sale replayed with a forged allowance, one of another till, or made after the allowance
expired or was released, is refused and recorded (``OfflineRefusal``).
"""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.auth.principal import Principal
from app.cards import numbers
from app.cards import services as cards
from app.cards.models import Card
from app.core.types import utcnow
from app.events import changes
from app.ledger import services as ledger
from app.ledger.errors import InsufficientFunds
from app.ledger.rules import Leg
from app.offline import tokens
from app.offline.errors import (
    AllowanceExhausted,
    AllowanceExpired,
    AllowanceInvalid,
    AllowanceNotFound,
    AllowanceRequired,
    OfflineSaleRefused,
)
from app.offline.models import OfflineAllowance, OfflineRefusal

#: A till's clock may run this far ahead of the server's.
CLOCK_SKEW = timedelta(minutes=1)
#: How long after its expiry an allowance waits for late replays before it is released.
RELEASE_GRACE = timedelta(hours=24)


def _signing_key() -> bytes:
    from app.cards.codes import _key  # the one check that the server key is set

    return tokens.derive_key(_key().decode())


def token_of(allowance: OfflineAllowance) -> str:
    return tokens.sign(
        _signing_key(),
        tokens.Claims(
            id=allowance.id,
            card_id=allowance.card_id,
            device_id=allowance.device_id,
            amount=allowance.amount_minor,
            expires_at=tokens.iso(allowance.expires_at),
        ),
    )


def hold_account_id(s: Session, card: Card) -> int:
    """The card's hold account, opened the first time (the caller holds the card's row lock)."""
    if card.held_account_id is None:
        account = ledger.open_account(
            s,
            code=f"card:{card.id}:held",
            name=f"Card ending {card.last4}: held for offline tills",
            unit=cards.currency(),
            type="liability",
            no_negative=True,
        )
        card.held_account_id = account.id
        s.flush()
    return card.held_account_id


def _move(s: Session, allowance: OfflineAllowance, amount: int, *, card: Card, held: int,
          release: bool, actor: str) -> int:  # fmt: skip
    """Move ``amount`` from ``card`` to the hold account ``held``, or back for a release;
    returns the ledger transaction id."""
    kind = "offline_release" if release else "offline_hold"
    sign = -1 if release else 1
    posted = ledger.post(
        s,
        kind=kind,
        channel="pos",
        store_id=allowance.store_id,
        device_id=allowance.device_id,
        actor=actor,
        legs=[
            Leg(card.account_id, -sign * amount, cards.currency()),
            Leg(held, sign * amount, cards.currency()),
        ],
        meta={"card_id": allowance.card_id, "allowance_id": allowance.id},
    )
    changes.card_balance_changed(
        s, card, posted.balances[card.account_id], cards.currency(), reason=kind,
        transaction_id=posted.transaction_id, store_id=allowance.store_id,
    )  # fmt: skip
    return posted.transaction_id


def grant(
    s: Session, principal: Principal, *, presented: dict, amount: int | None
) -> tuple[OfflineAllowance, bool]:
    """This till's live allowance for the card presented, set aside now if there is none.
    Returns it and whether it is new.

    Raises CustomerNotIdentified, PayCodeInvalid (a pay code is checked, not used up),
    CardInactive, CardFrozen, InsufficientFunds (nothing on the card to set aside).
    """
    most = current_app.config["OFFLINE_ALLOWANCE_MAX_MINOR"]
    wanted = most if amount is None else min(amount, most)
    found, _ = cards.identify(s, looking=True, **presented)
    # The card's row lock: one card's allowances are granted one at a time, whichever till.
    card = s.get(Card, found.id, with_for_update=True, populate_existing=True)
    cards.require_active(card)
    live = s.scalar(
        select(OfflineAllowance)
        .where(
            OfflineAllowance.card_id == card.id,
            OfflineAllowance.device_id == principal.device_id,
            OfflineAllowance.status == "live",
        )
        .with_for_update()
    )
    now = utcnow()
    if live is not None and live.expires_at > now:
        return live, False
    if live is not None:
        release(s, live, actor=principal.actor)
    balance = ledger.balance_for_update(s, card.account_id)
    setting_aside = min(wanted, balance)
    if setting_aside <= 0:
        raise InsufficientFunds(
            "There is nothing on this card to set aside for offline payments.",
            balance=balance, requested=wanted,
        )  # fmt: skip
    allowance = OfflineAllowance(
        card_id=card.id,
        device_id=principal.device_id,
        store_id=principal.store_id,
        cashier_id=principal.staff_id,
        currency=cards.currency(),
        amount_minor=setting_aside,
        used_minor=0,
        status="live",
        salt=secrets.token_hex(16),
        created_at=now,
        expires_at=now + timedelta(seconds=current_app.config["OFFLINE_ALLOWANCE_TTL_S"]),
    )
    s.add(allowance)
    s.flush()
    allowance.hold_transaction_id = _move(
        s, allowance, setting_aside, card=card, held=hold_account_id(s, card), release=False,
        actor=principal.actor,
    )  # fmt: skip
    s.flush()
    return allowance, True


def _money_home(s: Session, card: Card) -> Card:
    """The card that has the card's money: itself, or after it was reported lost the card
    that replaced it."""
    while card.status == "frozen" and card.replaced_by_id is not None:
        card = s.get(Card, card.replaced_by_id)
    return card


def release(s: Session, allowance: OfflineAllowance, *, actor: str) -> OfflineAllowance:
    """Give back to the card what the allowance holds and no sale used (the caller holds the
    allowance's row lock). Releasing twice gives back once. Raises the ledger's errors
    (BalanceLimitExceeded if the card was filled to its most meanwhile)."""
    if allowance.status == "released":
        return allowance
    left = allowance.left_minor
    card = s.get(Card, allowance.card_id, with_for_update=True, populate_existing=True)
    if left:
        target = _money_home(s, card)
        _move(s, allowance, left, card=target, held=card.held_account_id, release=True,
              actor=actor)  # fmt: skip
    allowance.status = "released"
    allowance.released_minor = left
    allowance.released_at = utcnow()
    s.flush()
    return allowance


def tills_allowance(s: Session, principal: Principal, allowance_id: int) -> OfflineAllowance:
    """An allowance of this till, locked. Raises AllowanceNotFound."""
    allowance = s.get(OfflineAllowance, allowance_id, with_for_update=True, populate_existing=True)
    if allowance is None or allowance.device_id != principal.device_id:
        raise AllowanceNotFound()
    return allowance


def release_stale(s: Session, *, now: datetime | None = None) -> tuple[list, list]:
    """Release every live allowance past its expiry and the grace for late replays, each in
    its own savepoint. Returns (released, refused as (allowance, error))."""
    cutoff = (now or utcnow()) - RELEASE_GRACE
    stale = s.scalars(
        select(OfflineAllowance.id).where(
            OfflineAllowance.status == "live", OfflineAllowance.expires_at < cutoff
        )
    ).all()
    released, refused = [], []
    for allowance_id in stale:
        try:
            with s.begin_nested():
                allowance = s.get(
                    OfflineAllowance, allowance_id, with_for_update=True, populate_existing=True
                )
                released.append(release(s, allowance, actor="system:release-allowances"))
        except ledger_refusals() as exc:
            refused.append((s.get(OfflineAllowance, allowance_id), exc))
    return released, refused


def ledger_refusals() -> tuple[type[Exception], ...]:
    from app.ledger.errors import AccountFrozen, BalanceLimitExceeded

    return (BalanceLimitExceeded, AccountFrozen)


# --- offline sales replayed -----------------------------------------------------------------


def _names_card(presented: dict, card: Card) -> bool:
    if "card_number" in presented:
        return presented["card_number"] == card.number
    if "nfc_uid" in presented:
        uid = numbers.normalise_nfc_uid(presented["nfc_uid"])
        return uid is not None and uid == card.nfc_uid
    return False  # a pay code cannot be checked once it has expired


def card_for_offline_sale(
    s: Session, principal: Principal, offline: dict, presented: dict | None, *, from_card: int
) -> tuple[Card, str, OfflineAllowance] | None:
    """For an offline sale paid partly from a card balance: the card, how it was presented
    (``offline``) and its allowance, locked; None when no card balance pays (the sale is an
    ordinary one, made earlier).

    Raises AllowanceRequired, AllowanceInvalid, AllowanceExpired.
    """
    made_at = offline["made_at"]
    if made_at > utcnow() + CLOCK_SKEW:
        raise AllowanceExpired("The sale says it was made in the future.", made_at=made_at)
    if not from_card:
        return None
    if offline["allowance"] is None:
        raise AllowanceRequired()
    claims = tokens.verify(_signing_key(), offline["allowance"])
    if claims is None or claims.device_id != principal.device_id:
        raise AllowanceInvalid()
    allowance = s.get(OfflineAllowance, claims.id, with_for_update=True, populate_existing=True)
    if (
        allowance is None
        or allowance.device_id != principal.device_id
        or allowance.card_id != claims.card_id
        or allowance.amount_minor != claims.amount
        or tokens.iso(allowance.expires_at) != claims.expires_at
    ):
        raise AllowanceInvalid()
    card = s.get(Card, allowance.card_id)
    if presented and not _names_card(presented, card):
        raise AllowanceInvalid("The card presented is not the allowance's card.")
    ended = allowance.expires_at
    if allowance.released_at is not None:
        ended = min(ended, allowance.released_at)
    if made_at > ended:
        raise AllowanceExpired(allowance_id=allowance.id, ended_at=tokens.iso(ended))
    return card, "offline", allowance


def take(s: Session, allowance: OfflineAllowance, card: Card, amount: int) -> int:
    """Count ``amount`` against the allowance; returns the account the sale takes it from:
    the hold while the allowance is live; after its release (a sale made before the release,
    replayed late), the card itself, which got the money back. Raises AllowanceExhausted."""
    if amount > allowance.left_minor:
        raise AllowanceExhausted(
            allowance_id=allowance.id, left=allowance.left_minor, requested=amount
        )
    allowance.used_minor += amount
    s.flush()
    if allowance.status == "live":
        return card.held_account_id
    return _money_home(s, card).account_id


def record_refusal(s: Session, principal: Principal, refused: OfflineSaleRefused, body) -> None:
    """Write the refusal down, committed on its own: the sale's own work is rolled back
    first, so the refusal is the only thing the request leaves behind."""
    s.rollback()
    s.add(
        OfflineRefusal(
            device_id=principal.device_id,
            cashier_id=principal.staff_id,
            reason=refused.code,
            body=body if isinstance(body, dict) else {"body": body},
        )
    )
    s.commit()

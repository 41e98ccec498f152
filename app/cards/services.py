"""Cards: issuing, registering, binding NFC tags, pay codes, reporting lost, moving balance."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

from flask import current_app
from sqlalchemy import bindparam, select, update
from sqlalchemy.orm import Session, aliased

from app.auth.principal import hash_token
from app.cards import numbers
from app.cards.codes import hash_card_code, verify_card_code
from app.cards.errors import (
    AmountOutOfRange,
    CardAlreadySold,
    CardFrozen,
    CardInactive,
    CardNotFound,
    CurrencyMismatch,
    CustomerNotIdentified,
    InvalidCardDetails,
    InvalidNfcUid,
    NfcUidInUse,
    NotAGiftCard,
    PayCodeInvalid,
    SameCard,
)
from app.cards.models import Card, CardBatch, PayCode
from app.core import throttle
from app.core.schemas import money
from app.core.throttle import Limit
from app.core.types import utcnow
from app.events import changes
from app.ledger import services as ledger
from app.ledger.models import Account, LedgerTransaction, Posting
from app.ledger.rules import Leg
from app.stores.models import Store

PAY_CODE_LIFETIME = timedelta(seconds=60)


def currency() -> str:
    return current_app.config["CURRENCY"]


def issue_card(
    s: Session,
    *,
    kind: str,
    customer_id: int | None = None,
    primary: bool = False,
    security_code: str | None = None,
    batch_id: int | None = None,
    status: str = "active",
) -> Card:
    """A new card with its own ledger account, limited to the configured maximum balance."""
    for _ in range(5):
        number = numbers.new_card_number()
        if s.scalar(select(Card.id).where(Card.number == number)) is None:
            break
    else:  # pragma: no cover - 10^14 numbers
        raise RuntimeError("could not find a free card number")
    account = ledger.open_account(
        s,
        code=f"card:{number}",
        name=f"Card ending {number[-4:]}",
        unit=currency(),
        type="liability",
        no_negative=True,
        max_balance=current_app.config["CARD_MAX_BALANCE_MINOR"],
    )
    card = Card(
        number=number,
        kind=kind,
        status=status,
        customer_id=customer_id,
        is_primary=primary,
        account_id=account.id,
        security_code_hash=hash_card_code(security_code) if security_code else None,
        batch_id=batch_id,
        registered_at=utcnow() if customer_id else None,
    )
    s.add(card)
    s.flush()
    return card


def issue_batch(s: Session, *, staff_id: int, size: int, note: str = "") -> list[tuple[Card, str]]:
    """Physical gift cards, unregistered, each with its security code (shown only now).

    They start inactive: a card from the box is worth nothing and does nothing until a till
    sells it (``sell_gift_card``), so a card taken from the shelf cannot be registered or
    loaded by whoever took it.
    """
    batch = CardBatch(size=size, note=note, created_by_staff_id=staff_id)
    s.add(batch)
    s.flush()
    issued = []
    for _ in range(size):
        code = numbers.new_security_code()
        card = issue_card(
            s, kind="physical", security_code=code, batch_id=batch.id, status="inactive"
        )
        issued.append((card, code))
    return issued


def card_balance(s: Session, card: Card) -> int:
    return ledger.balance_of(s, card.account_id)


def held_balance(s: Session, card: Card) -> int:
    """What offline allowances hold of the card's money (not spendable online)."""
    return ledger.balance_of(s, card.held_account_id) if card.held_account_id else 0


def cards_of(s: Session, customer_id: int) -> list[Card]:
    return list(
        s.scalars(
            select(Card)
            .where(Card.customer_id == customer_id)
            .order_by(Card.is_primary.desc(), Card.id)
        )
    )


def _with_balances():
    money, held = aliased(Account), aliased(Account)
    return (
        select(Card, money.balance, money.shard_count, held.balance, held.shard_count)
        .join(money, money.id == Card.account_id)
        .outerjoin(held, held.id == Card.held_account_id)
        .where(Card.customer_id == bindparam("customer"))
        .order_by(Card.is_primary.desc(), Card.id)
    )


_CARDS_WITH_BALANCES = _with_balances()


def cards_with_balances(s: Session, customer_id: int) -> list[tuple[Card, int, int]]:
    """The shopper's cards as ``cards_of`` gives them, each with its balance and what offline
    allowances hold of it (``card_balance``, ``held_balance``): one query."""
    found = []
    for card, balance, shards, held, held_shards in s.execute(
        _CARDS_WITH_BALANCES, {"customer": customer_id}
    ):
        if shards != 1:  # a hot account's balance is spread over shards
            balance = card_balance(s, card)
        if held_shards is not None and held_shards != 1:
            held = held_balance(s, card)
        found.append((card, balance, held or 0))
    return found


def owned_card(s: Session, card_id: int, customer_id: int) -> Card:
    """The shopper's own card. Raises CardNotFound for anyone else's: no hint it exists."""
    card = s.get(Card, card_id)
    if card is None or card.customer_id != customer_id:
        raise CardNotFound()
    return card


def require_active(card: Card) -> None:
    """Raises CardInactive (a gift card not sold yet), CardFrozen."""
    if card.status == "inactive":
        raise CardInactive(card_id=card.id)
    if card.status != "active":
        raise CardFrozen(card_id=card.id)


def card_code_limit(number: str) -> Limit:
    """Every failure at one card's security code, wherever it was made (registering it,
    binding a tag to it at a till): the code is short, so the card's own count bounds the
    guesses that many accounts or tills together can make."""
    cfg = current_app.config
    return Limit("card_code:card", number, cfg["REGISTER_MAX_FAILURES_CARD"], 86400)


def register_limits(customer_id: int, client_ip: str, number: str) -> tuple[Limit, list[Limit]]:
    """The shopper's own failures; wider, the address's and the card's (see app.core.throttle).
    While a card or an address is under attack, a shopper who has failed at all waits, so a
    stranger's failures never keep the card's holder, with the right code, from registering it."""
    cfg = current_app.config
    address = throttle.subject(client_ip)
    own = Limit(
        "card_register:customer", str(customer_id), cfg["REGISTER_MAX_FAILURES_ACCOUNT"], 3600
    )
    wider = [
        Limit("card_register:address", address, cfg["REGISTER_MAX_FAILURES_IP"], 3600),
        card_code_limit(number),
    ]
    return own, wider


def register_card(
    s: Session, *, customer_id: int, number: str, security_code: str, client_ip: str
) -> Card:
    """Attach a physical card to the shopper's account by its number and security code.

    Every failure looks the same, whether or not the number exists. Raises
    InvalidCardDetails, TooManyAttempts.
    """
    own, wider = register_limits(customer_id, client_ip, number)
    throttle.refuse_if_over(s, own, wider, most_under_attack=1)
    # Locked: two shoppers with the right code at once must not both get the card.
    card = (
        s.scalar(select(Card).where(Card.number == number).with_for_update())
        if number.isdigit()
        else None
    )
    code_ok = verify_card_code(card.security_code_hash if card else None, security_code)
    if card is not None and code_ok and card.status == "inactive":
        raise CardInactive()  # only whoever holds the card and its code learns this
    if (
        card is None
        or not code_ok
        or card.kind != "physical"
        or card.customer_id is not None
        or card.status != "active"
    ):
        throttle.record_failure(s, own, wider)
        raise InvalidCardDetails()
    card.customer_id = customer_id
    card.registered_at = utcnow()
    if not cards_of_primary_exists(s, customer_id):
        card.is_primary = True
    s.flush()
    changes.card_added(s, card)
    return card


def cards_of_primary_exists(s: Session, customer_id: int) -> bool:
    return (
        s.scalar(select(Card.id).where(Card.customer_id == customer_id, Card.is_primary))
        is not None
    )


def make_primary(s: Session, card: Card) -> Card:
    require_active(card)
    s.execute(
        update(Card)
        .where(Card.customer_id == card.customer_id, Card.is_primary)
        .values(is_primary=False)
    )
    s.flush()
    card.is_primary = True
    s.flush()
    return card


def bind_nfc(s: Session, card: Card, uid: str) -> Card:
    """Bind an NFC card or wristband to ``card``. Raises InvalidNfcUid, NfcUidInUse, CardFrozen."""
    require_active(card)
    normalised = numbers.normalise_nfc_uid(uid)
    if normalised is None:
        raise InvalidNfcUid()
    holder = s.scalar(select(Card).where(Card.nfc_uid == normalised))
    if holder is not None and holder.id != card.id:
        raise NfcUidInUse()
    card.nfc_uid = normalised
    s.flush()
    return card


def till_limits(device_id: int, number: str) -> tuple[Limit, list[Limit]]:
    """A till's own failures at security codes; wider, the card's (see card_code_limit)."""
    cfg = current_app.config
    own = Limit("card_code:till", str(device_id), cfg["REGISTER_MAX_FAILURES_ACCOUNT"], 3600)
    return own, [card_code_limit(number)]


def prove_presented(
    s: Session,
    *,
    device_id: int,
    card_number: str | None = None,
    security_code: str | None = None,
    pay_code: str | None = None,
) -> tuple[Card, str]:
    """The card whose holder is at the till now, and how they proved it: the physical card's
    number with its security code, or a pay code from the owner's app (used up here). A
    number alone is not proof: it is printed on the card for anyone to read.

    Raises InvalidCardDetails, PayCodeInvalid, TooManyAttempts, CardFrozen.
    """
    if pay_code is not None:
        return identify(s, pay_code=pay_code)
    own, wider = till_limits(device_id, card_number)
    throttle.refuse_if_over(s, own, wider, most_under_attack=1)
    card = s.scalar(select(Card).where(Card.number == card_number))
    if not verify_card_code(card.security_code_hash if card else None, security_code):
        throttle.record_failure(s, own, wider)
        raise InvalidCardDetails("That card number and security code do not match a card.")
    require_active(card)
    return card, "security_code"


def card_to_pay_with(s: Session, customer_id: int, card_id: int | None = None) -> Card:
    """The card a shopper's pay code pays from: the one they chose, else their primary card.
    Raises CardNotFound (not theirs, or no primary card)."""
    if card_id is not None:
        return owned_card(s, card_id, customer_id)
    card = s.scalar(select(Card).where(Card.customer_id == customer_id, Card.is_primary))
    if card is None:
        raise CardNotFound("No primary card.")
    return card


def issue_pay_code(s: Session, card: Card) -> tuple[str, PayCode]:
    """A code that pays from ``card`` once, for PAY_CODE_LIFETIME. Raises CardInactive,
    CardFrozen."""
    require_active(card)
    code = numbers.new_pay_code()
    pay_code = PayCode(
        code_hash=hash_token(code), card_id=card.id, expires_at=utcnow() + PAY_CODE_LIFETIME
    )
    s.add(pay_code)
    s.flush()
    return code, pay_code


def identify(
    s: Session,
    *,
    card_number: str | None = None,
    nfc_uid: str | None = None,
    pay_code: str | None = None,
    looking: bool = False,
    find: Callable[[Any, Any], Card | None] | None = None,
) -> tuple[Card, str]:
    """The card a shopper presents at the till, and how it was presented.

    A pay code is used up here, unless the till is only ``looking`` (a balance check, which
    also answers a gift card not sold yet). ``find(column, value)``: the card whose ``column``
    (of cards: id, number or nfc_uid) has ``value``, or None (a caller that reads more with
    the card gives its own query). Raises CustomerNotIdentified, PayCodeInvalid, CardInactive,
    CardFrozen.
    """
    if find is None:

        def find(column, value) -> Card | None:
            return s.scalar(select(Card).where(column == value))

    if pay_code is not None:
        now = utcnow()
        live = (
            PayCode.code_hash == hash_token(pay_code),
            PayCode.used_at.is_(None),
            PayCode.expires_at > now,
        )
        if looking:
            used = s.scalar(select(PayCode.card_id).where(*live))
        else:
            used = s.execute(
                update(PayCode).where(*live).values(used_at=now).returning(PayCode.card_id)
            ).scalar()
        if used is None:
            raise PayCodeInvalid()
        card, method = find(Card.id, used), "pay_code"
    elif nfc_uid is not None:
        normalised = numbers.normalise_nfc_uid(nfc_uid)
        card = find(Card.nfc_uid, normalised) if normalised else None
        method = "nfc_uid"
    elif card_number is not None:
        card = find(Card.number, card_number)
        method = "card_number"
    else:
        card, method = None, ""
    if card is None:
        raise CustomerNotIdentified()
    if not (looking and card.status == "inactive"):
        require_active(card)
    return card, method


def sell_gift_card(
    s: Session,
    *,
    card_number: str | None = None,
    nfc_uid: str | None = None,
) -> Card:
    """Make a gift card from the box active, under its row lock (two tills selling one card
    sell it once). The caller loads it in the same transaction: sold means paid for.

    Raises CustomerNotIdentified, NotAGiftCard, CardAlreadySold, CardFrozen.
    """
    if nfc_uid is not None:
        normalised = numbers.normalise_nfc_uid(nfc_uid)
        where = Card.nfc_uid == normalised if normalised else None
    else:
        where = Card.number == card_number
    locked = select(Card).where(where).with_for_update(key_share=True)  # see app.offline
    card = s.scalar(locked) if where is not None else None
    if card is None:
        raise CustomerNotIdentified()
    if card.kind != "physical":
        raise NotAGiftCard(card_id=card.id)
    if card.status == "frozen":
        raise CardFrozen(card_id=card.id)
    if card.status != "inactive":
        raise CardAlreadySold(card_id=card.id)
    card.status = "active"
    s.flush()
    changes.card_status_changed(s, card)
    return card


def check_currency(given: str) -> None:
    if given != currency():
        raise CurrencyMismatch(expected=currency(), given=given)


def transfer_between(
    s: Session, source: Card, target: Card, amount: int, *, actor: str, channel: str = "app"
) -> int:
    """Move ``amount`` between two cards of one shopper, asked for from ``channel`` (``app``
    or ``web``, shown in the cards' activity). Returns the ledger transaction id.

    Raises SameCard, CardFrozen, AmountOutOfRange, InsufficientFunds, BalanceLimitExceeded.
    """
    if source.id == target.id:
        raise SameCard()
    require_active(source)
    require_active(target)
    if amount <= 0:
        raise AmountOutOfRange(minimum=1)
    posted = ledger.post(
        s,
        kind="card_transfer",
        channel=channel,
        actor=actor,
        legs=[
            Leg(source.account_id, -amount, currency()),
            Leg(target.account_id, amount, currency()),
        ],
        meta={"from_card_id": source.id, "to_card_id": target.id},
    )
    for card in (source, target):
        changes.card_balance_changed(
            s, card, posted.balances[card.account_id], currency(), reason="card_transfer",
            transaction_id=posted.transaction_id,
        )  # fmt: skip
    return posted.transaction_id


def report_lost(s: Session, card: Card, *, actor: str, channel: str = "app") -> Card:
    """Freeze ``card`` for good and move its whole balance to a new digital card, in one
    ledger transaction (from ``channel``: ``app`` or ``web``). The new card takes over as
    primary if the lost one was.

    Raises CardFrozen if it was reported already.
    """
    card = s.get(Card, card.id, with_for_update=True, populate_existing=True)
    require_active(card)  # checked again under the lock: two reports make one replacement
    was_primary = card.is_primary
    card.status = "frozen"
    card.frozen_at = utcnow()
    card.is_primary = False
    card.nfc_uid = None
    s.flush()
    replacement = issue_card(s, kind="digital", customer_id=card.customer_id, primary=was_primary)
    card.replaced_by_id = replacement.id
    s.flush()
    balance = ledger.balance_for_update(s, card.account_id)
    changes.card_status_changed(s, card, replaced_by_id=replacement.id)
    changes.card_added(s, replacement)
    if balance:
        moved = ledger.post(
            s,
            kind="lost_card_move",
            channel=channel,
            actor=actor,
            legs=[
                Leg(card.account_id, -balance, currency()),
                Leg(replacement.account_id, balance, currency()),
            ],
            meta={"from_card_id": card.id, "to_card_id": replacement.id},
        )
        for each, now in ((card, 0), (replacement, balance)):
            changes.card_balance_changed(
                s, each, now, currency(), reason="lost_card_move",
                transaction_id=moved.transaction_id,
            )  # fmt: skip
    ledger.freeze(s, card.account_id)
    return replacement


def activity(s: Session, card: Card, *, limit: int, below: int | None = None) -> list[dict]:
    """What moved the card's balance, newest first: up to ``limit + 1`` items (one more than
    asked, so the caller knows whether a next page exists), each below posting id ``below``.

    Each item says what it was, from which channel, and the store it happened at (None for
    what happened away from a store: the app, the website, a move between cards).
    """
    query = (
        select(Posting, LedgerTransaction, Store.id, Store.name)
        .join(LedgerTransaction, LedgerTransaction.id == Posting.transaction_id)
        .outerjoin(Store, Store.id == LedgerTransaction.store_id)
        .where(Posting.account_id == card.account_id)
        .order_by(Posting.id.desc())
        .limit(limit + 1)
    )
    if below is not None:
        query = query.where(Posting.id < below)
    return [
        {
            "id": posting.id,
            "transaction_id": tx.id,
            "kind": tx.kind,
            "channel": tx.channel,
            "amount": money(posting.amount, posting.unit),
            "store": None if store_id is None else {"id": store_id, "name": store_name},
            "created_at": tx.created_at,
        }
        for posting, tx, store_id, store_name in s.execute(query).all()
    ]


def load_card(s: Session, card_id: int) -> Card:
    card = s.get(Card, card_id)
    if card is None:
        raise CardNotFound()
    return card

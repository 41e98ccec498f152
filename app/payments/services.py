"""Top-ups: through the payment gateway (app, web, auto-reload) or at the till.

A gateway top-up is written down as ``pending`` and committed before the bank card is
charged, so that a crash or a timeout can never leave a charge we do not know about; it is
settled exactly once, under a row lock, by whoever learns the outcome first (the request
itself, its retry with the same Idempotency-Key, or ``flask payments settle``).
"""

from __future__ import annotations

import logging
import uuid
from datetime import timedelta

from flask import current_app
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.cards.errors import AmountOutOfRange
from app.cards.models import AutoReload, Card
from app.cards.services import card_balance, check_currency, currency, require_active
from app.core.errors import DomainError
from app.core.types import utcnow
from app.events import changes
from app.ledger import services as ledger
from app.ledger.errors import AccountFrozen, BalanceLimitExceeded
from app.ledger.rules import Leg
from app.payments.gateway import ChargeResult, GatewayTimeout, gateway
from app.payments.models import TopUp
from app.shifts.services import open_shift_id
from app.stores.models import Store

log = logging.getLogger(__name__)


def check_top_up_amount(s: Session, card: Card, amount: int, unit: str) -> None:
    """Raises CurrencyMismatch, AmountOutOfRange, CardFrozen, BalanceLimitExceeded."""
    check_currency(unit)
    cfg = current_app.config
    if not cfg["TOPUP_MIN_MINOR"] <= amount <= cfg["TOPUP_MAX_MINOR"]:
        raise AmountOutOfRange(minimum=cfg["TOPUP_MIN_MINOR"], maximum=cfg["TOPUP_MAX_MINOR"])
    require_active(card)
    balance = card_balance(s, card)
    if balance + amount > cfg["CARD_MAX_BALANCE_MINOR"]:
        raise BalanceLimitExceeded(balance=balance, max_balance=cfg["CARD_MAX_BALANCE_MINOR"])


def gateway_clearing(s: Session):
    return ledger.system_account(
        s,
        "clearing:gateway",
        name="Payment gateway clearing",
        unit=currency(),
        type="asset",
        hot=True,
    )


def top_up_at_till(
    s: Session,
    *,
    card: Card,
    amount: int,
    tender: str,
    store: Store,
    device_id: int,
    principal,
    idempotency_key: str,
) -> TopUp:
    """Cash or bank card taken at the till, loaded at once.

    Raises the errors of ``check_top_up_amount`` and of the ledger.
    """
    check_top_up_amount(s, card, amount, currency())
    source_account = store.cash_account_id if tender == "cash" else store.bank_card_account_id
    posted = ledger.post(
        s,
        kind="top_up",
        channel="pos",
        store_id=store.id,
        device_id=device_id,
        actor=principal.actor,
        legs=[Leg(source_account, -amount, currency()), Leg(card.account_id, amount, currency())],
        meta={"card_id": card.id, "tender": tender},
    )
    top_up = TopUp(
        card_id=card.id,
        amount_minor=amount,
        currency=currency(),
        source=tender,
        status="succeeded",
        channel="pos",
        reference=uuid.uuid4().hex,
        principal=principal.key,
        idempotency_key=idempotency_key,
        store_id=store.id,
        device_id=device_id,
        ledger_transaction_id=posted.transaction_id,
        settled_at=utcnow(),
        shift_id=open_shift_id(s, device_id, joining=True),
    )
    s.add(top_up)
    s.flush()
    changes.card_balance_changed(
        s, card, posted.balances[card.account_id], currency(), reason="top_up",
        transaction_id=posted.transaction_id, store_id=store.id,
    )  # fmt: skip
    changes.top_up_settled(s, top_up, card)
    return top_up


def begin_gateway_top_up(
    s: Session,
    *,
    card: Card,
    amount: int,
    token: str,
    channel: str,
    principal: str | None,
    idempotency_key: str | None,
    trigger_sale_id: int | None = None,
) -> TopUp:
    """Write the top-up down as pending. The caller commits before charging."""
    top_up = TopUp(
        card_id=card.id,
        amount_minor=amount,
        currency=currency(),
        source="gateway",
        status="pending",
        channel=channel,
        reference=uuid.uuid4().hex,
        payment_token=token,
        principal=principal,
        idempotency_key=idempotency_key,
        trigger_sale_id=trigger_sale_id,
    )
    s.add(top_up)
    s.flush()
    return top_up


def charge(top_up: TopUp) -> ChargeResult | None:
    """Ask the gateway to charge; None when it did not answer in time."""
    try:
        return gateway().charge(
            reference=top_up.reference,
            token=top_up.payment_token,
            amount_minor=top_up.amount_minor,
            currency=top_up.currency,
        )
    except GatewayTimeout:
        log.warning("payment gateway timed out on top-up %s; it stays pending", top_up.id)
        return None


def look_up(top_up: TopUp) -> ChargeResult | None:
    try:
        return gateway().lookup(reference=top_up.reference, token=top_up.payment_token)
    except GatewayTimeout:
        return None


def resume(top_up: TopUp) -> ChargeResult | None:
    """For a retry of a pending top-up: the gateway's outcome, charging now (under the same
    reference, so never twice) if the first attempt never reached the processor."""
    result = look_up(top_up)
    return result if result is not None else charge(top_up)


def settle(s: Session, top_up_id: int, result: ChargeResult | None) -> TopUp:
    """Record the gateway's outcome once: credit the card, or mark the top-up declined.

    Whoever comes second finds it settled and changes nothing.
    """
    top_up = s.get(TopUp, top_up_id, with_for_update=True, populate_existing=True)
    if top_up.status != "pending" or result is None:
        return top_up
    top_up.settled_at = utcnow()
    if not result.approved:
        top_up.status = "declined"
        top_up.decline_code = result.decline_code
        s.flush()
        changes.top_up_settled(s, top_up, s.get(Card, top_up.card_id))
        return top_up
    card = s.get(Card, top_up.card_id)
    top_up.processor_ref = result.processor_ref
    try:
        posted = ledger.post(
            s,
            kind="top_up",
            channel=top_up.channel,
            actor=top_up.principal or "system:auto_reload",
            legs=[
                Leg(gateway_clearing(s).id, -top_up.amount_minor, top_up.currency),
                Leg(card.account_id, top_up.amount_minor, top_up.currency),
            ],
            meta={"card_id": card.id, "top_up_id": top_up.id},
        )
    except (BalanceLimitExceeded, AccountFrozen) as refused:
        # Charged, but the card cannot take it (it filled up or froze meanwhile): give the
        # money back to the bank card rather than keep it.
        gateway().refund(
            reference=top_up.reference,
            processor_ref=result.processor_ref,
            amount_minor=top_up.amount_minor,
        )
        top_up.status = "declined"
        top_up.decline_code = refused.code
        s.flush()
        changes.top_up_settled(s, top_up, card)
        return top_up
    top_up.status = "succeeded"
    top_up.ledger_transaction_id = posted.transaction_id
    s.flush()
    changes.card_balance_changed(
        s, card, posted.balances[card.account_id], top_up.currency, reason="top_up",
        transaction_id=posted.transaction_id,
    )  # fmt: skip
    changes.top_up_settled(s, top_up, card)
    return top_up


NOT_CHARGED = ChargeResult(approved=False, decline_code="not_charged")


def settle_stale(s: Session, older_than_s: int = 30) -> list[TopUp]:
    """Ask the gateway about every top-up pending for longer than ``older_than_s``. One the
    processor never saw was never charged: a shopper's is closed as declined
    (``not_charged``), and an auto-reload is charged now (its sale stands and asked for it;
    the first attempt was lost with the server or its database connection)."""
    cutoff = utcnow() - timedelta(seconds=older_than_s)
    ids = s.scalars(
        select(TopUp.id).where(TopUp.status == "pending", TopUp.created_at < cutoff)
    ).all()
    settled = []
    for top_up_id in ids:
        top_up = s.get(TopUp, top_up_id)
        if top_up.trigger_sale_id is not None:
            result = resume(top_up)
            if result is None:
                continue  # still no answer: try again next time
        else:
            try:
                lookup = gateway().lookup(reference=top_up.reference, token=top_up.payment_token)
            except GatewayTimeout:
                continue  # still no answer: try again next time
            result = lookup or NOT_CHARGED
        settled.append(settle(s, top_up_id, result))
        s.commit()
    return settled


def begin_auto_reload(
    s: Session,
    rule: AutoReload,
    card: Card,
    *,
    sale_id: int,
    balance_before: int,
    balance_after: int,
) -> TopUp | None:
    """The card's auto-reload ``rule``, written down as pending in the sale's own transaction,
    if this sale took the card below its threshold: at most once per sale, and never lost.
    The caller charges it once the sale has committed (``charge_auto_reload``); if that never
    happens (the process or its database connection died), ``flask payments settle`` does."""
    if not rule.enabled or not balance_after < rule.threshold_minor <= balance_before:
        return None
    try:
        check_top_up_amount(s, card, rule.amount_minor, currency())
    except DomainError as refused:  # the sale stands whatever this says
        log.info("auto-reload for card %s skipped: %s", card.id, refused)
        return None
    return begin_gateway_top_up(
        s,
        card=card,
        amount=rule.amount_minor,
        token=rule.payment_token,
        channel="auto",
        principal=None,
        idempotency_key=None,
        trigger_sale_id=sale_id,
    )  # fmt: skip


def charge_auto_reload(s: Session, top_up_id: int) -> TopUp:
    """Charge a pending auto-reload (after its sale has committed) and settle it."""
    top_up = settle(s, top_up_id, charge(s.get(TopUp, top_up_id)))
    s.commit()
    return top_up

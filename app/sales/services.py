"""Sales and refunds at the till: priced on the server, paid by split tenders, earning Stars.

A sale is one ledger transaction: the card balance tender leaves the card, cash and
bank-card tenders come into the store's accounts, the total goes to the store's sales, and
the Stars earned move from Stars issuance to the shopper, all or nothing.

Refunds go back to the tenders the sale was paid with, card balance first, then bank card,
then cash, each never more than it paid; a refund takes back exactly the Stars its lines
earned (see app.loyalty.services for Stars already spent).

Each sale and refund writes its receipt (app.sales.receipts) in the same transaction, and names
the till's open shift, if any.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from flask import current_app
from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from app.auth.principal import Principal
from app.cards import services as cards
from app.cards.errors import NfcLimitExceeded
from app.cards.models import Card
from app.catalog.pricing import ListPrice, price_cart
from app.catalog.services import products_by_sku
from app.core.types import utcnow
from app.customers.models import Customer
from app.events import changes
from app.kiosk import counts as kiosk_counts
from app.ledger import services as ledger
from app.ledger.rules import Leg
from app.loyalty import rules as loyalty_rules
from app.loyalty import services as loyalty
from app.offline import services as allowances
from app.sales import receipts
from app.sales.errors import (
    CardRequired,
    CashGivenShort,
    NothingToPay,
    NothingToRefund,
    RefundExceedsSale,
    SaleNotFound,
    TendersDoNotMatchTotal,
)
from app.sales.models import Receipt, Refund, Sale, SaleLine, SaleTender
from app.sales.rules import change_due
from app.shifts.services import open_shift_id
from app.stores.models import Store

REFUND_ORDER = ("card_balance", "bank_card", "cash")


@dataclass(frozen=True)
class SaleOutcome:
    sale: Sale
    card: Card | None
    card_balance_before: int | None
    card_balance_after: int | None
    receipt: Receipt


def make_sale(
    s: Session,
    principal: Principal,
    *,
    presented: dict | None,
    lines: list[tuple[str, int]],
    tenders: list[tuple[str, int]],
    given: list[int | None] | None = None,
    offline: dict | None = None,
) -> SaleOutcome:
    """``given``: for each tender, the cash the shopper handed over when it was more than the
    tender's amount (None: exact). ``offline``: a sale the till made while it could not reach
    the API, replayed now (see app.offline: its card balance part comes from the card's
    offline allowance; its receipt says so).

    Raises UnknownSku, CurrencyMismatch, NothingToPay, TendersDoNotMatchTotal, CashGivenShort,
    CardRequired, CustomerNotIdentified, PayCodeInvalid, CardFrozen, NfcLimitExceeded,
    InsufficientFunds, and app.offline's OfflineSaleRefused."""
    given = given or [None] * len(tenders)
    try:
        change_due(tenders, given)
    except ValueError as exc:
        raise CashGivenShort(tender=exc.args[0]) from None
    store = s.get(Store, principal.store_id)
    currency = cards.currency()
    products = products_by_sku(s, [sku for sku, _ in lines])
    prices = {
        sku: ListPrice(p.id, p.sku, p.name, p.price_minor, p.currency)
        for sku, p in products.items()
    }
    for price in prices.values():
        cards.check_currency(price.currency)

    allowed = offline_card(s, principal, offline, presented, tenders)
    card, method, allowance = allowed or (None, None, None)
    if presented and allowed is None:
        card, method = cards.identify(s, **presented)
    customer = s.get(Customer, card.customer_id) if card and card.customer_id else None

    cart = price_cart(
        lines,
        prices,
        currency=currency,
        customer_id=customer.id if customer else None,
        channel="pos",
        store_id=store.id,
        at=utcnow(),
    )
    if cart.total_minor <= 0:
        raise NothingToPay()
    paid = {kind: 0 for kind in REFUND_ORDER}
    for kind, amount in tenders:
        paid[kind] += amount
    if sum(paid.values()) != cart.total_minor:
        raise TendersDoNotMatchTotal(total=cart.total_minor, tendered=sum(paid.values()))
    from_card = paid["card_balance"]
    if from_card and card is None:
        raise CardRequired()
    if from_card and method == "nfc_uid" and from_card > current_app.config["NFC_UID_LIMIT_MINOR"]:
        raise NfcLimitExceeded(limit=current_app.config["NFC_UID_LIMIT_MINOR"])

    stars = 0
    if customer is not None:
        stars = loyalty.stars_for_tenders(from_card, cart.total_minor - from_card, currency)
    line_stars = loyalty_rules.allocate(stars, [line.line_total_minor for line in cart.lines])

    legs = [Leg(store.sales_account_id, cart.total_minor, currency)]
    if from_card:
        source = allowances.take(s, allowance, card, from_card) if allowance else card.account_id
        legs.append(Leg(source, -from_card, currency))
    if paid["cash"]:
        legs.append(Leg(store.cash_account_id, -paid["cash"], currency))
    if paid["bank_card"]:
        legs.append(Leg(store.bank_card_account_id, -paid["bank_card"], currency))
    if stars:
        legs += loyalty.earn_legs(s, customer, stars)
    posted = ledger.post(
        s,
        kind="sale",
        channel="pos",
        store_id=store.id,
        device_id=principal.device_id,
        actor=principal.actor,
        legs=legs,
        meta={"card_id": card.id if card else None, "identified_by": method},
    )

    sale = Sale(
        store_id=store.id,
        device_id=principal.device_id,
        cashier_id=principal.staff_id,
        customer_id=customer.id if customer else None,
        card_id=card.id if card else None,
        identified_by=method,
        currency=currency,
        total_minor=cart.total_minor,
        stars_earned=stars,
        ledger_transaction_id=posted.transaction_id,
        shift_id=open_shift_id(s, principal.device_id, joining=True),
    )
    if offline is not None:
        sale.offline_made_at = offline["made_at"]
        sale.offline_allowance_id = allowance.id if allowance else None
    s.add(sale)
    s.flush()
    for n, (line, earned) in enumerate(zip(cart.lines, line_stars, strict=True), start=1):
        s.add(SaleLine(
            sale_id=sale.id, line_no=n, product_id=line.product_id, sku=line.sku,
            name=line.name, quantity=line.quantity, unit_price_minor=line.unit_price_minor,
            line_total_minor=line.line_total_minor, stars_earned=earned,
        ))  # fmt: skip
    for (kind, amount), handed in zip(tenders, given, strict=True):
        s.add(SaleTender(sale_id=sale.id, type=kind, amount_minor=amount, given_minor=handed))
    if customer is not None:
        loyalty.count_lifetime(s, customer.id, stars)
    s.flush()
    kiosk_counts.record_sale(s, sale)

    after = posted.balances.get(card.account_id) if card else None
    if card is not None and after is None:
        after = cards.card_balance(s, card)
    before = after + (0 if allowance else from_card) if after is not None else None
    receipt = receipts.for_sale(
        s, sale, card=card, card_balance_after=after, balances=posted.balances,
        offline=offline is not None,
    )  # fmt: skip

    if card is not None:
        changes.card_presented(s, card, device_id=principal.device_id, store_id=store.id,
                               how=method)  # fmt: skip
        if from_card:
            changes.card_balance_changed(
                s, card, after, currency, reason="sale", transaction_id=posted.transaction_id,
                store_id=store.id,
            )  # fmt: skip
    if customer is not None and customer.stars_account_id in posted.balances:
        changes.stars_changed(
            s, customer.id, posted.balances[customer.stars_account_id], reason="sale"
        )
    changes.sale_completed(s, sale, after)
    return SaleOutcome(sale, card, before, after, receipt)


def offline_card(
    s: Session,
    principal: Principal,
    offline: dict | None,
    presented: dict | None,
    tenders: list[tuple[str, int]],
):
    """For an offline sale paid from a card balance: (card, "offline", its allowance)."""
    if offline is None:
        return None
    from_card = sum(amount for kind, amount in tenders if kind == "card_balance")
    return allowances.card_for_offline_sale(s, principal, offline, presented, from_card=from_card)


def sale_in_store(s: Session, sale_id: int, store_id: int, *, lock: bool = False) -> Sale:
    """A sale of this store; any other store's is as good as missing. Raises SaleNotFound."""
    sale = s.get(Sale, sale_id, with_for_update=lock, populate_existing=lock)
    if sale is None or sale.store_id != store_id:
        raise SaleNotFound()
    return sale


def sales_of_day(
    s: Session, store_id: int, day: date, *, below: int | None, limit: int
) -> list[Sale]:
    """The store's sales of a UTC day, newest first, ``limit`` of them with ids below
    ``below`` (a page of a cursor), with their lines and tenders loaded."""
    start = datetime.combine(day, time(), tzinfo=UTC)
    query = (
        select(Sale)
        .where(
            Sale.store_id == store_id,
            Sale.created_at >= start,
            Sale.created_at < start + timedelta(days=1),
        )
        .options(selectinload(Sale.lines), selectinload(Sale.tenders))
        .order_by(Sale.id.desc())
        .limit(limit)
    )
    if below is not None:
        query = query.where(Sale.id < below)
    return list(s.scalars(query))


def refund_receipt(s: Session, refund_id: int) -> Receipt:
    return s.scalar(select(Receipt).where(Receipt.refund_id == refund_id))


def _card_to_refund(s: Session, card_id: int) -> Card:
    """The card a refund goes back to: the card itself, or the card that replaced it after
    it was reported lost."""
    card = s.get(Card, card_id)
    while card.status == "frozen" and card.replaced_by_id is not None:
        card = s.get(Card, card.replaced_by_id)
    return card


def refund_sale(
    s: Session, principal: Principal, sale_id: int, requested: list[tuple[str, int]] | None
) -> Refund:
    """Refund some lines of a sale (all that is left when ``requested`` is None).

    Raises SaleNotFound, RefundExceedsSale, NothingToRefund, and the ledger's errors.
    """
    sale = sale_in_store(s, sale_id, principal.store_id, lock=True)  # one refund at a time
    lines = list(s.scalars(select(SaleLine).where(SaleLine.sale_id == sale.id)
                           .order_by(SaleLine.line_no)))  # fmt: skip
    wanted = _quantities_to_refund(lines, requested)
    if not wanted:
        raise NothingToRefund()

    refund_lines = []
    amount = stars = 0
    for line, quantity in wanted:
        money = loyalty_rules.share_of_units(
            line.line_total_minor, line.quantity, line.refunded_quantity, quantity
        )
        earned = loyalty_rules.share_of_units(
            line.stars_earned, line.quantity, line.refunded_quantity, quantity
        )
        line.refunded_quantity += quantity
        amount += money
        stars += earned
        refund_lines.append(
            {
                "sku": line.sku,
                "line_no": line.line_no,
                "quantity": quantity,
                "amount_minor": money,
                "stars": earned,
            }  # fmt: skip
        )

    if amount == 0 and stars == 0:
        raise NothingToRefund("These lines were free: there is nothing to give back.")
    store = s.get(Store, sale.store_id)
    currency = sale.currency
    legs = [Leg(store.sales_account_id, -amount, currency)] if amount else []
    refund_tenders = []
    refund_card = None
    customer = None
    left = amount
    tenders = sorted(
        s.scalars(select(SaleTender).where(SaleTender.sale_id == sale.id)),
        key=lambda t: (REFUND_ORDER.index(t.type), t.id),
    )
    for tender in tenders:
        give = min(left, tender.amount_minor - tender.refunded_minor)
        if give <= 0:
            continue
        left -= give
        tender.refunded_minor += give
        refund_tenders.append({"type": tender.type, "amount_minor": give})
        if tender.type == "card_balance":
            refund_card = _card_to_refund(s, sale.card_id)
            legs.append(Leg(refund_card.account_id, give, currency))
        elif tender.type == "cash":
            legs.append(Leg(store.cash_account_id, give, currency))
        else:
            legs.append(Leg(store.bank_card_account_id, give, currency))

    taken = owed = 0
    if stars and sale.customer_id:
        customer = s.get(Customer, sale.customer_id)
        star_legs, taken, owed = loyalty.take_back_legs(s, customer, stars)
        legs += star_legs
        loyalty.count_lifetime(s, customer.id, -stars)
    posted = ledger.post(
        s,
        kind="refund",
        channel="pos",
        store_id=store.id,
        device_id=principal.device_id,
        actor=principal.actor,
        legs=legs,
        reverses_id=sale.ledger_transaction_id,
        meta={"sale_id": sale.id},
    )
    refund = Refund(
        sale_id=sale.id,
        device_id=principal.device_id,
        cashier_id=principal.staff_id,
        amount_minor=amount,
        stars_taken_back=taken,
        stars_owed=owed,
        lines=refund_lines,
        tenders=refund_tenders,
        ledger_transaction_id=posted.transaction_id,
        shift_id=open_shift_id(s, principal.device_id, joining=True),
    )
    s.add(refund)
    s.flush()
    shown_card = refund_card
    if shown_card is None and sale.card_id is not None:
        shown_card = _card_to_refund(s, sale.card_id)
    receipts.for_refund(s, refund, sale, card=shown_card, balances=posted.balances)
    if refund_card is not None:
        changes.card_balance_changed(
            s, refund_card, posted.balances[refund_card.account_id], currency, reason="refund",
            transaction_id=posted.transaction_id, store_id=store.id,
        )  # fmt: skip
    if customer is not None and customer.stars_account_id in posted.balances:
        changes.stars_changed(
            s, sale.customer_id, posted.balances[customer.stars_account_id], reason="refund"
        )
    changes.refund_completed(s, refund, sale)
    return refund


def _quantities_to_refund(
    lines: list[SaleLine], requested: list[tuple[str, int]] | None
) -> list[tuple[SaleLine, int]]:
    if requested is None:
        return [(line, line.quantity - line.refunded_quantity)
                for line in lines if line.quantity > line.refunded_quantity]  # fmt: skip
    remaining = {line.id: line.quantity - line.refunded_quantity for line in lines}
    chosen: dict[int, int] = {}
    for sku, quantity in requested:
        for line in lines:
            if quantity == 0:
                break
            if line.sku != sku:
                continue
            take = min(quantity, remaining[line.id] - chosen.get(line.id, 0))
            if take > 0:
                chosen[line.id] = chosen.get(line.id, 0) + take
                quantity -= take
        if quantity:
            raise RefundExceedsSale(sku=sku)
    return [(line, chosen[line.id]) for line in lines if line.id in chosen]

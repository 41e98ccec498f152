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

from sqlalchemy import String, bindparam, cast, insert, select
from sqlalchemy.orm import Session, aliased, selectinload
from sqlalchemy.orm.attributes import set_committed_value

from app.auth.principal import Principal
from app.cards import services as cards
from app.cards.errors import CurrencyMismatch, NfcLimitExceeded
from app.cards.models import AutoReload, Card
from app.catalog.pricing import ListPrice, price_cart
from app.catalog.services import list_prices
from app.core.db import write_at_commit
from app.core.settings import Settings
from app.core.types import utcnow
from app.customers.models import Customer
from app.events import changes
from app.ledger import services as ledger
from app.ledger.models import Account
from app.ledger.rules import Leg
from app.loyalty import rules as loyalty_rules
from app.loyalty import services as loyalty
from app.offline import services as allowances
from app.offline.models import OfflineAllowance
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
from app.shifts.services import joining_open_shift, open_shift_id
from app.stores.models import Store

REFUND_ORDER = ("card_balance", "bank_card", "cash")


@dataclass(frozen=True)
class SaleOutcome:
    sale: Sale
    card: Card | None
    card_balance_before: int | None
    card_balance_after: int | None
    receipt: Receipt
    #: The card's auto-reload rule, if it has one (the caller may have to charge it).
    auto_reload: AutoReload | None = None


@dataclass(frozen=True)
class Payer:
    """The card presented for a sale, how, and what the sale needs of its shopper: all read
    in one query with the card (``_find_with_shopper``)."""

    card: Card
    method: str
    customer: Customer | None = None
    stars: loyalty.StarsAccounts | None = None
    auto_reload: AutoReload | None = None
    #: For an offline sale paid from the card: the offline allowance it takes from.
    allowance: OfflineAllowance | None = None


def make_sale(
    s: Session,
    settings: Settings,
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
    store = s.get(Store, principal.store_id)  # came with the caller
    prices = _list_prices(s, settings.currency, [sku for sku, _ in lines])
    payer = _payer(s, principal, presented, offline, tenders)
    customer = payer.customer if payer else None
    cart = price_cart(
        lines, prices, currency=settings.currency, customer_id=customer.id if customer else None,
        channel="pos", store_id=store.id, at=utcnow(),
    )  # fmt: skip
    paid = _paid(cart.total_minor, tenders)
    from_card = paid["card_balance"]
    _check_card_pays(settings, payer, from_card)
    stars = 0
    if customer is not None:
        stars = loyalty.stars_for_tenders(settings, from_card, cart.total_minor - from_card)
    posted = ledger.post(
        s, kind="sale", channel="pos", store_id=store.id, device_id=principal.device_id,
        actor=principal.actor, legs=_legs(s, store, payer, paid, cart, stars),
        meta={"card_id": payer.card.id if payer else None,
              "identified_by": payer.method if payer else None},
    )  # fmt: skip
    sale = _write_sale(s, principal, payer, cart, stars, posted, tenders, given, offline)
    card = payer.card if payer else None
    after = before = None
    if card is not None:
        after = posted.balances.get(card.account_id)
        if after is None:
            after = cards.card_balance(s, card)
        before = after + (0 if payer.allowance else from_card)
    receipt = receipts.for_sale(
        s, sale, card=card, card_balance_after=after, balances=posted.balances,
        offline=offline is not None,
    )  # fmt: skip
    _emit(s, sale, payer, posted, after, from_card)
    return SaleOutcome(sale, card, before, after, receipt, payer.auto_reload if payer else None)


def _list_prices(s: Session, currency: str, skus: list[str]) -> dict[str, ListPrice]:
    """Raises UnknownSku, CurrencyMismatch."""
    prices = list_prices(s, skus)
    for price in prices.values():
        if price.currency != currency:
            raise CurrencyMismatch(expected=currency, given=price.currency)
    return prices


def _payer(
    s: Session,
    principal: Principal,
    presented: dict | None,
    offline: dict | None,
    tenders: list[tuple[str, int]],
) -> Payer | None:
    """Raises CustomerNotIdentified, PayCodeInvalid, CardInactive, CardFrozen, and the
    offline allowance's errors."""
    if offline is not None:
        from_card = sum(amount for kind, amount in tenders if kind == "card_balance")
        allowed = allowances.card_for_offline_sale(
            s, principal, offline, presented, from_card=from_card
        )
        if allowed is not None:
            card, method, allowance = allowed
            customer = s.get(Customer, card.customer_id) if card.customer_id else None
            rule = s.get(AutoReload, card.id)
            return Payer(card, method, customer, auto_reload=rule, allowance=allowance)
    if not presented:
        return None
    found: dict = {}
    card, method = cards.identify(s, **presented, find=_find_with_shopper(s, found))
    return Payer(card, method, **found)


def _with_shopper(column):
    """The card whose ``column`` is ``:value``, with its shopper, their Stars accounts and
    the card's auto-reload rule (built once per column)."""
    issuance, owed = aliased(Account), aliased(Account)
    return (
        select(Card, Customer, AutoReload, issuance.id, owed.id, owed.balance)
        .outerjoin(Customer, Customer.id == Card.customer_id)
        .outerjoin(AutoReload, AutoReload.card_id == Card.id)
        .outerjoin(issuance, issuance.code == loyalty.ISSUANCE_CODE)
        .outerjoin(owed, owed.code == loyalty.OWED_PREFIX + cast(Customer.id, String))
        .where(column == bindparam("value"))
    )


_WITH_SHOPPER = {column: _with_shopper(column) for column in (Card.id, Card.number, Card.nfc_uid)}


def _find_with_shopper(s: Session, found: dict):
    """A card finder for ``cards.identify`` that also reads, in the same query, the card's
    shopper, their Stars accounts and the card's auto-reload rule, into ``found``."""

    def find(column, value) -> Card | None:
        row = s.execute(_WITH_SHOPPER[column], {"value": value}).first()
        if row is None:
            return None
        card, customer, rule, issuance_id, owed_id, owed_balance = row
        found.update(
            customer=customer,
            stars=loyalty.StarsAccounts(issuance_id, owed_id, owed_balance),
            auto_reload=rule,
        )
        return card

    return find


def _paid(total: int, tenders: list[tuple[str, int]]) -> dict[str, int]:
    """What each kind of tender pays. Raises NothingToPay, TendersDoNotMatchTotal."""
    if total <= 0:
        raise NothingToPay()
    paid = dict.fromkeys(REFUND_ORDER, 0)
    for kind, amount in tenders:
        paid[kind] += amount
    if sum(paid.values()) != total:
        raise TendersDoNotMatchTotal(total=total, tendered=sum(paid.values()))
    return paid


def _check_card_pays(settings: Settings, payer: Payer | None, from_card: int) -> None:
    """Raises CardRequired, NfcLimitExceeded."""
    if not from_card:
        return
    if payer is None:
        raise CardRequired()
    if payer.method == "nfc_uid" and from_card > settings.nfc_uid_limit_minor:
        raise NfcLimitExceeded(limit=settings.nfc_uid_limit_minor)


def _legs(
    s: Session, store: Store, payer: Payer | None, paid: dict[str, int], cart, stars: int
) -> list[Leg]:
    currency = cart.currency
    legs = [Leg(store.sales_account_id, cart.total_minor, currency)]
    if paid["card_balance"]:
        card = payer.card
        source = card.account_id
        if payer.allowance is not None:
            source = allowances.take(s, payer.allowance, card, paid["card_balance"])
        legs.append(Leg(source, -paid["card_balance"], currency))
    if paid["cash"]:
        legs.append(Leg(store.cash_account_id, -paid["cash"], currency))
    if paid["bank_card"]:
        legs.append(Leg(store.bank_card_account_id, -paid["bank_card"], currency))
    if stars:
        legs += loyalty.earn_legs(s, payer.customer, stars, payer.stars)
    return legs


def _write_sale(
    s: Session,
    principal: Principal,
    payer: Payer | None,
    cart,
    stars: int,
    posted: ledger.Posted,
    tenders: list[tuple[str, int]],
    given: list[int | None],
    offline: dict | None,
) -> Sale:
    """The sale's row, now (its id is needed); its lines, tenders and the shopper's lifetime
    Stars with the commit."""
    customer = payer.customer if payer else None
    sale = Sale(
        store_id=principal.store_id,
        device_id=principal.device_id,
        cashier_id=principal.staff_id,
        customer_id=customer.id if customer else None,
        card_id=payer.card.id if payer else None,
        identified_by=payer.method if payer else None,
        currency=cart.currency,
        total_minor=cart.total_minor,
        stars_earned=stars,
        ledger_transaction_id=posted.transaction_id,
        kiosk_counted=False,
    )
    if offline is not None:
        sale.offline_made_at = offline["made_at"]
        sale.offline_allowance_id = payer.allowance.id if payer and payer.allowance else None
    # Written here, for its id, with the shift it joined in the same statement's answer.
    sale.created_at = utcnow()
    sale.id, sale.shift_id = s.execute(
        _INSERT_SALE, _columns(sale, "shift_id") | {"till": principal.device_id}
    ).one()
    line_stars = loyalty_rules.allocate(stars, [line.line_total_minor for line in cart.lines])
    sale_lines = [
        SaleLine(
            sale_id=sale.id, line_no=n, product_id=line.product_id, sku=line.sku,
            name=line.name, quantity=line.quantity, unit_price_minor=line.unit_price_minor,
            line_total_minor=line.line_total_minor, stars_earned=earned, refunded_quantity=0,
        )
        for n, (line, earned) in enumerate(zip(cart.lines, line_stars, strict=True), start=1)
    ]  # fmt: skip
    sale_tenders = [
        SaleTender(sale_id=sale.id, type=kind, amount_minor=amount, given_minor=handed,
                   refunded_minor=0)
        for (kind, amount), handed in zip(tenders, given, strict=True)
    ]  # fmt: skip
    # Shown by the answer and the receipt as they are; nothing reads them back before the
    # commit, which writes them.
    set_committed_value(sale, "lines", sale_lines)
    set_committed_value(sale, "tenders", sale_tenders)
    write_at_commit(s, _INSERT_LINES, [_columns(line) for line in sale_lines])
    write_at_commit(s, _INSERT_TENDERS, [_columns(tender) for tender in sale_tenders])
    if customer is not None:
        loyalty.count_lifetime(s, customer.id, stars)
    return sale


_INSERT_SALE = (
    insert(Sale.__table__)
    .values(shift_id=joining_open_shift(bindparam("till")))
    .returning(Sale.__table__.c.id, Sale.__table__.c.shift_id)
)
_INSERT_LINES = insert(SaleLine.__table__).inline()
_INSERT_TENDERS = insert(SaleTender.__table__).inline()


def _columns(row, *leaving: str) -> dict:
    """A new row's values, by column (its id, and ``leaving``, left to the database)."""
    left = {"id", *leaving}
    return {c.key: getattr(row, c.key) for c in row.__table__.columns if c.key not in left}


def _emit(
    s: Session, sale: Sale, payer: Payer | None, posted, after: int | None, from_card: int
) -> None:
    if payer is not None:
        changes.card_presented(s, payer.card, device_id=sale.device_id, store_id=sale.store_id,
                               how=payer.method)  # fmt: skip
        if from_card:
            changes.card_balance_changed(
                s, payer.card, after, sale.currency, reason="sale",
                transaction_id=posted.transaction_id, store_id=sale.store_id,
            )  # fmt: skip
        customer = payer.customer
        if customer is not None and customer.stars_account_id in posted.balances:
            changes.stars_changed(
                s, customer.id, posted.balances[customer.stars_account_id], reason="sale"
            )
    changes.sale_completed(s, sale, after)


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


def _card_to_refund(s: Session, card_id: int) -> Card:
    """The card a refund goes back to: the card itself, or the card that replaced it after
    it was reported lost."""
    card = s.get(Card, card_id)
    while card.status == "frozen" and card.replaced_by_id is not None:
        card = s.get(Card, card.replaced_by_id)
    return card


def refund_sale(
    s: Session, principal: Principal, sale_id: int, requested: list[tuple[str, int]] | None
) -> tuple[Refund, Sale, Receipt]:
    """Refund some lines of a sale (all that is left when ``requested`` is None): the refund,
    its sale and its receipt.

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
    receipt = receipts.for_refund(s, refund, sale, card=shown_card, balances=posted.balances)
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
    return refund, sale, receipt


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

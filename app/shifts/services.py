"""Shifts at the till: opened with the drawer's float, closed with a count and a report that is
kept as it was printed. The cashier session that closes a shift ends with it.

Sales, refunds and till top-ups name the till's open shift (``open_shift_id``); the server
sells without one (the till program asks for a shift before it sells).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.auth import services as auth
from app.auth.models import Staff
from app.auth.principal import Principal
from app.core.schemas import money
from app.core.types import utcnow
from app.payments.models import TopUp
from app.sales.models import Refund, Sale, SaleTender
from app.shifts import rules
from app.shifts.errors import NoOpenShift, ShiftClosed, ShiftNotFound, ShiftOpen
from app.shifts.models import Shift
from app.stores.models import Device, Store


def open_shift_id(s: Session, device_id: int | None, *, joining: bool = False) -> int | None:
    """The id of the till's open shift, if it has one.

    ``joining``: for a sale, refund or top-up that names the shift. The row is share-locked
    so that a close waits for it (and it for a close), and what the close counts is all
    that joined the shift.
    """
    if device_id is None:
        return None
    query = select(Shift.id).where(Shift.device_id == device_id, Shift.status == "open")
    if joining:
        query = query.with_for_update(read=True)
    return s.scalar(query)


def joining_open_shift(device_id):
    """The till's open shift, if any, as a SQL expression for a row that names it as the row is
    written (a sale's): share-locked, as ``open_shift_id(joining=True)`` does, without a round
    trip of its own. ``device_id``: the till's id, or a bound parameter for it."""
    return (
        select(Shift.id)
        .where(Shift.device_id == device_id, Shift.status == "open")
        .with_for_update(read=True)
        .scalar_subquery()
    )


def open_shift(s: Session, principal: Principal, float_minor: int, *, currency: str) -> Shift:
    """A shift at the principal's till, its float in ``currency`` (the retailer's).

    Raises ShiftOpen (with the open shift's id) when the till has one already."""
    earlier = open_shift_id(s, principal.device_id)
    if earlier is not None:
        raise ShiftOpen(shift_id=earlier)
    shift = Shift(
        store_id=principal.store_id,
        device_id=principal.device_id,
        cashier_id=principal.staff_id,
        currency=currency,
        float_minor=float_minor,
        status="open",
        opened_at=utcnow(),
    )
    try:
        with s.begin_nested():  # another cashier's open at the same instant wins
            s.add(shift)
            s.flush()
    except IntegrityError:
        raise ShiftOpen(shift_id=open_shift_id(s, principal.device_id)) from None
    return shift


def current_shift(s: Session, principal: Principal) -> Shift:
    """Raises NoOpenShift."""
    shift_id = open_shift_id(s, principal.device_id)
    if shift_id is None:
        raise NoOpenShift()
    return s.get(Shift, shift_id)


def shift_in_store(s: Session, principal: Principal, shift_id: int) -> Shift:
    """A shift of the caller's store; any other is as good as missing. Raises ShiftNotFound."""
    shift = s.get(Shift, shift_id)
    if shift is None or shift.store_id != principal.store_id:
        raise ShiftNotFound()
    return shift


def close_shift(s: Session, principal: Principal, shift_id: int, counted_minor: int) -> Shift:
    """Close the till's own open shift with the cash counted in the drawer; the report is
    written with it and the cashier session that closed it is revoked.

    Raises ShiftNotFound (another till's shift, or none), ShiftClosed.
    """
    shift = s.get(Shift, shift_id, with_for_update=True, populate_existing=True)
    if shift is None or shift.device_id != principal.device_id:
        raise ShiftNotFound()
    if shift.status != "open":
        raise ShiftClosed()
    # The row lock taken above waits for the sales, refunds and top-ups that share-locked the
    # shift to join it (open_shift_id), and makes later ones find it closed: the report counts
    # all that joined, and nothing joins after.
    closed_at = utcnow()
    report = _report(s, shift, closed_at, principal.staff_id, counted_minor)
    shift.status = "closed"
    shift.closed_at = closed_at
    shift.closed_by_id = principal.staff_id
    shift.counted_minor = counted_minor
    shift.report = report
    s.flush()
    auth.revoke(s, principal.token_id)
    return shift


def _report(
    s: Session, shift: Shift, closed_at: datetime, closed_by_id: int, counted_minor: int
) -> dict:
    sales = rules.Tally(rules.SALE_TENDERS)
    sale_rows = s.scalars(select(Sale).where(Sale.shift_id == shift.id).order_by(Sale.id))
    for sale in sale_rows:
        tenders = s.scalars(select(SaleTender).where(SaleTender.sale_id == sale.id))
        sales.add(sale.total_minor, [(t.type, t.amount_minor) for t in tenders])
    refunds = rules.Tally(rules.SALE_TENDERS)
    for refund in s.scalars(select(Refund).where(Refund.shift_id == shift.id)):
        refunds.add(refund.amount_minor, [(t["type"], t["amount_minor"]) for t in refund.tenders])
    top_ups = rules.Tally(rules.TOP_UP_TENDERS)
    for top_up in s.scalars(
        select(TopUp).where(TopUp.shift_id == shift.id, TopUp.status == "succeeded")
    ):
        top_ups.add(top_up.amount_minor, [(top_up.source, top_up.amount_minor)])
    expected = rules.expected_cash(shift.float_minor, sales, refunds, top_ups)
    store = s.get(Store, shift.store_id)
    c = shift.currency

    def tally(t: rules.Tally) -> dict:
        return {
            "count": t.count,
            "total": money(t.total_minor, c),
            "by_tender": {kind: money(amount, c) for kind, amount in t.by_tender.items()},
        }

    return {
        "store": {"name": store.name, "address": store.address},
        "till": s.get(Device, shift.device_id).name,
        "cashier": first_name(s.get(Staff, shift.cashier_id)),
        "closed_by": first_name(s.get(Staff, closed_by_id)),
        "opened_at": shift.opened_at.isoformat(),
        "closed_at": closed_at.isoformat(),
        "float": money(shift.float_minor, c),
        "sales": tally(sales),
        "refunds": tally(refunds),
        "top_ups": tally(top_ups),
        "expected_cash": money(expected, c),
        "counted_cash": money(counted_minor, c),
        "difference": money(counted_minor - expected, c),
    }


def first_name(staff: Staff) -> str:
    """What a receipt or a report calls a cashier: the first word of their name."""
    return (staff.name.split() or [""])[0]

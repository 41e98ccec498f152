"""Digital receipts: what the shopper was handed for a sale or a refund, written in the same
transaction (with its commit) and never changed after.

A receipt is read by whoever holds its link (the QR code on the paper receipt): its id is 192
random bits, and it shows no card number, only the last four digits.
"""

from __future__ import annotations

import secrets

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from app.auth.models import Staff
from app.cards.models import Card
from app.core.db import write_at_commit
from app.core.errors import NotFound
from app.core.schemas import money
from app.customers.models import Customer
from app.ledger import services as ledger
from app.sales.models import Receipt, Refund, Sale, SaleLine
from app.sales.rules import number
from app.shifts.services import first_name
from app.stores.models import Device, Store


class ReceiptNotFound(NotFound):
    code = "receipt_not_found"
    message = "No such receipt."


def line_body(line: SaleLine, currency: str) -> dict:
    return {
        "sku": line.sku,
        "name": line.name,
        "quantity": line.quantity,
        "unit_price": money(line.unit_price_minor, currency),
        "line_total": money(line.line_total_minor, currency),
    }


def new_id() -> str:
    return secrets.token_urlsafe(24)


def _heading(s: Session, store_id: int, device_id: int, cashier_id: int) -> dict:
    store = s.get(Store, store_id)
    return {
        "store": {"name": store.name, "address": store.address},
        "till": s.get(Device, device_id).name,
        "cashier": first_name(s.get(Staff, cashier_id)),
    }


def _card(
    s: Session, card: Card | None, balance_after: int | None, balances: dict, currency: str
) -> dict | None:
    """The card's last 4 and what the shopper owns on it after this: its balance and what
    tills hold of it for offline payments (still theirs, released when the till is done)."""
    if card is None or balance_after is None:
        return None
    held = 0
    if card.held_account_id is not None:
        held = balances.get(card.held_account_id)
        if held is None:
            held = ledger.balance_of(s, card.held_account_id)
    return {"last4": card.last4, "balance_after": money(balance_after + held, currency)}


def _stars(s: Session, customer_id: int | None, earned: int, balances: dict) -> dict | None:
    if customer_id is None:
        return None
    customer = s.get(Customer, customer_id)
    balance = balances.get(customer.stars_account_id)
    if balance is None:
        balance = ledger.balance_of(s, customer.stars_account_id)
    return {"earned": earned, "balance": balance}


def for_sale(
    s: Session,
    sale: Sale,
    *,
    card: Card | None,
    card_balance_after: int | None,
    balances: dict[int, int],
    offline: bool = False,
) -> Receipt:
    """The sale's receipt. ``balances``: the accounts' balances after the sale's posting."""
    c = sale.currency
    cash = [t for t in sale.tenders if t.type == "cash"]
    cash_minor = sum(t.amount_minor for t in cash)
    given_minor = sum(t.given_minor or t.amount_minor for t in cash)
    body = {
        "kind": "sale",
        "number": number("S", sale.id),
        "sale_id": sale.id,
        "refund_id": None,
        "sale_number": number("S", sale.id),
        **_heading(s, sale.store_id, sale.device_id, sale.cashier_id),
        "currency": c,
        "lines": [line_body(line, c) for line in sale.lines],
        "total": money(sale.total_minor, c),
        "tenders": [{"type": t.type, "amount": money(t.amount_minor, c)} for t in sale.tenders],
        "cash_given": money(given_minor, c) if cash else None,
        "change": money(given_minor - cash_minor, c) if cash else None,
        "card": _card(s, card, card_balance_after, balances, c),
        "stars": _stars(s, sale.customer_id, sale.stars_earned, balances),
        "offline": offline,
    }
    return _write(s, Receipt(id=new_id(), kind="sale", sale_id=sale.id, body=body,
                             created_at=sale.created_at))  # fmt: skip


def for_refund(
    s: Session,
    refund: Refund,
    sale: Sale,
    *,
    card: Card | None,
    balances: dict[int, int],
) -> Receipt:
    """The refund's receipt: the lines given back (their price and what they came to), the
    tenders the money went back to, and the Stars taken back as a negative ``earned``.
    ``card``: the card the sale was paid with or identified by (its replacement, if it was
    reported lost)."""
    c = sale.currency
    by_no = {line.line_no: line for line in sale.lines}
    card_after = None
    if card is not None:
        card_after = balances.get(card.account_id)
        if card_after is None:
            card_after = ledger.balance_of(s, card.account_id)
    body = {
        "kind": "refund",
        "number": number("R", refund.id),
        "sale_id": sale.id,
        "refund_id": refund.id,
        "sale_number": number("S", sale.id),
        **_heading(s, sale.store_id, refund.device_id, refund.cashier_id),
        "currency": c,
        "lines": [
            {
                "sku": r["sku"],
                "name": by_no[r["line_no"]].name,
                "quantity": r["quantity"],
                "unit_price": money(by_no[r["line_no"]].unit_price_minor, c),
                "line_total": money(r["amount_minor"], c),
            }
            for r in refund.lines
        ],
        "total": money(refund.amount_minor, c),
        "tenders": [
            {"type": t["type"], "amount": money(t["amount_minor"], c)} for t in refund.tenders
        ],  # fmt: skip
        "cash_given": None,
        "change": None,
        "card": _card(s, card, card_after, balances, c),
        "stars": _stars(
            s, sale.customer_id, -(refund.stars_taken_back + refund.stars_owed), balances
        ),
        "offline": False,
    }
    return _write(s, Receipt(id=new_id(), kind="refund", sale_id=sale.id, refund_id=refund.id,
                             body=body, created_at=refund.created_at))  # fmt: skip


_INSERT_RECEIPT = insert(Receipt.__table__).inline()


def _write(s: Session, receipt: Receipt) -> Receipt:
    """Written with the commit: nothing reads a receipt back in the transaction that makes it."""
    write_at_commit(s, _INSERT_RECEIPT, {
        "id": receipt.id, "kind": receipt.kind, "sale_id": receipt.sale_id,
        "refund_id": receipt.refund_id, "body": receipt.body, "created_at": receipt.created_at,
    })  # fmt: skip
    return receipt


def receipt(s: Session, receipt_id: str) -> Receipt:
    """Raises ReceiptNotFound."""
    found = s.get(Receipt, receipt_id) if 16 <= len(receipt_id) <= 64 else None
    if found is None:
        raise ReceiptNotFound()
    return found


def sale_receipts(s: Session, sale_ids: list[int]) -> dict[int, Receipt]:
    """Each sale's own receipt (not its refunds'), by sale id."""
    if not sale_ids:
        return {}
    rows = s.scalars(select(Receipt).where(Receipt.sale_id.in_(sale_ids), Receipt.kind == "sale"))
    return {r.sale_id: r for r in rows}

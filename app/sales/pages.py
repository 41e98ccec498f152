"""The receipt's own page, ``/r/<id>``: what the QR code on a paper receipt opens on a phone.

Plain HTML with the pages' Content-Security-Policy (app/core/headers.py): one stylesheet of
our own, nothing inline, no script.
"""

from __future__ import annotations

from datetime import datetime

from flask import Blueprint, render_template

from app.core.db import session
from app.sales import receipts
from app.sales.receipts import ReceiptNotFound

blp = Blueprint("receipt_pages", __name__)

TENDER_NAMES = {"card_balance": "Card balance", "cash": "Cash", "bank_card": "Bank card"}


def amount(money: dict | None) -> str:
    """``{"amount": 1234, "currency": "USD"}`` as ``12.34 USD`` (every currency Omnicard
    runs in has two decimals)."""
    if money is None:
        return ""
    minor = money["amount"]
    sign = "-" if minor < 0 else ""
    return f"{sign}{abs(minor) // 100}.{abs(minor) % 100:02d} {money['currency']}"


@blp.route("/r/<receipt_id>")
def receipt_page(receipt_id: str):
    try:
        receipt = receipts.receipt(session(), receipt_id)
    except ReceiptNotFound:
        return render_template("receipt_missing.html"), 404
    created: datetime = receipt.created_at
    return render_template(
        "receipt.html",
        r=receipt.body,
        when=created.strftime("%Y-%m-%d %H:%M UTC"),
        amount=amount,
        tender_names=TENDER_NAMES,
    )

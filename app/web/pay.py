"""Topping a card up, and paying in store with a pay code shown on the phone.

The top-up page charges the shopper's bank card through the API (``POST
/v1/cards/<id>/top-ups``) from its script. The pay page gets its code here, as pictures a
till scans: the same service as ``POST /v1/me/pay-codes`` issues it, and this process draws
it (app.web.barcodes), so the code travels in a POST answer and never in an address.
"""

from __future__ import annotations

from flask import Blueprint, jsonify

from app.auth.principal import current_principal, forbidden
from app.cards import services as cards
from app.core.db import session
from app.core.schemas import Id, Schema, money
from app.core.settings import settings
from app.core.types import utcnow
from app.web import barcodes
from app.web.pages import json_body, render_page, signed_in_or_login

blp = Blueprint("web_pay", __name__, template_folder="templates")

#: The amounts the top-up page offers with one tap, in minor units.
QUICK_TOP_UPS_MINOR = (1_000, 2_500, 5_000)
#: The sandbox gateway's test cards (app.payments.gateway.SandboxGateway), as the page
#: offers them: the token, and the key of the text that describes it.
TEST_CARDS = (
    ("tok_visa", "pay.test_card.approves"),
    ("tok_chargeDeclined", "pay.test_card.declines"),
    ("tok_timeout", "pay.test_card.times_out"),
)


@blp.get("/cards/<id:card_id>/top-up")
def top_up(card_id: int):
    """The card itself is read by the page's script, so another shopper's card id shows the
    API's 'no such card' and nothing of the card."""
    current = settings()
    low, high = current.topup_min_minor, current.topup_max_minor
    return signed_in_or_login() or render_page(
        "web/topup.html",
        test_cards=TEST_CARDS,
        page_data={
            "card_id": card_id,
            "currency": current.currency,
            "minimum": low,
            "maximum": high,
            "quick": [q for q in QUICK_TOP_UPS_MINOR if low <= q <= high],
        },
    )


@blp.get("/pay")
def pay():
    return signed_in_or_login() or render_page("web/pay.html")


class PayCodeRequestSchema(Schema):
    card_id = Id(load_default=None)


@blp.post("/pay/code")
def pay_code():
    """A new pay code for the shopper's chosen card (else the primary one), with the card's
    balance and the code drawn as a QR code and a Code 128 barcode (SVG ``data:`` URLs).

    Raises Unauthenticated, CsrfFailed (a cookie request without the page's token),
    Forbidden, ValidationFailed, CardNotFound, CardFrozen, CardInactive."""
    p = current_principal()
    if p.kind != "customer":
        raise forbidden(["customer"], p)
    data = json_body(PayCodeRequestSchema)
    s = session()
    card = cards.card_to_pay_with(s, p.customer_id, data["card_id"])
    code, issued = cards.issue_pay_code(s, card)
    return jsonify(
        code=code,
        card_id=card.id,
        expires_at=issued.expires_at.isoformat().replace("+00:00", "Z"),
        expires_in_s=max(0, int((issued.expires_at - utcnow()).total_seconds())),
        balance=money(cards.card_balance(s, card), settings().currency),
        qr=barcodes.data_url(barcodes.qr_svg(code)),
        barcode=barcodes.data_url(barcodes.code128_svg(code)),
    )


@blp.after_request
def not_stored(response):
    """Pages carry a CSRF token, and the code endpoint a pay code: no cache keeps either."""
    response.headers["Cache-Control"] = "no-store"
    return response

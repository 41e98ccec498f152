"""The card pages: one card (its balance, history, moving money, auto-reload, reporting it
lost) and adding a physical card. What they show and change goes through the JSON API; the
page itself only checks that the card is the shopper's own, so another shopper's card id
shows nothing but "no such card"."""

from __future__ import annotations

from flask import Blueprint

from app.cards import services as cards
from app.cards.errors import CardNotFound
from app.core.db import session
from app.core.settings import settings
from app.web import session as web_session
from app.web.pages import render_page, signed_in_or_login

blp = Blueprint("web_cards", __name__, template_folder="templates")


@blp.get("/cards/add")
def add_card():
    return signed_in_or_login() or render_page("web/card_add.html")


@blp.get("/cards/<int:card_id>")
def card(card_id: int):
    if login := signed_in_or_login():
        return login
    try:
        cards.owned_card(session(), card_id, web_session.signed_in_customer_id())
    except CardNotFound:
        return render_page("web/card_missing.html"), 404
    current = settings()
    page = {
        "card_id": card_id,
        "currency": current.currency,
        "top_up_min": current.topup_min_minor,
        "top_up_max": current.topup_max_minor,
    }
    return render_page("web/card.html", card_id=card_id, page=page)


@blp.after_request
def pages_are_not_stored(response):
    """As the other pages: a card's page is the shopper's, and never kept by a cache."""
    response.headers.setdefault("Cache-Control", "no-store")
    return response

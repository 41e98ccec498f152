"""The kiosk screen: ``/kiosk``, the page a full-screen browser shows on a tablet by the
shelves. Staff pair it once to its kiosk with a short code (``POST /kiosk/pair``), which
leaves the screen's own login in a cookie; no device secret is ever typed on it. From then on
the page follows its kiosk's event stream and shows each tap: the product, its category, the
shopper's greeting, or a friendly word about a tag it cannot use.

What the page shows of a tap comes whole in the tap's event (prices from the one pricing
function, worked out by the server); the page itself carries only its texts, how long a
visit lasts, and a few of the store's products for the attract loop.
"""

from __future__ import annotations

import marshmallow as ma
from flask import Blueprint, current_app, g, jsonify, request

from app.auth import browser
from app.auth.principal import TOKEN_PREFIX, resolve_token
from app.core.db import session
from app.core.settings import settings
from app.kiosk import services as kiosk
from app.web import session as web_session
from app.web.pages import json_body, render_page
from app.web.products import picture_url, price_now

blp = Blueprint("web_kiosk", __name__, template_folder="templates")

#: How many of the store's products the attract loop shows.
FEATURED = 6


class PairSchema(ma.Schema):
    code = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=20))


def paired_screen():
    """The principal of this screen's login (kind ``kiosk_screen``), or None."""
    if "kiosk_screen" not in g:
        token = browser.kiosk_token_from_cookie()
        principal = resolve_token(token) if token and token.startswith(TOKEN_PREFIX) else None
        g.kiosk_screen = principal if principal and principal.kind == "kiosk_screen" else None
    return g.kiosk_screen


def featured_products(store_id: int) -> list[dict]:
    """A few of the store's products in stock, for the attract loop."""
    return [
        {"id": p.id, "name": p.name, "image_url": picture_url(p), **price_now(p, None)}
        for p in kiosk.featured_products(session(), store_id, FEATURED)
    ]


@blp.get("/kiosk")
def screen():
    principal = paired_screen()
    data = {
        "paired": principal is not None,
        "idle_s": settings().kiosk_session_idle_s,
        "featured": featured_products(principal.store_id) if principal else [],
    }
    csrf = browser.csrf_for_session(browser.kiosk_token_from_cookie()) if principal else None
    return render_page("web/kiosk.html", kiosk=data, kiosk_csrf=csrf)


@blp.post("/kiosk/pair")
def pair():
    """Pair this screen with the kiosk whose code staff typed: the screen's login goes in
    its cookie. Refused with the API's error for a wrong, used or expired code, and for a
    while after too many wrong codes from this address."""
    web_session.check_anonymous_csrf()
    data = json_body(PairSchema)
    ip = request.remote_addr or "unknown"
    ttl_s = settings().kiosk_screen_token_ttl_s
    token = kiosk.pair_screen(session(), data["code"], ttl_s, client_ip=ip)
    response = jsonify(redirect="/kiosk")
    response.set_cookie(
        browser.KIOSK_COOKIE, token, max_age=ttl_s,
        httponly=True, samesite="Lax", secure=bool(current_app.config["SECURE_COOKIES"]),
        path="/",
    )  # fmt: skip
    return response, 201


@blp.after_request
def screens_are_not_stored(response):
    response.headers.setdefault("Cache-Control", "no-store")
    return response

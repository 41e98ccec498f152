"""The staff pages of the website: logging in as staff and the kiosks' tap analytics.

A staff login is kept in the same session cookie as a shopper's, but it is never a shopper:
the shopper pages and the shopper API do not take it, and it works only on the views that
allow it (``app.auth.principal.allow_staff_cookie``): these pages and the analytics API.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import marshmallow as ma
from flask import Blueprint, jsonify, redirect, request, url_for

from app.auth import services as auth
from app.auth.api import LoginSchema
from app.auth.errors import Forbidden
from app.auth.principal import allow_staff_cookie, current_principal
from app.auth.services import revoke
from app.core.db import session
from app.core.errors import ValidationFailed
from app.core.settings import settings
from app.kiosk import analytics
from app.web import session as web_session
from app.web.pages import json_body, render_page, safe_next

blp = Blueprint("web_staff", __name__, template_folder="templates")


def _staff_or_login():
    """None when staff are signed in; else the redirect to the staff login page."""
    if web_session.signed_in_staff() is None:
        return redirect(url_for("web_staff.login", next=request.full_path.rstrip("?")))
    return None


@blp.get("/staff/login")
def login():
    if web_session.signed_in_staff() is not None:
        return redirect(safe_next(request.args.get("next"), "/staff/analytics"))
    next_ = safe_next(request.args.get("next"), "/staff/analytics")
    return render_page("web/staff_login.html", next=next_)


class StaffLoginSchema(LoginSchema):
    next = ma.fields.String(load_default="/staff/analytics")


@blp.post("/staff/session")
def start_session():
    """Staff log in on the website: the same check as ``POST /v1/auth/login`` with
    ``"account": "staff"``, answered with the session cookie."""
    web_session.check_anonymous_csrf()
    data = json_body(StaffLoginSchema)
    ip = request.remote_addr or "unknown"
    current = settings()
    token, _ = auth.log_in_staff(session(), current, data["email"], data["password"], ip)
    answer = jsonify(redirect=safe_next(data["next"], "/staff/analytics"))
    return web_session.start_session(answer, token, ttl_s=current.staff_token_ttl_s)


@blp.post("/staff/logout")
def end_session():
    """Log staff out: the login stops working at once, and the cookie goes."""
    principal = current_principal()  # checks the page's CSRF token
    revoke(session(), principal.token_id)
    return web_session.end_session(jsonify(redirect="/staff/login"))


def _date_arg(name: str) -> date | None:
    value = request.args.get(name) or None
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise ValidationFailed(fields={name: ["Not a date (YYYY-MM-DD)."]}) from None


def _int_arg(name: str, default: int | None) -> int | None:
    value = request.args.get(name) or None
    if value is None:
        return default
    try:
        return int(value)
    except ValueError:
        raise ValidationFailed(fields={name: ["Not a number."]}) from None


def bars(values: list[tuple[str, int]], *, width: int = 480, row: int = 28) -> dict:
    """A horizontal bar chart's geometry (label, value, bar length, y), for the template's
    SVG; the longest bar is the largest value."""
    most = max((v for _, v in values), default=0) or 1
    label_w, value_w = 170, 40
    room = width - label_w - value_w
    return {
        "width": width,
        "height": max(row * len(values), row),
        "label_w": label_w,
        "rows": [
            {"label": label, "value": v, "length": round(room * v / most), "y": i * row}
            for i, (label, v) in enumerate(values)
        ],
    }


def columns(values: list[tuple[str, int]], *, height: int = 180) -> dict:
    """A column chart's geometry (label, value, x, column height) for the template's SVG."""
    most = max((v for _, v in values), default=0) or 1
    step = max(12, min(48, 720 // max(len(values), 1)))
    room = height - 40
    return {
        "width": step * len(values) + 40,
        "height": height,
        "base": height - 24,
        "step": step,
        "cols": [
            {"label": label, "value": v, "x": 20 + i * step, "h": round(room * v / max(most, 1))}
            for i, (label, v) in enumerate(values)
        ],
    }


@blp.get("/staff/analytics")
def analytics_page():
    gate = _staff_or_login()
    if gate is not None:
        return gate
    principal = current_principal()
    s = session()
    today = datetime.now(UTC).date()
    stores = analytics.stores_open_to(s, principal)
    error = None
    try:
        scope = analytics.scope_for(
            s,
            principal,
            store_id=_int_arg("store_id", None),
            first=_date_arg("from"),
            last=_date_arg("to"),
            days=min(max(_int_arg("days", 7) or 7, 1), 90),
            today=today,
        )
    except (ValidationFailed, Forbidden) as exc:
        error = exc
        scope = analytics.Scope(
            None if principal.role == "admin" else (stores[0].id if stores else -1),
            today - timedelta(days=6),
            today,
            7,
        )
    data = analytics.analytics(s, scope)
    totals: dict[int, tuple[str, int]] = {}
    for day in data["most_tapped"]:
        for row in day["products"]:
            name, n = totals.get(row["product"]["id"], (row["product"]["name"], 0))
            totals[row["product"]["id"]] = (name, n + row["taps"])
    top = sorted(totals.items(), key=lambda kv: (-kv[1][1], kv[0]))[:10]
    return render_page(
        "web/staff_analytics.html",
        data=data,
        scope=scope,
        stores=stores,
        is_admin=principal.role == "admin",
        error=error,
        per_day=columns([(d["day"].isoformat()[5:], d["taps"]) for d in data["taps_per_day"]]),
        top=bars([(name, n) for _, (name, n) in top]),
        conversion=bars(
            [(r["product"]["name"], r["converted"]) for r in data["conversion"]["products"]]
        ),
    )


for endpoint in ("web_staff.analytics_page", "web_staff.end_session"):
    allow_staff_cookie(endpoint)

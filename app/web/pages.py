"""The website's pages and its session endpoints.

A page is a template: the frame, the forms and the words in the shopper's language. What it
shows of the shopper (cards, balances, history, codes) its script reads from the JSON API
with the session cookie, and what it changes it changes through the API, so every rule about
money is the API's. Logging in, signing up and out are here because they set the cookie.
"""

from __future__ import annotations

import functools
from urllib.parse import urlsplit

import marshmallow as ma
from flask import Blueprint, jsonify, redirect, render_template, request, url_for

from app.auth import browser
from app.auth import services as auth
from app.auth.api import LoginSchema, SignupSchema
from app.auth.errors import Unauthenticated
from app.auth.principal import current_principal
from app.core.db import session
from app.core.errors import MalformedJson, ValidationFailed
from app.core.settings import settings
from app.customers import services as customers
from app.web import i18n
from app.web import session as web_session

blp = Blueprint("web", __name__, template_folder="templates")

LANG_COOKIE_MAX_AGE_S = 365 * 86400


def safe_next(target: str | None, default: str = "/") -> str:
    """Where to go after logging in or switching language: a path on this site only."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return default
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return default
    return target


def render_page(template: str, **context):
    """A page in the shopper's language, with its CSRF token and its texts for scripts."""
    lang = i18n.language()
    signed_in = web_session.signed_in_customer_id() is not None

    def t(key: str, **values) -> str:
        return i18n.translate(key, lang, **values)

    return render_template(
        template,
        lang=lang,
        t=t,
        messages=i18n.catalog()[lang],
        csrf_token=web_session.page_csrf_token(),
        signed_in=signed_in,
        here=request.full_path.rstrip("?"),
        **context,
    )


@functools.cache
def _one_of(schema_class: type[ma.Schema]) -> ma.Schema:
    """The one instance of a page's body schema (as the API's views have theirs)."""
    return schema_class()


def json_body(schema_class: type[ma.Schema]) -> dict:
    """The request's JSON, loaded by ``schema_class``'s one instance. Raises MalformedJson,
    ValidationFailed."""
    schema = _one_of(schema_class)
    data = request.get_json(silent=True)
    if not isinstance(data, dict):
        raise MalformedJson()
    try:
        return schema.load(data)
    except ma.ValidationError as exc:
        raise ValidationFailed(fields=exc.messages) from None


def signed_in_or_login():
    """None when a shopper is signed in; else the redirect to the login page."""
    if web_session.signed_in_customer_id() is None:
        return redirect(url_for("web.login", next=request.full_path.rstrip("?")))
    return None


@blp.get("/login")
def login():
    if web_session.signed_in_customer_id() is not None:
        return redirect(safe_next(request.args.get("next")))
    return render_page("web/login.html", next=safe_next(request.args.get("next")))


@blp.get("/signup")
def signup():
    if web_session.signed_in_customer_id() is not None:
        return redirect("/")
    return render_page("web/signup.html")


class WebLoginSchema(LoginSchema):
    next = ma.fields.String(load_default="/")


@blp.post("/session")
def start_session():
    """Log in from the website: the same check as ``POST /v1/auth/login``, answered with the
    session cookie instead of a token."""
    web_session.check_anonymous_csrf()
    data = json_body(WebLoginSchema)
    if data["account"] != "shopper":
        raise ValidationFailed(fields={"account": ["The website is for shoppers."]})
    ip = request.remote_addr or "unknown"
    current = settings()
    token, _ = auth.log_in_customer(session(), current, data["email"], data["password"], ip)
    return web_session.start_session(
        jsonify(redirect=safe_next(data["next"])), token, ttl_s=current.customer_token_ttl_s
    )


@blp.post("/signup")
def create_account():
    """Sign up from the website: the same as ``POST /v1/auth/signup``, with the cookie."""
    web_session.check_anonymous_csrf()
    data = json_body(SignupSchema)
    current = settings()
    token, _ = customers.sign_up(session(), current, **data)
    answer = jsonify(redirect="/")
    return web_session.start_session(answer, token, ttl_s=current.customer_token_ttl_s), 201


@blp.post("/logout")
def end_session():
    """Log out: the login stops working at once, and the cookie goes."""
    if browser.session_token_from_cookie() is not None:
        try:
            principal = current_principal()  # checks the page's CSRF token
        except Unauthenticated:
            principal = None
        if principal is not None:
            auth.revoke(session(), principal.token_id)
    return web_session.end_session(jsonify(redirect="/login"))


@blp.get("/lang/<code>")
def choose_language(code: str):
    target = safe_next(request.args.get("next"))
    response = redirect(target)
    if code in i18n.LANGUAGES:
        response.set_cookie(
            i18n.LANG_COOKIE, code, max_age=LANG_COOKIE_MAX_AGE_S, samesite="Lax", path="/"
        )
    return response


@blp.get("/")
def home():
    return signed_in_or_login() or render_page("web/home.html")


def init_app(app) -> None:
    app.after_request(web_session.keep_csrf_cookie)


@blp.after_request
def pages_are_not_stored(response):
    """Pages carry a CSRF token and a shopper's name: no shared cache keeps them, and the
    back button shows a fresh balance rather than a copy."""
    response.headers.setdefault("Cache-Control", "no-store")
    return response

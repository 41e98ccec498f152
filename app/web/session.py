"""The website's session cookie and the CSRF token its pages carry (see app.auth.browser)."""

from __future__ import annotations

from flask import Response, current_app, g

from app.auth import browser
from app.auth.principal import TOKEN_PREFIX, resolve_token


def _secure() -> bool:
    return bool(current_app.config["SECURE_COOKIES"])


def signed_in_customer_id() -> int | None:
    """The shopper this browser is logged in as, if the session cookie is still good."""
    if "web_customer_id" not in g:
        token = browser.session_token_from_cookie()
        principal = resolve_token(token) if token and token.startswith(TOKEN_PREFIX) else None
        is_shopper = principal is not None and principal.kind == "customer"
        g.web_customer_id = principal.customer_id if is_shopper else None
    return g.web_customer_id


def signed_in_staff():
    """The staff member this browser is logged in as on the staff pages (a Principal of kind
    ``staff``), if the session cookie holds a good staff login; else None."""
    if "web_staff" not in g:
        token = browser.session_token_from_cookie()
        principal = resolve_token(token) if token and token.startswith(TOKEN_PREFIX) else None
        g.web_staff = principal if principal is not None and principal.kind == "staff" else None
    return g.web_staff


def page_csrf_token() -> str:
    """What this page's scripts send as ``X-CSRF-Token``."""
    token = browser.session_token_from_cookie()
    if token and (signed_in_customer_id() is not None or signed_in_staff() is not None):
        return browser.csrf_for_session(token)
    if "new_csrf" not in g:
        g.new_csrf = browser.request_csrf_cookie() or browser.new_csrf_value()
    return g.new_csrf


def keep_csrf_cookie(response: Response) -> Response:
    """A page shown before login sets the cookie its CSRF token repeats."""
    value = g.pop("new_csrf", None)
    if value is not None and value != browser.request_csrf_cookie():
        response.set_cookie(
            browser.CSRF_COOKIE, value, httponly=True, samesite="Strict", secure=_secure(),
            path="/",
        )  # fmt: skip
    return response


def check_anonymous_csrf() -> None:
    """For logging in and signing up: the request repeats the cookie set by the page.
    Raises CsrfFailed."""
    browser.check_csrf(browser.request_csrf_cookie())


def start_session(response: Response, token: str, *, ttl_s: int) -> Response:
    """Keep ``token`` (a shopper's or a staff login, good for ``ttl_s``) in the cookie."""
    response.set_cookie(
        browser.SESSION_COOKIE, token, max_age=ttl_s,
        httponly=True, samesite="Lax", secure=_secure(), path="/",
    )  # fmt: skip
    response.delete_cookie(browser.CSRF_COOKIE, path="/", secure=_secure(), samesite="Strict")
    return response


def end_session(response: Response) -> Response:
    response.delete_cookie(
        browser.SESSION_COOKIE, path="/", secure=_secure(), httponly=True, samesite="Lax"
    )
    return response

"""Browser sessions: the website keeps a shopper's login in a cookie instead of a header.

The cookie holds the same login token an app sends as ``Authorization: Bearer``, so the API
takes it wherever it takes a shopper's token and applies the same rules. A cookie rides along
with every request the browser makes, also those another site's page starts, so a request
that changes anything must prove it comes from one of Omnicard's own pages: it carries the
page's CSRF token in ``X-CSRF-Token``. A logged-in page's token is derived from the session
token (a page of another site can read neither); before login it is the value of a random
cookie of its own, which only Omnicard's pages see and repeat.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from flask import request

from app.auth.errors import Forbidden

SESSION_COOKIE = "omnicard_session"
#: A kiosk's screen, paired once with a code staff read off the kiosk: its login as a
#: ``kiosk_screen`` (app.kiosk), taken with the same CSRF rule as a shopper's.
KIOSK_COOKIE = "omnicard_kiosk"
CSRF_COOKIE = "omnicard_csrf"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class CsrfFailed(Forbidden):
    code = "csrf_failed"
    message = (
        "This request did not come from an Omnicard page: reload the page and try again "
        "(requests made with the session cookie must carry the page's X-CSRF-Token)."
    )


def csrf_for_session(token: str) -> str:
    """The CSRF token of the pages shown to this login."""
    return hmac.new(token.encode(), b"omnicard-csrf", hashlib.sha256).hexdigest()


def new_csrf_value() -> str:
    return secrets.token_urlsafe(32)


def check_csrf(expected: str | None) -> None:
    """Refuse a state-changing request that does not repeat ``expected``. Raises CsrfFailed."""
    if request.headers.get("Sec-Fetch-Site") == "cross-site":
        raise CsrfFailed()
    sent = request.headers.get(CSRF_HEADER, "")
    if not expected or not sent or not hmac.compare_digest(sent.encode(), expected.encode()):
        raise CsrfFailed()


def session_token_from_cookie() -> str | None:
    token = request.cookies.get(SESSION_COOKIE, "")
    return token or None


def kiosk_token_from_cookie() -> str | None:
    token = request.cookies.get(KIOSK_COOKIE, "")
    return token or None


def request_csrf_cookie() -> str | None:
    return request.cookies.get(CSRF_COOKIE) or None

"""Who is calling: resolved once per request from ``Authorization: Bearer <token>``.

- a shopper (``customer``) or staff member (``staff``, role ``admin`` or ``cashier``) logged in
  with email and password;
- a device (``device``: a POS terminal or a kiosk) with the secret it was given at
  registration, bound to one store;
- a cashier signed in on a POS terminal (``cashier``), bound to that device, its store and
  the cashier;
- a kiosk's screen (``kiosk_screen``), paired to one kiosk with a one-use code: it may follow
  its kiosk's events and save a product for the kiosk session's shopper, nothing else.

A shopper on the website sends the same login token in a cookie instead (app.auth.browser),
and a kiosk's screen its own in a cookie of its own; the Bearer header wins when a request
has one.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass, replace

from flask import g, request
from sqlalchemy import bindparam, select

from app.auth import browser
from app.auth.errors import Forbidden, Unauthenticated
from app.auth.models import AuthToken, Staff
from app.core.db import session
from app.core.types import utcnow
from app.customers.models import Customer
from app.stores.models import Device, Store

DEVICE_PREFIX = "ocd_"
TOKEN_PREFIX = "oct_"


@dataclass(frozen=True)
class Principal:
    kind: str
    customer_id: int | None = None
    staff_id: int | None = None
    role: str | None = None
    device_id: int | None = None
    device_kind: str | None = None
    store_id: int | None = None
    token_id: int | None = None
    #: A shopper on the website, signed in by the session cookie.
    web: bool = False

    @property
    def key(self) -> str:
        """Whose idempotency keys these are. A till's keys belong to the till, so a payment
        retried after the cashier signs in again still replays."""
        if self.kind == "customer":
            return f"customer:{self.customer_id}"
        if self.kind == "staff":
            return f"staff:{self.staff_id}"
        if self.kind == "kiosk_screen":
            return f"screen:{self.device_id}"
        return f"device:{self.device_id}"

    @property
    def actor(self) -> str:
        """Who did it, for the ledger and the audit trail."""
        if self.kind == "cashier":
            return f"staff:{self.staff_id}@device:{self.device_id}"
        return self.key

    @property
    def channel(self) -> str:
        if self.web:
            return "web"
        return {"customer": "app", "staff": "admin"}.get(self.kind, self.device_kind or "pos")


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _bearer() -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


_DEVICE = (
    select(Device, Store)
    .outerjoin(Store, Store.id == Device.store_id)
    .where(Device.secret_hash == bindparam("digest"))
)
_TOKEN = (
    select(AuthToken, Staff, Device, Store, Customer)
    .outerjoin(Customer, Customer.id == AuthToken.customer_id)
    .outerjoin(Staff, Staff.id == AuthToken.staff_id)
    .outerjoin(Device, Device.id == AuthToken.device_id)
    .outerjoin(Store, Store.id == Device.store_id)
    .where(AuthToken.token_hash == bindparam("digest"))
)


def resolve_token(token: str) -> Principal | None:
    """The caller a token names, or None. One query: its shopper, or its staff member, device
    and store, come with it, so that the request finds them in its session without asking
    again."""
    s = session()
    digest = hash_token(token)
    if token.startswith(DEVICE_PREFIX):
        row = s.execute(_DEVICE, {"digest": digest}).first()
        device = row.Device if row is not None else None
        s.info["caller"] = row  # held, so that the session's identity map keeps them
        if device is None or not device.active:
            return None
        return Principal(
            "device", device_id=device.id, device_kind=device.kind, store_id=device.store_id
        )
    row = s.execute(_TOKEN, {"digest": digest}).first()
    if row is None:
        return None
    t, staff, device = row.AuthToken, row.Staff, row.Device
    s.info["caller"] = row  # held, so that the session's identity map keeps them for the request
    if t.revoked_at is not None or t.expires_at <= utcnow():
        return None
    if t.kind == "customer":
        return Principal("customer", customer_id=t.customer_id, token_id=t.id)
    if t.kind == "kiosk_screen":
        if device is None or not device.active or device.kind != "kiosk":
            return None
        return Principal(
            "kiosk_screen",
            device_id=device.id,
            device_kind=device.kind,
            store_id=device.store_id,
            token_id=t.id,
        )
    if staff is None or not staff.active:
        return None
    if t.kind == "staff":
        return Principal("staff", staff_id=t.staff_id, role=staff.role, token_id=t.id)
    if device is None or not device.active:
        return None
    return Principal(
        "cashier",
        staff_id=t.staff_id,
        role=staff.role,
        device_id=device.id,
        device_kind=device.kind,
        store_id=device.store_id,
        token_id=t.id,
    )


def _from_cookie() -> Principal | None:
    """A kiosk's paired screen, else a shopper signed in on the website. A request that
    changes anything must carry the page's CSRF token. Raises CsrfFailed.

    A browser paired as a kiosk's screen is that screen for every request, even if someone
    signed in as a shopper on it: a public screen must never follow a shopper's events."""
    return _screen_from_cookie() or _shopper_from_cookie()


def _screen_from_cookie() -> Principal | None:
    token = browser.kiosk_token_from_cookie()
    if token is None or not token.startswith(TOKEN_PREFIX):
        return None
    principal = resolve_token(token)
    if principal is None or principal.kind != "kiosk_screen":
        return None
    if request.method not in browser.SAFE_METHODS:
        browser.check_csrf(browser.csrf_for_session(token))
    return principal


#: The views that take a staff member's website login (the session cookie): the staff pages
#: and the analytics API they read. Anywhere else a staff cookie counts for nothing, so a
#: page of ours can never be led into using a staff login for more than those.
STAFF_COOKIE_ENDPOINTS: set[str] = set()


def allow_staff_cookie(endpoint: str) -> None:
    """Let the view ``endpoint`` take staff signed in on the website (``/staff/login``)."""
    STAFF_COOKIE_ENDPOINTS.add(endpoint)


def _shopper_from_cookie() -> Principal | None:
    """A shopper signed in on the website; or staff, on the views that allow it. The cookie
    never makes staff a shopper: the principal keeps its kind."""
    token = browser.session_token_from_cookie()
    if token is None or not token.startswith(TOKEN_PREFIX):
        return None
    principal = resolve_token(token)
    if principal is None:
        return None
    if principal.kind == "staff":
        if request.endpoint not in STAFF_COOKIE_ENDPOINTS:
            return None
    elif principal.kind != "customer":
        return None
    if request.method not in browser.SAFE_METHODS:
        browser.check_csrf(browser.csrf_for_session(token))
    return replace(principal, web=True)


def current_principal() -> Principal:
    """The caller. Raises Unauthenticated, CsrfFailed."""
    if "principal" not in g:
        token = _bearer()
        g.principal = resolve_token(token) if token else _from_cookie()
    if g.principal is None:
        raise Unauthenticated()
    return g.principal


#: How each kind of caller gets its token, for the answers that name the caller needed.
HOW_TO_BE = {
    "customer": "a shopper's login token (POST /v1/auth/login)",
    "staff": 'a staff login token (POST /v1/auth/login with "account": "staff")',
    "staff:admin": 'an admin\'s login token (POST /v1/auth/login with "account": "staff")',
    "device": "a device secret",
    "device:pos": "a POS terminal's device secret",
    "device:kiosk": "a kiosk's device secret",
    "kiosk_screen": "a kiosk screen's login (the omnicard_kiosk cookie set by pairing the "
    "screen with a code from POST /v1/kiosk/pairing-codes)",
    "cashier": "a cashier session token (POST /v1/pos/sessions, sent with the till's device "
    "secret, the cashier's staff code and PIN)",
}


def _who(kinds: tuple[str, ...], role: str | None, device_kind: str | None) -> list[str]:
    """The callers a view takes, as ``kind`` or ``kind:narrowing``."""
    narrowing = {"staff": role, "device": device_kind}
    return [f"{k}:{narrowing[k]}" if narrowing.get(k) else k for k in kinds]


def forbidden(allowed: list[str], caller: Principal) -> Forbidden:
    """A 403 that says which callers may do it and what this one is, so that a client sent
    with the wrong token (a till's device secret where a cashier session is needed) knows
    what to send instead."""
    needed = " or ".join(HOW_TO_BE[who] for who in allowed)
    narrowed = {"staff": caller.role, "device": caller.device_kind}.get(caller.kind)
    is_ = f"{caller.kind} ({narrowed})" if narrowed else caller.kind
    return Forbidden(f"This needs {needed}; this caller is a {is_}.", allowed=allowed, caller=is_)


def requires(*kinds: str, role: str | None = None, device_kind: str | None = None):
    """Only callers of these kinds (``customer``, ``staff``, ``device``, ``cashier``,
    ``kiosk_screen``) may call
    the view; ``role`` narrows staff to admins, ``device_kind`` devices to POS or kiosks.

    The decorated function's docstring gains a line that says who may call it.
    """
    allowed = _who(kinds, role, device_kind)

    def decorator(view):
        @functools.wraps(view)
        def wrapper(*args, **kwargs):
            p = current_principal()
            if (
                p.kind not in kinds
                or (role is not None and p.kind == "staff" and p.role != role)
                or (device_kind is not None and p.kind == "device" and p.device_kind != device_kind)
            ):
                raise forbidden(allowed, p)
            return view(*args, **kwargs)

        who = ", ".join(
            f"{k} ({role})"
            if k == "staff" and role
            else f"{k} ({device_kind})"
            if k == "device" and device_kind
            else k
            for k in kinds
        )
        wrapper.__doc__ = f"{(view.__doc__ or '').rstrip()}\n\nWho may call: {who}."
        return wrapper

    return decorator

"""Logins, tokens and cashier sessions."""

from __future__ import annotations

import secrets
from datetime import timedelta

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from app.auth.errors import InvalidCredentials, InvalidStaffPin
from app.auth.models import AuthToken, Staff
from app.auth.passwords import hash_new_password, hash_secret, verify_or_pretend
from app.auth.principal import DEVICE_PREFIX, TOKEN_PREFIX, hash_token
from app.core import throttle
from app.core.settings import Settings
from app.core.throttle import Limit
from app.core.types import utcnow
from app.customers.models import Customer
from app.stores.models import Device

#: Failed logins and PINs are counted over this window.
LOGIN_WINDOW_S = 900


def normalise_email(email: str) -> str:
    return email.strip().lower()


def issue_token(s: Session, kind: str, ttl_s: int, **owner) -> tuple[str, AuthToken]:
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    row = AuthToken(
        token_hash=hash_token(token),
        kind=kind,
        expires_at=utcnow() + timedelta(seconds=ttl_s),
        hint=token[-4:],
        **owner,
    )
    s.add(row)
    s.flush()
    return token, row


def new_device_secret() -> tuple[str, str]:
    """A device secret and the hash that is stored."""
    secret = DEVICE_PREFIX + secrets.token_urlsafe(32)
    return secret, hash_token(secret)


def _login_limits(
    kind: str, email: str, client_ip: str, settings: Settings
) -> tuple[Limit, list[Limit]]:
    """Guesses at one account from one address; and, wider, at that account from anywhere
    (a distributed attack) and from that address at any account, known or not (spraying).
    See app.core.throttle: only the pair's own failures refuse it."""
    pair = throttle.subject(kind, email, client_ip)
    account = throttle.subject(kind, email)
    address = throttle.subject(client_ip)
    own = Limit("login:pair", pair, settings.login_max_failures, LOGIN_WINDOW_S)
    wider = [
        Limit("login:account", account, settings.login_max_failures_account, LOGIN_WINDOW_S),
        Limit("login:address", address, settings.login_max_failures_address, LOGIN_WINDOW_S),
    ]
    return own, wider


def log_in_customer(s: Session, settings: Settings, email: str, password: str, client_ip: str):
    """Raises InvalidCredentials, TooManyAttempts."""
    email = normalise_email(email)
    own, wider = _login_limits("shopper", email, client_ip, settings)
    throttle.refuse_if_over(s, own, wider)
    customer = s.scalar(select(Customer).where(Customer.email == email))
    if not verify_or_pretend(customer.password_hash if customer else None, password, settings):
        throttle.record_failure(s, own, wider)
        raise InvalidCredentials()
    token, _ = issue_token(s, "customer", settings.customer_token_ttl_s, customer_id=customer.id)
    return token, customer


def log_in_staff(s: Session, settings: Settings, email: str, password: str, client_ip: str):
    """Raises InvalidCredentials, TooManyAttempts."""
    email = normalise_email(email)
    own, wider = _login_limits("staff", email, client_ip, settings)
    throttle.refuse_if_over(s, own, wider)
    staff = s.scalar(select(Staff).where(Staff.email == email, Staff.active))
    if not verify_or_pretend(staff.password_hash if staff else None, password, settings):
        throttle.record_failure(s, own, wider)
        raise InvalidCredentials()
    token, _ = issue_token(s, "staff", settings.staff_token_ttl_s, staff_id=staff.id)
    return token, staff


def sign_in_cashier(s: Session, settings: Settings, device: Device, staff_code: str, pin: str):
    """A cashier session on ``device``: bound to it, its store and the cashier.

    PIN guesses are counted per till and staff code: a till is a place, so whoever fails
    there can lock that code out of that till only, never the cashier out of the others.
    A till that fails at many codes (a stolen device secret) makes its pairs wait sooner.

    Raises InvalidStaffPin, TooManyAttempts.
    """
    own = Limit("pin:pair", throttle.subject(str(device.id), staff_code),
                settings.login_max_failures, LOGIN_WINDOW_S)  # fmt: skip
    wider = [Limit("pin:device", str(device.id), settings.pin_max_failures_device, LOGIN_WINDOW_S)]
    throttle.refuse_if_over(s, own, wider)
    staff = s.scalar(select(Staff).where(Staff.staff_code == staff_code, Staff.active))
    ok = verify_or_pretend(staff.pin_hash if staff else None, pin, settings)
    # A cashier works the tills of their own store; an admin may sign in anywhere.
    if not ok or (staff.role == "cashier" and staff.store_id != device.store_id):
        throttle.record_failure(s, own, wider)
        raise InvalidStaffPin()
    token, row = issue_token(
        s, "cashier", settings.cashier_session_ttl_s, staff_id=staff.id, device_id=device.id
    )
    return token, row, staff


def revoke(s: Session, token_id: int) -> None:
    s.execute(
        update(AuthToken)
        .where(AuthToken.id == token_id, AuthToken.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    )


def create_staff(
    s: Session,
    settings: Settings,
    *,
    email: str,
    name: str,
    role: str,
    password: str,
    staff_code: str | None = None,
    pin: str | None = None,
    store_id: int | None = None,
) -> Staff:
    """Raises WeakPassword."""
    email = normalise_email(email)
    staff = Staff(
        email=email,
        name=name,
        role=role,
        password_hash=hash_new_password(password, email=email, name=name, settings=settings),
        staff_code=staff_code,
        pin_hash=hash_secret(pin, settings) if pin else None,
        store_id=store_id,
    )
    s.add(staff)
    s.flush()
    return staff


def load_staff(s: Session, staff_id: int) -> Staff:
    """A staff member known to exist (a token's or a shift's)."""
    return s.get(Staff, staff_id)


def email_in_use(s: Session, email: str) -> bool:
    return bool(s.scalar(select(func.count()).select_from(Customer).where(Customer.email == email)))

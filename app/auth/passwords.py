"""Passwords and PINs: argon2id, memory-hard. Cost comes from configuration (tests use less)."""

from __future__ import annotations

import contextlib

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from flask import current_app

from app.auth import password_rules
from app.auth.errors import WeakPassword


def _hasher() -> PasswordHasher:
    cfg = current_app.config
    return PasswordHasher(
        time_cost=cfg["ARGON2_TIME_COST"],
        memory_cost=cfg["ARGON2_MEMORY_KIB"],
        parallelism=1,
    )


def hash_secret(secret: str) -> str:
    return _hasher().hash(secret)


def hash_new_password(password: str, *, email: str, name: str) -> str:
    """The hash to store for a password being set, if it may be used (app.auth.password_rules).
    Every place that sets a password goes through here.

    Raises WeakPassword, with ``details.reason`` one of password_rules.REASONS.
    """
    reason = password_rules.weakness(
        password, identifiers=password_rules.identifiers_of(email, name)
    )
    if reason is not None:
        message = password_rules.REASONS[reason]
        raise WeakPassword(message, reason=reason, fields={"password": [message]})
    return hash_secret(password)


def verify_secret(stored_hash: str | None, secret: str) -> bool:
    """True if ``secret`` matches. With no stored hash it still does the work, so that a
    caller cannot tell a missing account from a wrong password by the time it takes."""
    hasher = _hasher()
    if stored_hash is None:
        # Made once and kept: hashing it afresh each time would make a missing account
        # cost twice the work of a wrong password, and so tell them apart by the time taken.
        stored_hash = current_app.extensions.get("omnicard.dummy_hash")
        if stored_hash is None:
            stored_hash = hasher.hash("omnicard-no-such-account")
            current_app.extensions["omnicard.dummy_hash"] = stored_hash
        with contextlib.suppress(VerificationError):
            hasher.verify(stored_hash, secret + "\0")
        return False
    try:
        return hasher.verify(stored_hash, secret)
    except (VerificationError, InvalidHashError):
        return False

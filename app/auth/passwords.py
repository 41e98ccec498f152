"""Passwords and PINs: argon2id, memory-hard. Cost comes from the settings (tests use less)."""

from __future__ import annotations

import contextlib
import functools

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from app.auth import password_rules
from app.auth.errors import WeakPassword
from app.core.settings import Settings

#: Checks a hash at the cost written in the hash itself, whatever the settings say now.
_VERIFIER = PasswordHasher()


def _hasher(time_cost: int, memory_kib: int) -> PasswordHasher:
    return PasswordHasher(time_cost=time_cost, memory_cost=memory_kib, parallelism=1)


def hash_secret(secret: str, settings: Settings) -> str:
    return _hasher(settings.argon2_time_cost, settings.argon2_memory_kib).hash(secret)


def hash_new_password(password: str, *, email: str, name: str, settings: Settings) -> str:
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
    return hash_secret(password, settings)


def verify_secret(stored_hash: str, secret: str) -> bool:
    """True if ``secret`` matches ``stored_hash``."""
    try:
        return _VERIFIER.verify(stored_hash, secret)
    except (VerificationError, InvalidHashError):
        return False


@functools.cache
def _no_account_hash(time_cost: int, memory_kib: int) -> str:
    # Made once and kept: hashing it afresh each time would make a missing account cost
    # twice the work of a wrong password, and so tell them apart by the time taken.
    return _hasher(time_cost, memory_kib).hash("omnicard-no-such-account")


def verify_or_pretend(stored_hash: str | None, secret: str, settings: Settings) -> bool:
    """True if ``secret`` matches. With no stored hash (no such account) it still does the
    work of a check at the settings' cost, so that a caller cannot tell a missing account
    from a wrong password by the time it takes."""
    if stored_hash is None:
        dummy = _no_account_hash(settings.argon2_time_cost, settings.argon2_memory_kib)
        with contextlib.suppress(VerificationError):
            _VERIFIER.verify(dummy, secret + "\0")
        return False
    return verify_secret(stored_hash, secret)

"""Passwords and PINs: argon2id, memory-hard. Cost comes from configuration (tests use less)."""

from __future__ import annotations

import contextlib

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from flask import current_app


def _hasher() -> PasswordHasher:
    cfg = current_app.config
    return PasswordHasher(
        time_cost=cfg["ARGON2_TIME_COST"],
        memory_cost=cfg["ARGON2_MEMORY_KIB"],
        parallelism=1,
    )


def hash_secret(secret: str) -> str:
    return _hasher().hash(secret)


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

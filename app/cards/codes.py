"""Security codes of physical cards: kept as HMAC-SHA256 under a server key.

A code is 8 digits, so no hash of it alone survives a stolen database: 10^8 guesses are
minutes of work even for argon2 at the cost that a batch of a thousand cards can afford. The
key (``OMNICARD_CARD_CODE_KEY``) lives in the environment, never in the database, so a dump
alone gives nothing; a dump together with the key gives every code, by trying them all.
Online guessing is throttled (app.core.throttle).

Cards issued before this kept argon2 hashes, which still verify.
"""

from __future__ import annotations

import hashlib
import hmac

from flask import current_app

from app.auth.passwords import verify_secret

PREFIX = "hmac-sha256$"


class CardCodeKeyMissing(RuntimeError):
    pass


def _key() -> bytes:
    key = current_app.config.get("CARD_CODE_KEY") or ""
    if len(key) < 32:
        raise CardCodeKeyMissing(
            "OMNICARD_CARD_CODE_KEY must be set to a random secret of at least 32 characters "
            "(e.g. `python -c 'import secrets; print(secrets.token_hex(32))'`) to issue or "
            "check card security codes"
        )
    return key.encode()


def _mac(code: str) -> str:
    return hmac.new(_key(), code.encode(), hashlib.sha256).hexdigest()


def hash_card_code(code: str) -> str:
    return PREFIX + _mac(code)


def verify_card_code(stored: str | None, code: str) -> bool:
    """True if ``code`` is the card's. With no card it still does the work of one."""
    if stored is None:
        _mac(code)
        return False
    if stored.startswith(PREFIX):
        return hmac.compare_digest(stored, hash_card_code(code))
    return verify_secret(stored, code)

"""The server's signature on an offline allowance, and the card-matching HMACs the till keeps.

A token is ``<payload b64url>.<signature b64url>``: the payload is the allowance's id, card,
till, amount and expiry as compact JSON, the signature HMAC-SHA256 over the payload's b64url
text under a key of its own, derived from ``OMNICARD_CARD_CODE_KEY`` with a label (so a
signature here is never a valid card-code hash, nor the other way round). Plain functions of
their inputs: the key is passed in.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from dataclasses import dataclass
from datetime import datetime

LABEL = b"omnicard offline allowance token v1"


def derive_key(card_code_key: str) -> bytes:
    return hmac.new(card_code_key.encode(), LABEL, hashlib.sha256).digest()


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True)
class Claims:
    id: int
    card_id: int
    device_id: int
    amount: int
    expires_at: str  # ISO 8601, as issued


def sign(key: bytes, claims: Claims) -> str:
    payload = _b64(
        json.dumps(
            {
                "id": claims.id,
                "card_id": claims.card_id,
                "device_id": claims.device_id,
                "amount": claims.amount,
                "expires_at": claims.expires_at,
            },
            separators=(",", ":"),
            sort_keys=True,
        ).encode()
    )
    return f"{payload}.{_b64(hmac.new(key, payload.encode(), hashlib.sha256).digest())}"


def verify(key: bytes, token: str) -> Claims | None:
    """The claims of a token this server signed; None for anything else."""
    payload, dot, signature = token.partition(".")
    if not dot or not payload.isascii() or not signature.isascii():
        return None
    expected = hmac.new(key, payload.encode(), hashlib.sha256).digest()
    try:
        if not hmac.compare_digest(expected, _unb64(signature)):
            return None
        fields = json.loads(_unb64(payload))
        claims = Claims(**fields)
    except (ValueError, TypeError, binascii.Error):
        return None
    if not all(type(getattr(claims, f)) is int for f in ("id", "card_id", "device_id", "amount")):
        return None
    return claims


def match_hmac(salt: str, value: str) -> str:
    """What the till keeps to recognise a card offline: hex HMAC-SHA256 keyed by the salt's
    text, over the card number or the NFC UID (upper-case hex)."""
    return hmac.new(salt.encode(), value.encode(), hashlib.sha256).hexdigest()


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")

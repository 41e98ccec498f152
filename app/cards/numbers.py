"""Card numbers and codes: pure functions."""

from __future__ import annotations

import re
import secrets

#: Omnicard numbers start with 6 (the range of retailer and private-label cards).
PREFIX = "6"


def luhn_check_digit(partial: str) -> str:
    """The digit that makes ``partial + digit`` pass the Luhn check."""
    total = 0
    for i, ch in enumerate(reversed(partial)):
        d = int(ch)
        if i % 2 == 0:  # these positions are doubled once the check digit is appended
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return str((10 - total % 10) % 10)


def luhn_valid(number: str) -> bool:
    return len(number) == 16 and number.isdigit() and luhn_check_digit(number[:-1]) == number[-1]


def new_card_number() -> str:
    body = PREFIX + "".join(secrets.choice("0123456789") for _ in range(14))
    return body + luhn_check_digit(body)


def new_security_code() -> str:
    return f"{secrets.randbelow(10**8):08d}"


def new_pay_code() -> str:
    """12 digits: easy for any barcode scanner, unguessable within its minute."""
    return f"{secrets.randbelow(10**12):012d}"


def normalise_nfc_uid(uid: str) -> str | None:
    """Upper-case hex without separators (``04:a2:…`` → ``04A2…``), or None if not a UID.

    Any whitespace counts as a separator (a reader may end its line with CR LF): none may
    survive into the stored UID, where it would make one tag look like two.
    """
    cleaned = re.sub(r"[\s:-]", "", uid).upper()
    if not 8 <= len(cleaned) <= 20 or len(cleaned) % 2:
        return None
    if re.fullmatch(r"[0-9A-F]+", cleaned) is None:
        return None
    return cleaned

"""Amounts as the cashier reads and types them: integer minor units inside, "$12.50" on screen."""

from __future__ import annotations

import re

SYMBOLS = {"USD": "$", "EUR": "€", "GBP": "£"}
_AMOUNT = re.compile(r"^\s*\$?\s*(\d{1,7})(?:[.,](\d{1,2}))?\s*$")


def money(minor: int | None, currency: str = "USD") -> str:
    """``1250`` → ``$12.50``; a negative amount keeps its sign in front of the symbol."""
    if minor is None:
        return "—"
    sign = "-" if minor < 0 else ""
    whole, cents = divmod(abs(minor), 100)
    symbol = SYMBOLS.get(currency)
    body = f"{whole:,}.{cents:02d}"
    return f"{sign}{symbol}{body}" if symbol else f"{sign}{body} {currency}"


def parse_money(text: str) -> int | None:
    """What the cashier typed (``12``, ``12.5``, ``12,50``, ``$12.50``) in minor units, or None
    when it is not an amount. Whole numbers are major units: a cashier types ``20`` for a note."""
    match = _AMOUNT.match(text or "")
    if not match:
        return None
    whole, cents = match.groups()
    return int(whole) * 100 + int((cents or "0").ljust(2, "0"))

"""Which new passwords are refused, after NIST SP 800-63B (section 5.1.1.2): at least 10
characters and no composition rules, but never a password that attackers try first: one
from a list of common and breached passwords or a dictionary word (ignoring case, and digits
or symbols stuck on either end: "Password12!" is "password"), repetitive or sequential
characters ("1111111111", "abcdefghij", "qwertyuiop"), or the user's own identifiers (their
email, its local part, their name) and the service's name with a little added.

The lists are zxcvbn's (MIT licence, pinned in requirements.txt): 30,000 passwords most
common in breaches and 30,000 most frequent English words. Pure functions: no I/O.
"""

from __future__ import annotations

import functools
import re

MIN_LENGTH = 10
MAX_LENGTH = 200
#: What a password must keep, beyond the user's identifiers, not to be "their name plus 1".
MIN_BEYOND_IDENTIFIERS = 5
SEQUENCES = (
    "abcdefghijklmnopqrstuvwxyz",
    "01234567890123456789",
    "qwertyuiopasdfghjklzxcvbnm",
    "1qaz2wsx3edc4rfv5tgb6yhn7ujm8ik9ol0p",
)
REASONS = {
    "too_short": f"A password needs at least {MIN_LENGTH} characters.",
    "too_long": f"A password has at most {MAX_LENGTH} characters.",
    "common": "That password is one of the most common or breached ones: choose another.",
    "repetitive": "That password is repetitive or sequential: choose another.",
    "personal": "That password is too close to your email or name: choose another.",
}


@functools.cache
def _common() -> frozenset[str]:
    from zxcvbn.frequency_lists import FREQUENCY_LISTS

    return frozenset(FREQUENCY_LISTS["passwords"]) | frozenset(FREQUENCY_LISTS["english_wikipedia"])


def _alnum(text: str) -> str:
    return re.sub(r"[\W_]+", "", text.lower())


def _cores(password: str) -> set[str]:
    """The password as attackers' lists would spell it: lower case, with or without the
    spaces, and without digits or symbols at either end."""
    lowered = password.lower()
    forms = {lowered, lowered.replace(" ", "")}
    forms |= {re.sub(r"^[\W\d_]+|[\W\d_]+$", "", form) for form in set(forms)}
    return {form for form in forms if form}


def _is_repetitive(password: str) -> bool:
    text = password.lower()
    if len(set(text)) <= 3:
        return True
    for unit in range(1, len(text) // 2 + 1):
        if (text[:unit] * (len(text) // unit + 1))[: len(text)] == text:
            return True
    plain = _alnum(text)
    return any(plain in seq or plain in seq[::-1] for seq in SEQUENCES)


def _is_personal(password: str, identifiers: list[str]) -> bool:
    left = _alnum(password)
    for identifier in sorted({_alnum(i) for i in identifiers}, key=len, reverse=True):
        if len(identifier) >= 3:
            left = left.replace(identifier, "")
    return len(left) < MIN_BEYOND_IDENTIFIERS


def identifiers_of(email: str, name: str) -> list[str]:
    """What a user is known by: their email, its local part, their name and its words."""
    local = email.partition("@")[0]
    return [email, local, *re.split(r"[\W_]+", local), name, *name.split(), "omnicard"]


def weakness(password: str, *, identifiers: list[str]) -> str | None:
    """Why ``password`` is refused (a key of REASONS), or None if it may be used."""
    if len(password) < MIN_LENGTH:
        return "too_short"
    if len(password) > MAX_LENGTH:
        return "too_long"
    if _is_repetitive(password):
        return "repetitive"
    if _cores(password) & _common():
        return "common"
    if _is_personal(password, identifiers):
        return "personal"
    return None

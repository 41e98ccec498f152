"""The website's languages: English and Spanish.

Texts live in ``app/web/messages/<area>.json`` as ``{"en": {key: text}, "es": {key: text}}``,
one file per part of the site; a key belongs to one file, and every key is in every
language (checked when the files are read). The language is the shopper's choice (cookie
``lang``), else the browser's (``Accept-Language``), else English. Money and dates are
formatted in the browser, by ``Intl`` in the page's language.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

from flask import request

LANGUAGES = ("en", "es")
DEFAULT = "en"
LANG_COOKIE = "lang"
MESSAGES_DIR = Path(__file__).with_name("messages")


class MessagesBroken(Exception):
    """A messages file that repeats a key or misses a language."""


@functools.cache
def catalog() -> dict[str, dict[str, str]]:
    """Every text in every language. Raises MessagesBroken."""
    merged: dict[str, dict[str, str]] = {lang: {} for lang in LANGUAGES}
    for path in sorted(MESSAGES_DIR.glob("*.json")):
        texts = json.loads(path.read_text(encoding="utf-8"))
        if set(texts) != set(LANGUAGES):
            raise MessagesBroken(f"{path.name}: languages {sorted(texts)}, wanted {LANGUAGES}")
        if set(texts["en"]) != set(texts["es"]):
            odd = sorted(set(texts["en"]) ^ set(texts["es"]))
            raise MessagesBroken(f"{path.name}: keys not in every language: {odd}")
        for lang in LANGUAGES:
            repeated = set(merged[lang]) & set(texts[lang])
            if repeated:
                raise MessagesBroken(f"{path.name}: keys also in another file: {sorted(repeated)}")
            merged[lang].update(texts[lang])
    return merged


def language() -> str:
    """The page's language for this request."""
    chosen = request.cookies.get(LANG_COOKIE)
    if chosen in LANGUAGES:
        return chosen
    return request.accept_languages.best_match(LANGUAGES) or DEFAULT


def translate(key: str, lang: str, **values) -> str:
    """The text for ``key``; ``{name}`` placeholders filled from ``values``. A missing key
    shows as itself, so it is seen and fixed rather than hidden."""
    text = catalog()[lang].get(key, key)
    return text.format(**values) if values else text

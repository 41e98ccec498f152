"""Every text the website shows exists in English and Spanish."""

from __future__ import annotations

import re
from pathlib import Path

from app.web import i18n

ROOT = Path(__file__).resolve().parents[2]


def keys_used() -> set[str]:
    used = set()
    for template in (ROOT / "app/web/templates").rglob("*.html"):
        used |= set(re.findall(r"""\bt\(\s*['"]([a-z0-9_.]+)['"]""", template.read_text()))
    for script in (ROOT / "app/static/web").glob("*.js"):
        used |= set(re.findall(r"""\bt\(\s*["']([a-z0-9_.]+)["']""", script.read_text()))
    return used


def test_every_text_the_pages_use_is_in_every_language():
    catalog = i18n.catalog()
    used = keys_used()
    assert used, "no texts found: the pattern no longer matches the pages"
    for lang in i18n.LANGUAGES:
        missing = sorted(used - set(catalog[lang]))
        assert not missing, f"{lang} lacks {missing}"


def test_spanish_is_not_english_copied():
    catalog = i18n.catalog()
    same = [k for k, v in catalog["en"].items() if catalog["es"][k] == v and len(v) > 12]
    assert not same, f"untranslated: {same}"

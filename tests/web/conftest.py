"""The website in a real browser: a live server process (tests/live.py) on the test
database, Debian's chromium driven by Playwright (one browser for these tests, a fresh context
per test: no cookie or storage crosses tests), and the people and things a page shows.

Fixtures:
- ``server``: the live server (``server.url``); pages are opened by path (``page.goto("/")``).
- ``page``: a page in a new context (locale en-US). ``new_context(locale="es-ES", ...)``:
  more contexts (another locale, a second device of the same shopper); all closed after the
  test.
- ``shopper(name="Ada", load_minor=0)``: a shopper signed up through the API, with their
  first card (``email``, ``password``, ``token``, ``card_id``, ``number``).
- ``world``: a store with a till, a cashier and products (tests/live.py World);
  ``till.sell(shopper, "latte")``: a sale at that till through the API, paid from the card.

Helpers (tests/web/browser.py): ``log_in(page_or_context, email, password)`` through /login,
``check_accessibility(page)`` (axe-core).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Playwright, expect, sync_playwright

from tests import live
from tests.live import Shopper, World
from tests.web.browser import CHROMIUM, CHROMIUM_ARGS, TIMEOUT_MS

# The live server for this package, and the world to sell in (tests/live.py).
server, admin, world = live.server, live.admin, live.world

PASSWORD = "a long password"


# One Playwright and one browser for all of this package's tests. Not for the whole run:
# Playwright's sync API holds an asyncio loop running in this thread while it lives, and
# tests that come after (the till's async ones, when asked for in that order) need their own.
@pytest.fixture(scope="package")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as p:
        expect.set_options(timeout=TIMEOUT_MS)
        yield p


@pytest.fixture(scope="package")
def browser(playwright) -> Iterator[Browser]:
    if not os.access(CHROMIUM, os.X_OK):  # the run fails: these tests are never skipped
        pytest.fail(f"no browser at {CHROMIUM}: run scripts/ensure-chromium (scripts/test does)")
    browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    yield browser
    browser.close()


@pytest.fixture
def new_context(browser, server) -> Iterator:
    """``new_context(locale="en-US", **options)``: a fresh browser context on the live server
    (its own cookies and storage), closed after the test."""
    contexts: list[BrowserContext] = []

    def make(locale: str = "en-US", **options) -> BrowserContext:
        context = browser.new_context(base_url=server.url, locale=locale, **options)
        context.set_default_timeout(TIMEOUT_MS)
        contexts.append(context)
        return context

    yield make
    for context in contexts:
        context.close()


@pytest.fixture
def context(new_context) -> BrowserContext:
    return new_context()


@pytest.fixture
def page(context) -> Page:
    return context.new_page()


@pytest.fixture
def shopper(app, server):
    """``shopper(name="Ada", load_minor=0)``: signs a shopper up through the API (the live
    server's), their card topped up by ``load_minor`` with the sandbox's approving token."""

    def make(name: str = "Ada", load_minor: int = 0) -> Shopper:
        email = f"{uuid.uuid4().hex[:12]}@example.test"
        r = httpx.post(f"{server.url}/v1/auth/signup", timeout=10,
                       json={"email": email, "password": PASSWORD, "name": name})  # fmt: skip
        assert r.status_code == 201, r.text
        token, card = r.json()["token"], r.json()["customer"]["cards"][0]
        if load_minor:
            top_up = httpx.post(
                f"{server.url}/v1/cards/{card['id']}/top-ups",
                json={"amount": {"amount": load_minor, "currency": "USD"},
                      "payment_token": "tok_visa"},
                headers={"Authorization": f"Bearer {token}",
                         "Idempotency-Key": uuid.uuid4().hex},
                timeout=10,
            )  # fmt: skip
            assert top_up.status_code == 201, top_up.text
        number = _card_number(app, card["id"])
        return Shopper(token, card["id"], number, email, PASSWORD, name)

    return make


def _card_number(app, card_id: int) -> str:
    from app.cards.models import Card
    from app.core.db import session

    with app.app_context():
        return session().get(Card, card_id).number


@dataclass
class Till:
    """A cashier signed in at the world's till, selling through the live server's API (its
    event hub hears the sale, so an open page of the shopper's updates live)."""

    world: World
    token: str

    def sell(self, shopper: Shopper, item: str = "latte", quantity: int = 1) -> dict:
        """A sale of ``quantity`` × ``item`` paid from the shopper's card: the sale's body."""
        total = self.world.prices[item] * quantity
        r = self.world.http("POST", "/v1/sales", self.token, {
            "customer": {"card_number": shopper.number},
            "lines": [{"sku": self.world.skus[item], "quantity": quantity}],
            "tenders": [{"type": "card_balance", "amount": {"amount": total, "currency": "USD"}}],
        })  # fmt: skip
        assert r.status_code == 201, r.text
        return r.json()


@pytest.fixture
def till(world) -> Till:
    r = world.http("POST", "/v1/pos/sessions", world.device_secret,
                   {"staff_code": world.staff_code, "pin": world.pin}, key=False)  # fmt: skip
    assert r.status_code == 201, r.text
    return Till(world, r.json()["token"])

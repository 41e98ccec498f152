"""The kiosk screen in a real browser: staff pair it with a short code (a wrong or expired
one is refused, no device secret ever shows), and from then on each tag tapped at its kiosk
(through the API, as the kiosk device) shows on it within a second: the product at its
current price, the shopper's greeting, a friendly word for a tag it cannot use; "save for
later" lands in the shopper's saved list; after a while with no taps it goes back to its
attract loop. Every view passes the accessibility check, in English and in Spanish."""

from __future__ import annotations

import re
import time
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from playwright.sync_api import expect

from tests.live import ServerProcess
from tests.web.browser import TIMEOUT_MS, check_accessibility, log_in

LANDSCAPE = {"width": 1280, "height": 800}
PORTRAIT = {"width": 800, "height": 1280}


class Kiosk:
    """A kiosk device of the world's store, tapping tags through the live server's API."""

    def __init__(self, world, secret: str):
        self.world, self.secret = world, secret

    def tap(self, *, uid=None, uris=(), texts=(), unreadable=False, url=None) -> dict:
        ref = str(uuid.uuid4())
        body = {"tap_ref": ref, "tapped_at": datetime.now(UTC).isoformat(), "uid": uid,
                "uris": list(uris), "texts": list(texts), "unreadable": unreadable}  # fmt: skip
        r = httpx.post(f"{url or self.world.server.url}/v1/kiosk/taps", json=body, timeout=10,
                       headers={"Authorization": f"Bearer {self.secret}",
                                "Idempotency-Key": ref})  # fmt: skip
        assert r.status_code == 201, r.text
        return r.json()

    def product(self, sku: str, url=None) -> dict:
        return self.tap(uris=[f"https://shop.example/p/{sku}"], url=url)

    def card(self, number: str) -> dict:
        return self.tap(texts=[number])

    def pairing_code(self) -> str:
        r = self.world.http("POST", "/v1/kiosk/pairing-codes", self.secret)
        assert r.status_code == 201, r.text
        return r.json()["code"]


@pytest.fixture
def kiosk(world) -> Kiosk:
    body = {"store_id": world.store_id, "kind": "kiosk", "name": "Kiosk 1"}
    device = world.call("POST", "/v1/admin/devices", world.admin, body)
    assert device.status_code == 201, device.json
    items = [{"store_id": world.store_id, "in_stock": True}]
    for short in ("latte", "bagel"):
        r = world.call("PUT", f"/v1/products/{world.product_ids[short]}/stores", world.admin,
                       {"items": items}, key=False)  # fmt: skip
        assert r.status_code == 200, r.json
    return Kiosk(world, device.json["secret"])


def pair(page, kiosk: Kiosk) -> None:
    page.goto("/kiosk")
    page.locator("#code").fill(kiosk.pairing_code())
    page.locator("#pair-form button[type=submit]").click()
    expect(page.locator("#attract")).to_be_visible()
    expect(page.locator("body")).to_have_attribute("data-stream", "open")  # it hears taps


def paired_page(new_context, kiosk: Kiosk, locale: str = "en-US", viewport=LANDSCAPE):
    page = new_context(locale=locale, viewport=viewport).new_page()
    pair(page, kiosk)
    return page


def within_a_second(locator, text) -> float:
    """Waits for the text; how long it took (the check fails past a second)."""
    started = time.monotonic()
    expect(locator).to_have_text(text, timeout=1000)
    return time.monotonic() - started


def test_staff_pair_the_screen_with_its_code_and_a_wrong_or_expired_code_is_refused(
    new_context, kiosk, app
):
    page = new_context(viewport=LANDSCAPE).new_page()
    page.goto("/kiosk")
    expect(page.locator("h1")).to_have_text("Set up this screen")
    check_accessibility(page)

    page.locator("#code").fill("XYZ-999")
    page.locator("#pair-form button[type=submit]").click()
    expect(page.locator("#pair-form [role=alert]")).to_contain_text("did not work")
    code = kiosk.pairing_code()
    from app.core.db import session
    from app.kiosk.models import KioskPairingCode

    with app.app_context():  # the code staff were given ran out
        for row in session().query(KioskPairingCode).filter_by(used_at=None):
            row.expires_at = datetime.now(UTC) - timedelta(seconds=1)
        session().commit()
    page.locator("#code").fill(code)
    page.locator("#pair-form button[type=submit]").click()
    expect(page.locator("#pair-form [role=alert]")).to_contain_text("expired")
    assert not [c for c in page.context.cookies() if c["name"] == "omnicard_kiosk"]
    check_accessibility(page)

    page.locator("#code").fill(kiosk.pairing_code().lower())  # as staff may type it
    page.locator("#pair-form button[type=submit]").click()

    expect(page.locator("#attract h1")).to_have_text("Tap a product tag here")
    (cookie,) = [c for c in page.context.cookies() if c["name"] == "omnicard_kiosk"]
    assert cookie["httpOnly"] and cookie["sameSite"] == "Lax"
    assert kiosk.secret not in page.content()
    assert kiosk.secret not in cookie["value"]
    expect(page.locator("#showcase li").first).to_contain_text(re.compile("Latte|Bagel"))
    check_accessibility(page)


def test_a_product_tag_shows_on_the_screen_within_a_second_at_its_current_price(
    new_context, kiosk, world
):
    page = paired_page(new_context, kiosk)

    kiosk.product(world.skus["latte"])
    within_a_second(page.locator("#product-name"), world_name(world, "latte"))
    expect(page.locator("#product-price")).to_have_text("$4.45")
    expect(page.locator("#product-stock")).to_have_text("In stock here")
    expect(page.locator("#not-sold")).to_be_hidden()
    check_accessibility(page)

    r = world.call("PATCH", f"/v1/products/{world.product_ids['latte']}", world.admin,
                   {"price": {"amount": 495, "currency": "USD"}})  # fmt: skip
    assert r.status_code == 200, r.json
    kiosk.product(world.skus["latte"])
    within_a_second(page.locator("#product-price"), "$4.95")

    kiosk.tap(uris=["https://shop.example/c/test"])  # the shelf's sign
    within_a_second(page.locator("#category-name"), "test")
    expect(page.locator("#category-products li")).to_have_count(2)
    check_accessibility(page)


def world_name(world, short: str) -> str:
    return f"{short.title()} {world.skus[short].split('-')[1]}"


def test_in_spanish_and_upright_the_product_shows_its_price_as_spanish_writes_it(
    new_context, kiosk, world
):
    page = paired_page(new_context, kiosk, locale="es-ES", viewport=PORTRAIT)
    expect(page.locator("#attract h1")).to_have_text("Acerca aquí la etiqueta de un producto")
    check_accessibility(page)

    kiosk.product(world.skus["bagel"])

    within_a_second(page.locator("#product-name"), world_name(world, "bagel"))
    expect(page.locator("#product-price")).to_have_text(re.compile(r"^3,00\s*US\$$"))
    expect(page.locator("#product-stock")).to_have_text("Disponible aquí")
    assert page.evaluate("document.documentElement.scrollWidth") <= PORTRAIT["width"]
    check_accessibility(page)


def test_a_loyalty_card_greets_the_shopper_and_save_for_later_lands_on_their_website(
    new_context, kiosk, world
):
    ada = world.shopper(name="Ada Lovelace")
    page = paired_page(new_context, kiosk)
    kiosk.product(world.skus["latte"])
    expect(page.locator("#product-name")).to_have_text(world_name(world, "latte"))
    page.locator("#save").click()  # nobody has joined this visit yet
    expect(page.locator("#save-status")).to_have_text(
        "Tap your loyalty card on the reader to save this."
    )

    kiosk.card(ada.number)

    within_a_second(page.locator("#hello-title"), "Hello, Ada!")
    expect(page.locator("#hello-stars")).to_have_text(re.compile(r"^\d[\d,]* Stars$"))
    expect(page.locator("#greeting")).to_contain_text("Hi Ada")
    assert "Lovelace" not in page.locator("body").inner_text()
    assert ada.email not in page.content() and ada.number not in page.content()
    check_accessibility(page)

    kiosk.product(world.skus["latte"])
    expect(page.locator("#product-name")).to_have_text(world_name(world, "latte"))
    page.locator("#save").click()
    expect(page.locator("#save-status")).to_contain_text("Saved!")
    check_accessibility(page)

    saved = world.http("GET", "/v1/me/saved", ada.token)
    assert saved.status_code == 200, saved.text
    items = saved.json()["items"] if isinstance(saved.json(), dict) else saved.json()
    assert [i["product"]["id"] for i in items] == [world.product_ids["latte"]]
    home = log_in(new_context(viewport=LANDSCAPE), ada.email, ada.password)
    expect(home.locator("#saved .saved-item")).to_have_count(1)
    expect(home.locator("#saved .saved-item")).to_contain_text(world_name(world, "latte"))


def test_tags_the_screen_cannot_use_each_get_a_clear_screen(new_context, kiosk, world, till):
    ada = world.shopper(name="Ada")
    page = paired_page(new_context, kiosk)

    kiosk.tap(uid="DEADBEEF00")
    within_a_second(page.locator("#notice-title"), "We don't know this tag")
    check_accessibility(page)

    kiosk.product(world.skus["mug"])  # sold in no store of this kiosk's
    within_a_second(page.locator("#product-name"), world_name(world, "mug"))
    expect(page.locator("#not-sold")).to_have_text("Not sold in this store")
    expect(page.locator("#product-stock")).to_have_text("Not sold here")
    check_accessibility(page)

    kiosk.tap(unreadable=True)
    within_a_second(page.locator("#notice-title"), "We couldn't read that tag")

    r = world.call("POST", f"/v1/cards/{ada.card_id}/report-lost", ada.token)
    assert r.status_code in (200, 201), r.json
    kiosk.card(ada.number)  # the lost card, frozen
    within_a_second(page.locator("#notice-title"), "This card can't be used right now")
    check_accessibility(page)

    kiosk.card(sold_gift_card(world, till))  # a gift card nobody has registered
    within_a_second(page.locator("#notice-title"), "This card isn't registered yet")
    expect(page.locator("#notice-text")).to_contain_text("Register it")
    check_accessibility(page)


def sold_gift_card(world, till) -> str:
    """A gift card from a new batch, sold at the till for cash: active, with no shopper."""
    batch = world.call("POST", "/v1/admin/card-batches", world.admin, {"size": 1}, key=False)
    assert batch.status_code == 201, batch.json
    number = batch.json["cards"][0]["number"]
    r = world.http("POST", "/v1/pos/gift-cards", till.token, {
        "card": {"card_number": number}, "amount": {"amount": 1000, "currency": "USD"},
        "tender": "cash"})  # fmt: skip
    assert r.status_code == 201, r.text
    return number


def test_in_spanish_a_tag_it_does_not_know_is_told_in_spanish(new_context, kiosk):
    page = paired_page(new_context, kiosk, locale="es-ES")

    kiosk.tap(uid="DEADBEEF01")

    within_a_second(page.locator("#notice-title"), "No conocemos esta etiqueta")
    check_accessibility(page)


def test_after_a_while_with_no_taps_the_screen_returns_to_its_attract_loop(
    new_context, kiosk, world, app
):
    page = new_context(viewport=LANDSCAPE).new_page()
    page.clock.install()
    pair(page, kiosk)
    lead = page.locator("#showcase li").first
    first = lead.locator("h3").inner_text()
    page.clock.run_for(6_000)  # the showcase turns
    expect(lead.locator("h3")).not_to_have_text(first)
    kiosk.product(world.skus["latte"])
    expect(page.locator("#product")).to_be_visible()
    idle_s = app.config["KIOSK_SESSION_IDLE_S"]

    page.clock.run_for((idle_s - 5) * 1000)
    expect(page.locator("#product")).to_be_visible()  # not yet
    page.clock.run_for(7_000)

    expect(page.locator("#attract")).to_be_visible()
    expect(page.locator("#product")).to_be_hidden()
    check_accessibility(page)


def test_the_view_stays_while_the_stream_reconnects_and_the_next_tap_still_shows(
    browser, database_url, kiosk, world
):
    away = ServerProcess(database_url)  # a server of this test's own, to stop and start
    away.start()
    context = browser.new_context(base_url=away.url, viewport=LANDSCAPE)
    context.set_default_timeout(TIMEOUT_MS)
    try:
        page = context.new_page()
        pair(page, kiosk)
        kiosk.product(world.skus["latte"], url=away.url)
        expect(page.locator("#product-name")).to_have_text(world_name(world, "latte"))
        page.evaluate("window.notReloaded = true")

        away.stop()
        expect(page.locator("body")).to_have_class(re.compile("k-offline"))
        expect(page.locator("#product-name")).to_have_text(world_name(world, "latte"))
        away.start()  # the same port
        expect(page.locator("body")).to_have_attribute("data-stream", "open", timeout=20_000)
        expect(page.locator("body")).not_to_have_class(re.compile("k-offline"))

        kiosk.product(world.skus["bagel"], url=away.url)
        expect(page.locator("#product-name")).to_have_text(world_name(world, "bagel"))
        assert page.evaluate("window.notReloaded") is True
    finally:
        context.close()
        away.stop()


def test_switching_language_keeps_what_the_screen_shows(new_context, kiosk, world):
    page = paired_page(new_context, kiosk)
    kiosk.product(world.skus["latte"])
    expect(page.locator("#product-stock")).to_have_text("In stock here")

    page.get_by_role("link", name="Español").click()

    expect(page.locator("html")).to_have_attribute("lang", "es")
    expect(page.locator("#product-name")).to_have_text(world_name(world, "latte"))
    expect(page.locator("#product-stock")).to_have_text("Disponible aquí")
    expect(page.locator("#save")).to_have_text("Guardar para después")
    check_accessibility(page)


def test_a_tag_tapped_on_the_kiosks_nfc_reader_reaches_its_screen_with_the_price(
    new_context, kiosk, world, tmp_path
):
    """The whole path: a product tag played on nfcpy's udp frontend, read by the kiosk daemon
    (`python -m kiosk`), reported to the API, and shown on the paired screen in Chromium."""
    import signal
    import subprocess
    import sys
    import threading

    from tests.conftest import ROOT
    from tests.kiosk_client.helpers import WAIT_S, free_udp_path, run_kiosk, wait_until
    from tests.kiosk_client.test_live import write_config

    page = paired_page(new_context, kiosk)
    config = write_config(tmp_path / "kiosk.toml", world.server.url, kiosk.secret,
                          free_udp_path())  # fmt: skip
    daemon = subprocess.Popen(
        [sys.executable, "-m", "kiosk", "--config", str(config)], cwd=ROOT,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    log: list[str] = []
    reading = threading.Thread(target=lambda: log.extend(daemon.stderr), daemon=True)
    reading.start()
    try:
        wait_until(lambda: any(": ready" in line for line in log), timeout_s=30,
                   what="the daemon's reader")  # fmt: skip
        code, played, _ = run_kiosk("sim", "tap", world.skus["latte"], "--timeout", str(WAIT_S),
                                    config=config)  # fmt: skip
        assert code == 0 and played["kind"] == "product"
        expect(page.locator("#product-name")).to_have_text(world_name(world, "latte"))
        expect(page.locator("#product-price")).to_have_text("$4.45")
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(timeout=15)
        reading.join(5)
        daemon.stderr.close()

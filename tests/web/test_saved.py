"""Saved for later on the home page: a product saved at a kiosk appears live, without a
reload, and the shopper can take it off; the section passes the accessibility check in
English and Spanish, at a phone's width and a desktop's."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from playwright.sync_api import expect

from app.core.db import session
from app.core.settings import settings
from app.kiosk.services import pair_screen
from tests.web.browser import check_accessibility, log_in

PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 900}


class Kiosk:
    """A kiosk of the world's store and its paired screen, acting through the live server."""

    def __init__(self, app, world):
        self.world = world
        device = {"store_id": world.store_id, "kind": "kiosk", "name": "Kiosk"}
        r = world.http("POST", "/v1/admin/devices", world.admin, device, key=False)
        assert r.status_code == 201, r.text
        self.secret = r.json()["secret"]
        stocked = world.http("PUT", f"/v1/products/{world.product_ids['latte']}/stores",
                             world.admin, {"items": [{"store_id": world.store_id,
                                                      "in_stock": True}]}, key=False)  # fmt: skip
        assert stocked.status_code == 200, stocked.text
        code = world.http("POST", "/v1/kiosk/pairing-codes", self.secret, key=False).json()
        with app.app_context():
            self.screen = pair_screen(session(), code["code"], settings().kiosk_screen_token_ttl_s)
            session().commit()

    def tap(self, **fields) -> dict:
        body = {"tap_ref": str(uuid.uuid4()), "tapped_at": datetime.now(UTC).isoformat(),
                "uid": None, "uris": [], "texts": [], "unreadable": False} | fields  # fmt: skip
        r = self.world.http("POST", "/v1/kiosk/taps", self.secret, body)
        assert r.status_code == 201, r.text
        return r.json()

    def save(self, session_id: int, product_id: int) -> None:
        body = {"session_id": session_id, "product_id": product_id}
        r = self.world.http("POST", "/v1/kiosk/saved", self.screen, body, key=False)
        assert r.status_code == 201, r.text


@pytest.mark.parametrize(("locale", "viewport", "title"), [
    ("en-US", PHONE, "Saved for later"), ("es-ES", DESKTOP, "Guardado para después")])  # fmt: skip
def test_a_product_saved_at_a_kiosk_appears_on_the_home_page_live_and_can_be_removed(
    app, world, shopper, new_context, locale, viewport, title
):
    kiosk = Kiosk(app, world)
    ada = shopper()
    page = log_in(new_context(locale=locale, viewport=viewport), ada.email, ada.password)
    expect(page.locator("#saved-title")).to_have_text(title)
    expect(page.locator("#saved-empty")).to_be_visible()
    page.evaluate("window.notReloaded = true")

    session_id = kiosk.tap(texts=[ada.number])["tap"]["session_id"]
    kiosk.tap(uris=[f"https://shop.example/p/{world.skus['latte']}"])
    kiosk.save(session_id, world.product_ids["latte"])

    item = page.locator("#saved .saved-item")
    expect(item).to_have_count(1)
    expect(item.locator(".card-name")).to_have_text(f"Latte {world.skus['latte'][-6:]}")
    expect(item.locator(".card-balance")).to_contain_text("4,45" if locale == "es-ES" else "$4.45")
    expect(page.locator("#saved-empty")).to_be_hidden()
    assert page.evaluate("window.notReloaded") is True
    check_accessibility(page)

    item.get_by_role("button").click()
    expect(page.locator("#saved .saved-item")).to_have_count(0)
    expect(page.locator("#saved-empty")).to_be_visible()
    mine = world.http("GET", "/v1/me/saved", ada.token).json()
    assert mine["items"] == []

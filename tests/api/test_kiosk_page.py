"""The kiosk screen's page as a client meets it: pairing needs the page's own CSRF token, sets
the screen's login in an HttpOnly, SameSite=Lax cookie (Secure outside development) and never
shows it; a paired page carries the screen's CSRF token and its kiosk's store's products."""

from __future__ import annotations

import re

import pytest

from app.auth import browser
from app.catalog.services import set_in_stock
from app.kiosk.services import PAIRING_MAX_FAILURES


def csrf_of(page_html: str) -> str:
    return re.search(r'<meta name="csrf-token" content="([^"]+)">', page_html).group(1)


@pytest.fixture
def kiosk(world, db):
    store = world.store(name="Harbour St")
    _device, secret = world.device(store, "kiosk")
    latte = world.product(sku="LATTE", price=450, name="Caffe Latte", category="coffee")
    hidden = world.product(sku="BEANS", price=1200, name="House Beans", category="coffee")
    set_in_stock(db, latte, store.id, True)
    set_in_stock(db, hidden, world.store(name="Hill Rd").id, True)
    return secret


def pairing_code(api, secret: str) -> str:
    r = api.post("/v1/kiosk/pairing-codes", token=secret, key=None)
    assert r.status_code == 201, r.json
    return r.json["code"]


def test_pairing_needs_the_pages_token_and_sets_the_screens_login_in_an_httponly_cookie(api, kiosk):
    code = pairing_code(api, kiosk)
    refused = api.post("/kiosk/pair", json={"code": code}, key=None)
    assert refused.status_code == 403 and refused.json["error"]["code"] == "csrf_failed"
    assert api.client.get_cookie(browser.KIOSK_COOKIE) is None

    page = api.client.get("/kiosk")
    assert page.status_code == 200 and 'id="pair-form"' in page.text
    r = api.post("/kiosk/pair", json={"code": code},
                 headers={"X-CSRF-Token": csrf_of(page.text)}, key=None)  # fmt: skip

    assert r.status_code == 201, r.json
    cookie = api.client.get_cookie(browser.KIOSK_COOKIE)
    assert cookie.http_only and cookie.same_site == "Lax" and not cookie.secure
    paired = api.client.get("/kiosk")
    assert 'id="attract"' in paired.text and 'id="pair-form"' not in paired.text
    assert csrf_of(paired.text) == browser.csrf_for_session(cookie.value)
    assert cookie.value not in paired.text and kiosk not in paired.text
    assert "Caffe Latte" in paired.text and "House Beans" not in paired.text  # this store's


def test_a_wrong_code_is_refused_and_sets_nothing(api, kiosk):
    page = api.client.get("/kiosk")
    r = api.post("/kiosk/pair", json={"code": "ABC-234"},
                 headers={"X-CSRF-Token": csrf_of(page.text)}, key=None)  # fmt: skip
    assert r.status_code == 422 and r.json["error"]["code"] == "pairing_code_invalid"
    assert api.client.get_cookie(browser.KIOSK_COOKIE) is None
    empty = api.post("/kiosk/pair", json={"code": ""},
                     headers={"X-CSRF-Token": csrf_of(page.text)}, key=None)  # fmt: skip
    assert empty.status_code == 422 and empty.json["error"]["code"] == "validation_error"


def test_outside_development_the_screens_cookie_is_secure(app, api, kiosk):
    code = pairing_code(api, kiosk)
    app.config["SECURE_COOKIES"] = True
    try:
        page = api.client.get("/kiosk", base_url="https://shop.example")
        r = api.client.post("/kiosk/pair", json={"code": code}, base_url="https://shop.example",
                            headers={"X-CSRF-Token": csrf_of(page.text)})  # fmt: skip
    finally:
        app.config["SECURE_COOKIES"] = False
    assert r.status_code == 201, r.json
    (set_cookie,) = [h for h in r.headers.getlist("Set-Cookie") if h.startswith("omnicard_kiosk=")]
    assert "Secure" in set_cookie and "HttpOnly" in set_cookie and "SameSite=Lax" in set_cookie


def test_after_many_wrong_codes_even_the_right_one_waits(api, kiosk):
    token = csrf_of(api.client.get("/kiosk").text)
    for _ in range(PAIRING_MAX_FAILURES):
        r = api.post("/kiosk/pair", json={"code": "ABC-234"},
                     headers={"X-CSRF-Token": token}, key=None)  # fmt: skip
        assert r.status_code == 422, r.json
    r = api.post("/kiosk/pair", json={"code": pairing_code(api, kiosk)},
                 headers={"X-CSRF-Token": token}, key=None)  # fmt: skip
    assert r.status_code == 429 and r.json["error"]["code"] == "too_many_attempts"
    assert api.client.get_cookie(browser.KIOSK_COOKIE) is None

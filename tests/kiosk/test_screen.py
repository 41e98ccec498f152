"""A kiosk's screen: paired once with a one-use code, then signed in by its own cookie, with
which it may follow its kiosk's events and save products for the session's shopper, and
nothing else."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select, update

from app.auth import browser
from app.auth.models import AuthToken
from app.core.settings import settings
from app.core.types import utcnow
from app.kiosk import services as kiosk
from app.kiosk.errors import PairingCodeInvalid
from app.kiosk.models import KioskPairingCode

PAIRING_CODE = r"^[A-HJKMNP-Z2-9]{3}-[A-HJKMNP-Z2-9]{3}$"


def pairing_code(api, shop) -> dict:
    response = api.post("/v1/kiosk/pairing-codes", token=shop.secret, key=None)
    assert response.status_code == 201, response.json
    return response.json


def pair(app, db, code: str) -> str:
    with app.app_context():
        return kiosk.pair_screen(db, code, settings().kiosk_screen_token_ttl_s)


@pytest.fixture
def screen(api, app, db, shop) -> str:
    """The kiosk's screen, paired: its login token, also in the client's kiosk cookie."""
    token = pair(app, db, pairing_code(api, shop)["code"])
    api.client.set_cookie(browser.KIOSK_COOKIE, token)
    return token


def test_a_kiosk_gets_a_short_code_of_unambiguous_letters_for_ten_minutes(api, shop):
    import re

    answer = pairing_code(api, shop)
    assert re.fullmatch(PAIRING_CODE, answer["code"])
    assert answer["expires_at"] > (utcnow() + timedelta(minutes=9)).isoformat()


def test_a_pairing_code_pairs_one_screen_once(api, app, db, shop):
    code = pairing_code(api, shop)["code"]
    token = pair(app, db, code.lower().replace("-", " "))
    row = db.scalar(select(AuthToken).where(AuthToken.kind == "kiosk_screen"))
    assert row.device_id == shop.kiosk.id
    assert token.startswith("oct_")
    with pytest.raises(PairingCodeInvalid):
        pair(app, db, code)


def test_an_expired_or_unknown_pairing_code_pairs_nothing(api, app, db, shop):
    code = pairing_code(api, shop)["code"]
    db.execute(update(KioskPairingCode).values(expires_at=utcnow() - timedelta(seconds=1)))
    with pytest.raises(PairingCodeInvalid):
        pair(app, db, code)
    with pytest.raises(PairingCodeInvalid):
        pair(app, db, "AAA-AAA")
    assert db.scalar(select(AuthToken).where(AuthToken.kind == "kiosk_screen")) is None


def test_staff_at_a_desk_get_a_code_from_the_command_line(app, db, shop):
    result = app.test_cli_runner().invoke(args=["kiosk", "pairing-code", str(shop.kiosk.id)])
    assert result.exit_code == 0, result.output
    code = result.output.split()[0]
    assert pair(app, db, code)
    refused = app.test_cli_runner().invoke(args=["kiosk", "pairing-code", "999999"])
    assert refused.exit_code != 0


def test_the_screen_reads_its_kiosk_stream_with_its_cookie(api, shop, screen, app):
    from app.auth.principal import current_principal

    with app.test_request_context(headers={"Cookie": f"{browser.KIOSK_COOKIE}={screen}"}):
        p = current_principal()
    assert (p.kind, p.device_id, p.store_id) == ("kiosk_screen", shop.kiosk.id, shop.store.id)
    assert p.channel == "kiosk"


def save(api, body, csrf=None, headers=None):
    headers = dict(headers or {}) | ({browser.CSRF_HEADER: csrf} if csrf else {})
    return api.post("/v1/kiosk/saved", json=body, headers=headers, key=None)


def test_save_for_later_needs_the_screens_csrf_token(api, shop, screen, tap):
    tap.card(shop.card.number)
    session_id = tap.product("LATTE")["tap"]["session_id"]
    body = {"session_id": session_id, "product_id": shop.latte.id}
    assert save(api, body).json["error"]["code"] == "csrf_failed"
    cross = save(api, body, browser.csrf_for_session(screen),
                 headers={"Sec-Fetch-Site": "cross-site"})  # fmt: skip
    assert cross.status_code == 403
    ok = save(api, body, browser.csrf_for_session(screen))
    assert ok.status_code == 201, ok.json


def test_a_saved_product_lands_in_the_shoppers_saved_list(api, shop, screen, tap, db):
    tap.card(shop.card.number)
    session_id = tap.product("LATTE")["tap"]["session_id"]
    csrf = browser.csrf_for_session(screen)
    saved = save(api, {"session_id": session_id, "product_id": shop.latte.id}, csrf)
    assert saved.status_code == 201, saved.json
    assert saved.json["product"]["sku"] == "LATTE"
    api.client.delete_cookie(browser.KIOSK_COOKIE)
    mine = api.get("/v1/me/saved", token=shop.shopper)
    assert mine.status_code == 200
    [item] = mine.json["items"]
    assert item["product"]["sku"] == "LATTE"
    assert item["product"]["price"] == {"amount": 450, "currency": "USD"}
    assert item["store"] == {"id": shop.store.id, "name": "Harbour St"}


def test_saving_again_moves_a_product_up_and_keeps_one_row(api, shop, screen, tap):
    tap.card(shop.card.number)
    session_id = tap.product("LATTE")["tap"]["session_id"]
    csrf = browser.csrf_for_session(screen)
    for product in (shop.latte, shop.muffin, shop.latte):
        assert (
            save(api, {"session_id": session_id, "product_id": product.id}, csrf).status_code == 201
        )
    api.client.delete_cookie(browser.KIOSK_COOKIE)
    items = api.get("/v1/me/saved", token=shop.shopper).json["items"]
    assert [i["product"]["sku"] for i in items] == ["LATTE", "MUFFIN"]


def test_save_for_later_needs_a_shopper_in_the_session(api, shop, screen, tap):
    session_id = tap.product("LATTE")["tap"]["session_id"]
    refused = save(api, {"session_id": session_id, "product_id": shop.latte.id},
                   browser.csrf_for_session(screen))  # fmt: skip
    assert refused.status_code == 409
    assert refused.json["error"]["code"] == "no_shopper"


def test_save_for_later_in_a_session_that_is_over_is_refused(api, shop, screen, tap, db):
    from app.kiosk.models import KioskTap

    tap.card(shop.card.number)
    session_id = tap.product("LATTE")["tap"]["session_id"]
    db.execute(update(KioskTap).values(received_at=utcnow() - timedelta(seconds=91)))
    refused = save(api, {"session_id": session_id, "product_id": shop.latte.id},
                   browser.csrf_for_session(screen))  # fmt: skip
    assert (refused.status_code, refused.json["error"]["code"]) == (409, "session_over")


def test_a_screen_cannot_save_into_another_kiosks_session(api, app, db, shop, world, tap):
    other_kiosk, other_secret = world.device(shop.store, "kiosk")
    code = api.post("/v1/kiosk/pairing-codes", token=other_secret, key=None).json["code"]
    other_screen = pair(app, db, code)
    tap.card(shop.card.number)
    session_id = tap.product("LATTE")["tap"]["session_id"]
    refused = api.post("/v1/kiosk/saved", token=other_screen, key=None,
                       json={"session_id": session_id, "product_id": shop.latte.id})  # fmt: skip
    assert (refused.status_code, refused.json["error"]["code"]) == (404, "kiosk_session_not_found")


def test_a_shopper_takes_a_product_off_the_saved_list(api, shop, screen, tap):
    tap.card(shop.card.number)
    session_id = tap.product("LATTE")["tap"]["session_id"]
    save(api, {"session_id": session_id, "product_id": shop.latte.id},
         browser.csrf_for_session(screen))  # fmt: skip
    api.client.delete_cookie(browser.KIOSK_COOKIE)
    gone = api.delete(f"/v1/me/saved/{shop.latte.id}", token=shop.shopper)
    assert gone.status_code == 204
    assert api.get("/v1/me/saved", token=shop.shopper).json["items"] == []
    again = api.delete(f"/v1/me/saved/{shop.latte.id}", token=shop.shopper)
    assert (again.status_code, again.json["error"]["code"]) == (404, "not_saved")


#: What a paired screen may call, and nothing more.
SCREEN_MAY = {("POST", "/v1/kiosk/saved"), ("GET", "/v1/events")}


def test_a_screens_login_opens_nothing_but_its_events_and_save_for_later(api, client, screen):
    spec = client.get("/openapi.json").json
    refused = 0
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            description = operation.get("description", "") if isinstance(operation, dict) else ""
            if "Who may call: " not in description:
                continue
            allowed = "kiosk_screen" in description.rsplit("Who may call: ", 1)[1]
            assert allowed == ((method.upper(), path) in SCREEN_MAY), (method, path)
            if allowed:
                continue
            url = "/".join("1" if p.endswith("_id}") else p for p in path.split("/"))
            csrf = {browser.CSRF_HEADER: browser.csrf_for_session(screen)}
            for token in (screen, None):  # the Bearer header, and the cookie
                response = api.call(method.upper(), url, token=token, json={}, headers=csrf)
                assert response.status_code == 403, (method, path, response.data[:200])
                assert response.json["error"]["details"]["caller"] == "kiosk_screen"
                refused += 1
    assert refused > 80


def test_a_paired_screen_stays_the_screen_even_with_a_shoppers_cookie_beside(api, shop, screen):
    api.client.set_cookie(browser.SESSION_COOKIE, shop.shopper)
    assert api.get("/v1/me").status_code == 403
    assert api.get("/v1/me/saved").status_code == 403


def test_a_retired_kiosks_screen_is_signed_out(api, shop, screen, db):
    shop.kiosk.active = False
    db.flush()
    assert api.get("/v1/me").status_code == 401


def test_wrong_pairing_codes_from_one_address_are_refused_after_a_few(api, app, db, shop):
    from app.auth.errors import TooManyAttempts

    code = pairing_code(api, shop)["code"]
    with app.app_context():
        ttl_s = settings().kiosk_screen_token_ttl_s
        for _ in range(kiosk.PAIRING_MAX_FAILURES):
            with pytest.raises(PairingCodeInvalid):
                kiosk.pair_screen(db, "AAA-AAA", ttl_s, client_ip="203.0.113.9")
        with pytest.raises(TooManyAttempts):
            kiosk.pair_screen(db, code, ttl_s, client_ip="203.0.113.9")
        assert kiosk.pair_screen(db, code, ttl_s, client_ip="198.51.100.7")  # another address

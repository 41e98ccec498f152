"""The kiosk's events through a real server: each tap's screen reaches the kiosk's stream and
its paired screen's, never a shopper's; a product saved for later reaches the shopper's."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from app.core.db import session
from app.core.settings import settings
from app.kiosk.services import pair_screen

pytestmark = pytest.mark.concurrent


def tap_body(**fields) -> dict:
    return {"tap_ref": str(uuid.uuid4()), "tapped_at": datetime.now(UTC).isoformat(),
            "uid": None, "uris": [], "texts": [], "unreadable": False} | fields  # fmt: skip


def test_a_taps_screen_reaches_the_kiosk_and_its_screen_and_saving_reaches_the_shopper(live):
    admin = live.admin_token()
    store, _till, _cashier = live.till(admin)
    device = live.call(
        "POST",
        "/v1/admin/devices",
        admin,
        {"store_id": store["id"], "kind": "kiosk", "name": "Kiosk"},
        key=False,
    )
    assert device.status_code == 201, device.json
    kiosk = device.json["secret"]
    live.product(admin, "LATTE", 450)
    product_id = live.call("GET", "/v1/products", admin).json["items"][0]["id"]
    stocked = live.call(
        "PUT",
        f"/v1/products/{product_id}/stores",
        admin,
        {"items": [{"store_id": store["id"], "in_stock": True}]},
        key=False,
    )
    assert stocked.status_code == 200, stocked.json
    shopper, me = live.shopper(name="Ada")
    number = live.card_number(me["cards"][0]["id"])
    code = live.call("POST", "/v1/kiosk/pairing-codes", kiosk, key=False).json["code"]
    with live.app.app_context():
        screen = pair_screen(session(), code, settings().kiosk_screen_token_ttl_s)
        session().commit()

    kiosk_stream, screen_stream = live.stream(kiosk), live.stream(screen)
    shopper_stream = live.stream(shopper)
    assert screen_stream.status == 200

    def tap(**fields) -> dict:
        body = tap_body(**fields)
        r = live.client.post("/v1/kiosk/taps", json=body, headers={
            "Authorization": f"Bearer {kiosk}", "Idempotency-Key": body["tap_ref"]})  # fmt: skip
        assert r.status_code == 201, r.json
        return r.json

    answer = tap(uris=["https://shop.example/p/LATTE"])
    for stream in (kiosk_stream, screen_stream):
        event = stream.until(lambda e: e.type == "kiosk.screen")[-1]
        assert event.data["data"] == answer["screen"]
        assert event.data["data"]["product"]["price"] == {"amount": 450, "currency": "USD"}

    joined = tap(texts=[number])
    greeting = screen_stream.until(lambda e: e.type == "kiosk.screen")[-1].data["data"]
    assert greeting["shopper"] == {"first_name": "Ada", "stars": 0}
    saved = live.client.post("/v1/kiosk/saved", headers={"Authorization": f"Bearer {screen}"},
                             json={"session_id": joined["tap"]["session_id"],
                                   "product_id": product_id})  # fmt: skip
    assert saved.status_code == 201, saved.json
    seen = shopper_stream.until(lambda e: e.type == "saved.added")
    assert seen[-1].data["data"]["product_id"] == product_id
    assert "kiosk.screen" not in [e.type for e in seen]

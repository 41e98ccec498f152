"""Admins can switch a device off: a lost till or kiosk stops working at once."""


def test_deactivated_device_and_its_cashier_sessions_stop_working(world, api):
    store, device, cashier_token = world.till()
    admin = world.admin_token()
    assert api.get("/v1/sales/987654", token=cashier_token).status_code == 404  # works now

    off = api.post(f"/v1/admin/devices/{device.id}/deactivate", token=admin, key=None)
    assert off.status_code == 200
    assert off.json["active"] is False
    product = world.product(sku="TEA", price=300)
    sale = api.post("/v1/sales", token=cashier_token, json={
        "lines": [{"sku": product.sku, "quantity": 1}],
        "tenders": [{"type": "cash", "amount": {"amount": 300, "currency": "USD"}}],
    })  # fmt: skip
    assert sale.status_code == 401
    assert sale.json["error"]["code"] == "unauthenticated"


def test_only_admins_deactivate_devices_and_unknown_ones_are_404(world, api):
    store, device, cashier_token = world.till()
    shopper, _ = world.shopper()
    for token, status in ((None, 401), (shopper, 403), (cashier_token, 403)):
        response = api.post(f"/v1/admin/devices/{device.id}/deactivate", token=token, key=None)
        assert response.status_code == status
    # The device still works: its cashier's session is still good.
    assert api.get("/v1/sales/987654", token=cashier_token).status_code == 404
    missing = api.post("/v1/admin/devices/987654/deactivate", token=world.admin_token(), key=None)
    assert missing.status_code == 404
    assert missing.json["error"]["code"] == "device_not_found"


def test_too_many_attempts_says_when_to_retry(world, api, app, monkeypatch):
    monkeypatch.setitem(app.config, "LOGIN_MAX_FAILURES", 1)
    bad = {"email": "nobody@example.test", "password": "wrong password"}
    assert api.post("/v1/auth/login", json=bad, key=None).status_code == 401
    limited = api.post("/v1/auth/login", json=bad, key=None)
    assert limited.status_code == 429
    assert limited.headers["Retry-After"] == str(limited.json["error"]["details"]["retry_after_s"])


def test_deactivated_device_secret_no_longer_authenticates(world, api):
    store = world.store()
    device, secret = world.device(store, "pos")
    cashier = world.staff("cashier", store=store, pin="1357")
    sign_in = {"staff_code": cashier.staff_code, "pin": "1357"}
    assert api.post("/v1/pos/sessions", token=secret, json=sign_in, key=None).status_code == 201
    api.post(f"/v1/admin/devices/{device.id}/deactivate", token=world.admin_token(), key=None)
    refused = api.post("/v1/pos/sessions", token=secret, json=sign_in, key=None)
    assert refused.status_code == 401

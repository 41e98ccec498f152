"""Bad input is answered with a 4xx in the one error shape, never a 500, and changes nothing:
JSON nested too deep, bodies and lists too long, text a database cannot hold or a column
cannot fit, ids past 64 bits. (tests/api/test_hostile_input.py throws the same at every
endpoint; these pin each case down where it was found.)"""

from __future__ import annotations

import json

import pytest
from sqlalchemy import func, select

from app.core.limits import MAX_JSON_DEPTH, json_depth
from app.customers.models import Customer
from app.ledger.models import Account
from app.payments.models import TopUp
from app.sales.models import Sale
from app.stores.models import Store


def count(db, model) -> int:
    return db.scalar(select(func.count()).select_from(model))


def assert_error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.get_data(as_text=True)[:500]
    body = response.json
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "details"}
    assert body["error"]["code"] == code, body
    return body["error"]


def nested(depth: int) -> str:
    return '{"email": ' + "[" * depth + "]" * depth + "}"


@pytest.fixture
def till(world):
    return world.till()


@pytest.fixture
def latte(world):
    return world.product(sku="LATTE", price=450)


def sale(sku="LATTE", quantity=1, amount=450):
    return {
        "lines": [{"sku": sku, "quantity": quantity}],
        "tenders": [{"type": "cash", "amount": {"amount": amount, "currency": "USD"}}],
    }


# -- JSON nested too deep ----------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/v1/auth/signup", "/v1/auth/login"])
def test_json_nested_5000_deep_is_a_400_before_anyone_logs_in(api, db, path):
    before = count(db, Customer)
    response = api.post(
        path, data=nested(5_000), headers={"Content-Type": "application/json"}, key=None
    )
    error = assert_error(response, 400, "json_too_deep")
    assert error["details"] == {"max_depth": MAX_JSON_DEPTH}
    assert count(db, Customer) == before


def test_json_nested_5000_deep_is_a_400_on_a_value_moving_request(api, db, till, latte):
    # The idempotency check reads the body too (request.get_json), before the schema does.
    _, _, cashier = till
    before = count(db, Sale)
    response = api.post(
        "/v1/sales",
        token=cashier,
        data='{"lines": ' + "[" * 5_000 + "]" * 5_000 + "}",
        headers={"Content-Type": "application/json"},
    )
    assert_error(response, 400, "json_too_deep")
    assert count(db, Sale) == before


@pytest.mark.parametrize("digits", [4_301, 101])
def test_a_number_of_too_many_digits_is_a_400_not_a_crash(api, db, till, latte, digits):
    # Python reads no integer of more than 4,300 digits: a ValueError, not a JSON error.
    _, _, cashier = till
    body = json.dumps(sale()).replace('"quantity": 1', '"quantity": ' + "7" * digits)
    response = api.post(
        "/v1/sales", token=cashier, data=body, headers={"Content-Type": "application/json"}
    )
    error = assert_error(response, 400, "json_number_too_long")
    assert error["details"] == {"max_digits": 100}
    assert count(db, Sale) == 0


def test_a_long_run_of_digits_in_a_string_is_only_text(api, world):
    admin = world.admin_token()
    response = api.post(
        "/v1/admin/stores",
        token=admin,
        json={"code": "digits", "name": "Digits", "address": "7" * 400},
        key=None,
    )
    assert response.status_code == 201, response.json


def test_json_at_the_depth_limit_is_read_and_one_more_level_is_not(api):
    within = api.post(
        "/v1/auth/login",
        data=nested(MAX_JSON_DEPTH - 1),
        headers={"Content-Type": "application/json"},
        key=None,
    )
    assert_error(within, 422, "validation_error")
    beyond = api.post(
        "/v1/auth/login",
        data=nested(MAX_JSON_DEPTH),
        headers={"Content-Type": "application/json"},
        key=None,
    )
    assert_error(beyond, 400, "json_too_deep")


@pytest.mark.parametrize(
    "body, depth",
    [
        (b"{}", 1),
        (b'{"a": [1, {"b": []}]}', 4),
        (b'{"a": "[[[[{{{{"}', 1),
        (b'{"a": "\\"[[[[", "b": ["\\\\", "]]]"]}', 2),
        (b"[[[[[", 5),
        (b"42", 0),
    ],
)
def test_json_depth_counts_brackets_outside_strings(body, depth):
    assert json_depth(body) == depth


# -- text a database cannot hold ---------------------------------------------------------------


def test_a_nul_in_the_login_email_is_a_422(api):
    response = api.post(
        "/v1/auth/login", json={"email": "ada\x00@example.com", "password": "x" * 12}, key=None
    )
    error = assert_error(response, 422, "validation_error")
    assert "email" in error["details"]["fields"]["json"]


def test_a_nul_in_a_sales_sku_is_a_422_and_sells_nothing(api, db, till, latte):
    _, _, cashier = till
    before = count(db, Sale)
    response = api.post("/v1/sales", token=cashier, json=sale(sku="LATTE\x00"))
    assert_error(response, 422, "validation_error")
    assert count(db, Sale) == before


def test_a_nul_in_the_category_of_the_catalog_query_is_a_422(api, latte):
    response = api.get("/v1/products?category=coffee%00")
    error = assert_error(response, 422, "validation_error")
    assert "category" in error["details"]["fields"]["query"]


def test_a_lone_surrogate_in_a_name_is_a_422(api, db):
    before = count(db, Customer)
    response = api.post(
        "/v1/auth/signup",
        data='{"email": "ada@example.com", "password": "a long password", "name": "Ada \\ud800"}',
        headers={"Content-Type": "application/json"},
        key=None,
    )
    assert_error(response, 422, "validation_error")
    assert count(db, Customer) == before


def test_a_lone_surrogate_in_a_value_moving_request_is_a_422(api, db, till, latte):
    # The Idempotency-Key's fingerprint hashes the body before the schema reads it.
    _, _, cashier = till
    response = api.post(
        "/v1/sales",
        token=cashier,
        data=json.dumps(sale(sku="LATTE\ud800")),
        headers={"Content-Type": "application/json"},
    )
    assert_error(response, 422, "validation_error")
    assert count(db, Sale) == 0


def test_a_nul_in_the_channel_header_of_a_top_up_is_not_stored(api, world, db):
    token, me = world.shopper()
    card_id = me["cards"][0]["id"]
    response = api.post(
        f"/v1/cards/{card_id}/top-ups",
        token=token,
        json={"amount": {"amount": 1_000, "currency": "USD"}, "payment_token": "tok_visa"},
        headers={"X-Omnicard-Channel": "web\x00"},
    )
    assert response.status_code == 201, response.json
    assert db.scalar(select(TopUp.channel).where(TopUp.id == response.json["id"])) == "app"


# -- text longer than its column ---------------------------------------------------------------


def test_signup_with_a_valid_253_character_email_succeeds(api, db):
    email = "a" * 64 + "@" + ".".join(["b" * 62, "c" * 62, "d" * 57]) + ".test"
    assert len(email) == 253
    response = api.post(
        "/v1/auth/signup",
        json={"email": email, "password": "a long password", "name": "Ada"},
        key=None,
    )
    assert response.status_code == 201, response.json
    customer = db.get(Customer, response.json["customer"]["id"])
    assert customer.email == email
    stars = db.get(Account, customer.stars_account_id)
    assert stars.name.startswith("Stars of aaaa") and stars.name.endswith("…")
    assert len(stars.name) == Account.name.type.length


def test_signup_with_an_email_that_lower_casing_makes_too_long_is_a_422(api, db):
    email = "İ" * 200 + "@example.com"  # "İ".lower() is two characters
    before = count(db, Customer)
    response = api.post(
        "/v1/auth/signup",
        json={"email": email, "password": "a long password", "name": "Ada"},
        key=None,
    )
    assert_error(response, 422, "validation_error")
    assert count(db, Customer) == before


def test_a_wrong_login_with_a_254_character_email_is_a_401_and_counts(api, app):
    email = "x" * 240 + "@example.test"
    for _ in range(2):
        response = api.post(
            "/v1/auth/login", json={"email": email, "password": "wrong password"}, key=None
        )
        assert_error(response, 401, "invalid_credentials")


def test_a_store_with_a_180_character_name_opens_with_its_accounts(api, world, db):
    admin = world.admin_token()
    name = "N" * 180
    response = api.post(
        "/v1/admin/stores", token=admin, json={"code": "long-name", "name": name}, key=None
    )
    assert response.status_code == 201, response.json
    store = db.get(Store, response.json["id"])
    assert store.name == name
    due = db.get(Account, store.bank_card_account_id)
    assert due.name.startswith(name) and len(due.name) == Account.name.type.length


def test_a_webhook_url_longer_than_its_column_is_a_422(api, world):
    admin = world.admin_token()
    response = api.post(
        "/v1/admin/webhooks",
        token=admin,
        json={"url": "https://example.test/" + "a" * 500, "event_types": ["sale.completed"]},
        key=None,
    )
    assert_error(response, 422, "validation_error")


# -- ids past 64 bits --------------------------------------------------------------------------


@pytest.mark.parametrize("sale_id", ["9223372036854775808", "0", "99999999999999999999999"])
def test_a_sale_id_past_64_bits_is_not_found(api, db, till, sale_id):
    _, _, cashier = till
    assert_error(api.get(f"/v1/sales/{sale_id}", token=cashier), 404, "not_found")
    refund = api.post(f"/v1/sales/{sale_id}/refunds", token=cashier, json={})
    assert_error(refund, 404, "not_found")


def test_a_last_event_id_past_64_bits_is_a_422(api, world):
    token, _ = world.shopper()
    response = api.get("/v1/events?last_event_id=9223372036854775808", token=token)
    error = assert_error(response, 422, "validation_error")
    assert "last_event_id" in error["details"]["fields"]["query"]


# -- bodies and lists too long -----------------------------------------------------------------


def test_a_body_over_the_limit_is_a_413_before_it_is_read(api, app, db, till, latte):
    _, _, cashier = till
    before = count(db, Sale)
    body = b'{"lines": [' + b'{"sku": "LATTE", "quantity": 1}, ' * 300_000 + b"]}"
    response = api.post(
        "/v1/sales", token=cashier, data=body, headers={"Content-Type": "application/json"}
    )
    error = assert_error(response, 413, "payload_too_large")
    assert error["details"] == {"max_bytes": app.config["MAX_CONTENT_LENGTH"]}
    assert count(db, Sale) == before


def test_a_streamed_body_without_a_length_is_cut_off_at_the_limit(api, app, db, till, latte):
    # What gunicorn hands over for a chunked request: no Content-Length, and
    # wsgi.input_terminated set (the server ends the stream).
    import io

    _, _, cashier = till
    body = b'{"lines": [' + b'{"sku": "LATTE", "quantity": 1}, ' * 300_000 + b"]}"
    response = api.client.post(
        "/v1/sales",
        input_stream=io.BytesIO(body),
        content_type="application/json",
        headers={
            "Authorization": f"Bearer {cashier}",
            "Idempotency-Key": "streamed-1",
            "Transfer-Encoding": "chunked",
        },
        environ_overrides={"wsgi.input_terminated": True},
    )
    assert response.request.content_length is None
    assert_error(response, 413, "payload_too_large")
    assert count(db, Sale) == 0


def test_a_list_over_its_cap_is_refused_by_its_length_alone(api, db, till, latte):
    _, _, cashier = till
    # 5,000 lines that would each be invalid (quantity 0): only the list's length is judged.
    body = sale()
    body["lines"] = [{"sku": "LATTE", "quantity": 0}] * 5_000
    response = api.post("/v1/sales", token=cashier, json=body)
    error = assert_error(response, 422, "validation_error")
    assert error["details"]["fields"]["json"]["lines"] == ["At most 200 items."]
    assert count(db, Sale) == 0

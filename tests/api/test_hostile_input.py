"""A table of hostile values thrown at every JSON endpoint, as each kind of caller that can
reach it: JSON nested 5,000 deep, numbers of 5,000 digits, bodies that are not objects, NUL
and lone surrogates in every string, strings past their longest, lists past their most, ids
past 64 bits, NaN, and the wrong type in every field, query parameter and path id; bad
Authorization and Last-Event-ID headers. Each is refused with a 4xx in the one
error shape, and nothing changes: no row anywhere, no ledger balance.

The endpoints and who may call them come from the OpenAPI document, so a new endpoint is in
the table the day it is added; it only needs a valid body here (the test says which is
missing) for its fields to be varied one at a time from something that would otherwise pass.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
from sqlalchemy import func, select, text

from app import create_app
from app.models import metadata
from tests.conftest import TEST_CONFIG

HUGE_ID = 2**63
DEEP = "[" * 5_000 + "]" * 5_000


def _spec() -> dict:
    """The OpenAPI document (building it needs no database)."""
    app = create_app(TEST_CONFIG | {"DATABASE_URL": "sqlite://"})
    return app.test_client().get("/openapi.json").json


SPEC = _spec()


def _callers(operation: dict) -> list[str]:
    """Every kind of caller that may call ``operation``, from its "Who may call:" line."""
    who = re.search(r"Who may call: (.*)\.", operation.get("description", ""))
    if who is None:
        return ["anyone"]
    kinds = []
    for kind in who.group(1).split(", "):
        kinds += ["device (pos)", "device (kiosk)"] if kind == "device" else [kind]
    return kinds


OPERATIONS = [
    (method.upper(), path, caller)
    for path, item in SPEC["paths"].items()
    for method, operation in item.items()
    if method in ("get", "post", "put", "patch", "delete")
    for caller in _callers(operation)
]


def operation_of(method: str, path: str) -> dict:
    return SPEC["paths"][path][method.lower()]


def resolve(schema: dict) -> dict:
    while "$ref" in schema:
        schema = SPEC["components"]["schemas"][schema["$ref"].rsplit("/", 1)[-1]]
    return schema


def request_schema(operation: dict) -> dict | None:
    content = operation.get("requestBody", {}).get("content", {})
    return resolve(content["application/json"]["schema"]) if content else None


# -- the world the requests act on ---------------------------------------------------------------


@dataclass
class Shop:
    tokens: dict[str, str | None]
    ids: dict[str, int]
    card_number: str
    sku: str


@pytest.fixture
def shop(world, db, api) -> Shop:
    store, pos, cashier = world.till()
    kiosk, kiosk_secret = world.device(store, "kiosk")
    _, pos_secret = world.device(store, "pos")
    admin = world.admin_token()
    shopper, me = world.shopper()
    card = me["cards"][0]
    product = world.product(sku="HOSTILE-1", price=450)
    loaded = world.load(card["id"], 5_000, cashier)
    from app.cards.models import Card

    number = db.get(Card, card["id"]).number
    allowance = api.post(
        "/v1/pos/offline-allowances",
        token=cashier,
        json={"card": {"card_number": number}, "amount": usd(500)},
    )
    assert allowance.status_code == 201, allowance.json
    sale = api.post(
        "/v1/sales",
        token=cashier,
        json={
            "customer": {"card_number": number},
            "lines": [{"sku": product.sku, "quantity": 1}],
            "tenders": [{"type": "card_balance", "amount": usd(450)}],
        },
    )
    assert sale.status_code == 201, sale.json
    hook = api.post(
        "/v1/admin/webhooks",
        token=admin,
        json={"url": "http://127.0.0.1:9/hook", "event_types": ["sale.completed"]},
    )
    assert hook.status_code == 201, hook.json
    shift = api.post("/v1/pos/shifts", token=cashier, json={"float": usd(10_000)})
    assert shift.status_code == 201, shift.json
    screen = _paired_screen(api, db, kiosk_secret)
    return Shop(
        tokens={
            "anyone": None,
            "customer": shopper,
            "staff": admin,
            "staff (admin)": admin,
            "cashier": cashier,
            "device (pos)": pos_secret,
            "device (kiosk)": kiosk_secret,
            "kiosk_screen": screen,
        },
        ids={
            "card_id": card["id"],
            "sale_id": sale.json["id"],
            "product_id": product.id,
            "device_id": kiosk.id,
            "webhook_id": hook.json["id"],
            "delivery_id": 1,
            "top_up_id": loaded["id"],
            "store_id": store.id,
            "shift_id": shift.json["id"],
            "receipt_id": sale.json["receipt"]["id"],
            "allowance_id": allowance.json["id"],
        },
        card_number=number,
        sku=product.sku,
    )


def _paired_screen(api, db, kiosk_secret: str) -> str:
    """A screen paired to the kiosk: its login token."""
    from app.core.settings import settings
    from app.kiosk.services import pair_screen

    code = api.post("/v1/kiosk/pairing-codes", token=kiosk_secret, key=None)
    assert code.status_code == 201, code.json
    with api.client.application.app_context():
        return pair_screen(db, code.json["code"], settings().kiosk_screen_token_ttl_s)


def usd(amount: int) -> dict:
    return {"amount": amount, "currency": "USD"}


#: A body each body-taking endpoint would accept (or refuse only by a rule of the business),
#: for the caller; its fields are then made hostile one at a time.
VALID_BODIES: dict[tuple[str, str], Callable[[Shop, str], dict]] = {
    ("POST", "/v1/auth/signup"): lambda shop, caller: {
        "email": "new@example.test", "password": "violet harbour 1987", "name": "New"},
    ("POST", "/v1/auth/login"): lambda shop, caller: {
        "email": "nobody@example.test", "password": "violet harbour 1987", "account": "shopper"},
    ("POST", "/v1/pos/sessions"): lambda shop, caller: {"staff_code": "C0001", "pin": "1357"},
    ("POST", "/v1/cards/{card_id}/top-ups"): lambda shop, caller: (
        {"amount": usd(1_000), "tender": "cash"} if caller == "cashier"
        else {"amount": usd(1_000), "payment_token": "tok_visa"}),
    ("POST", "/v1/cards/{card_id}/transfers"): lambda shop, caller: {
        "to_card_id": shop.ids["card_id"], "amount": usd(100)},
    ("PUT", "/v1/cards/{card_id}/auto-reload"): lambda shop, caller: {
        "threshold": usd(1_000), "amount": usd(2_000), "payment_token": "tok_visa",
        "enabled": True},
    ("PUT", "/v1/cards/{card_id}/nfc"): lambda shop, caller: {"uid": "04A2B3C4D5E6F7"},
    ("POST", "/v1/me/cards"): lambda shop, caller: {
        "number": "1234567812345678", "security_code": "12345678"},
    ("POST", "/v1/me/pay-codes"): lambda shop, caller: {"card_id": shop.ids["card_id"]},
    ("POST", "/v1/pos/lookups"): lambda shop, caller: {"card_number": shop.card_number},
    ("POST", "/v1/pos/nfc-bindings"): lambda shop, caller: {
        "uid": "04A2B3C4D5E6F7",
        "card": {"card_number": shop.card_number, "security_code": "12345678"}},
    ("POST", "/v1/admin/card-batches"): lambda shop, caller: {"size": 1, "note": "hostile"},
    ("POST", "/v1/sales"): lambda shop, caller: {
        "customer": {"card_number": shop.card_number},
        "lines": [{"sku": shop.sku, "quantity": 1}],
        "tenders": [{"type": "card_balance", "amount": usd(450)}],
        "offline": {"made_at": "2026-12-04T10:00:00Z", "allowance": None}},
    ("POST", "/v1/pos/gift-cards"): lambda shop, caller: {
        "card": {"card_number": shop.card_number}, "amount": usd(1_000), "tender": "cash"},
    ("POST", "/v1/pos/offline-allowances"): lambda shop, caller: {
        "card": {"card_number": shop.card_number}, "amount": usd(1_000)},
    ("POST", "/v1/sales/{sale_id}/refunds"): lambda shop, caller: {
        "lines": [{"sku": shop.sku, "quantity": 1}]},
    ("POST", "/v1/products"): lambda shop, caller: {
        "sku": "HOSTILE-2", "barcode": "12345678", "name": "Tea", "description": "Green",
        "category": "tea", "price": usd(300), "image_url": "", "nfc_tag_ids": ["04A2B3C4"],
        "active": True},
    ("PATCH", "/v1/products/{product_id}"): lambda shop, caller: {
        "barcode": "87654321", "name": "Latte", "description": "Milk", "category": "coffee",
        "price": usd(500), "image_url": "", "nfc_tag_ids": ["04A2B3C5"], "active": True},
    ("PUT", "/v1/products/{product_id}/stores"): lambda shop, caller: {
        "items": [{"store_id": shop.ids["store_id"], "in_stock": True}]},
    ("PUT", "/v1/products/{product_id}/stores/{store_id}"): lambda shop, caller: {
        "in_stock": False},
    ("POST", "/v1/admin/stores"): lambda shop, caller: {
        "code": "hostile", "name": "Hostile", "address": "1 Way"},
    ("POST", "/v1/admin/devices"): lambda shop, caller: {
        "store_id": shop.ids["store_id"], "kind": "pos", "name": "till 9"},
    ("POST", "/v1/admin/webhooks"): lambda shop, caller: {
        "url": "http://127.0.0.1:9/other", "event_types": ["sale.completed"]},
    ("POST", "/v1/pos/shifts"): lambda shop, caller: {"float": usd(10_000)},
    ("POST", "/v1/pos/shifts/{shift_id}/close"): lambda shop, caller: {"counted": usd(9_000)},
    ("POST", "/v1/kiosk/taps"): lambda shop, caller: {
        "tap_ref": "5f0c6a1e-hostile", "tapped_at": "2026-12-05T10:00:00Z", "uid": "04A1B2C3",
        "uris": [f"https://shop.example/p/{shop.sku}"], "texts": ["Hello"],
        "unreadable": False},
    ("POST", "/v1/kiosk/saved"): lambda shop, caller: {
        "session_id": 1, "product_id": shop.ids["product_id"]},
}  # fmt: skip

#: Valid query parameters, likewise.
VALID_QUERIES = {
    "limit": 5, "cursor": "100", "category": "coffee", "last_event_id": 0, "date": "2026-12-04"
}  # fmt: skip


def test_every_body_taking_endpoint_has_a_valid_body_here():
    taking = {
        (method, path)
        for method, path, _ in OPERATIONS
        if request_schema(operation_of(method, path)) is not None
    }
    assert taking == set(VALID_BODIES), "add a valid body for each new endpoint"


# -- the hostile values ------------------------------------------------------------------------


@dataclass(frozen=True)
class Hostile:
    what: str
    path: str
    body: object = None
    raw: str | None = None  # sent as it is, as JSON
    query: dict | str | None = None
    headers: dict | None = None
    #: The Idempotency-Key sent with ``body`` (a fresh valid one unless given).
    key: str = "auto"
    #: Not hostile after all once decoded (Werkzeug reads bad UTF-8 in a URL as U+FFFD).
    may_pass: bool = False


def wrong_values(schema: dict) -> Iterator[tuple[str, object]]:
    """Hostile stand-ins for a value of ``schema``: never something it could accept."""
    schema = resolve(schema)
    kind = schema.get("type")
    if kind == "string":
        most = schema.get("maxLength", 1_000)
        yield "NUL", "ab\x00cd"
        yield "lone surrogate", "\ud800"
        yield "over-long", "7" * (most + 1)
        yield "over-long by far", "7" * 200_000
    if kind == "integer":
        yield "64-bit overflow", HUGE_ID
        yield "below 64 bits", -(2**63) - 1
        yield "1e30", 10**30
        yield "a float", 1.5
        yield "NaN", float("nan")
        yield "Infinity", float("inf")
    if kind == "array":
        yield "a list past its most", [None] * (schema.get("maxItems", 1_000) + 1)
        yield "a list of 100,000", [0] * 100_000
    if kind != "string":
        yield "a string", "x"
    if kind not in ("object", "array"):
        yield "an object", {"a": 1}
        yield "a list", [1]
    if not schema.get("nullable"):
        yield "null", None


def field_paths(schema: dict, value: object) -> Iterator[tuple[tuple, dict]]:
    """(path into the body, schema) of every field of ``value`` under ``schema``."""
    schema = resolve(schema)
    if isinstance(value, dict):
        for name, prop in schema.get("properties", {}).items():
            if name in value:
                yield (name,), prop
                for path, inner in field_paths(prop, value[name]):
                    yield (name, *path), inner
    elif isinstance(value, list) and value and "items" in schema:
        yield (0,), schema["items"]
        for path, inner in field_paths(schema["items"], value[0]):
            yield (0, *path), inner


def replaced(value, path: tuple, new):
    if not path:
        return new
    copy = list(value) if isinstance(value, list) else dict(value)
    copy[path[0]] = replaced(value[path[0]], path[1:], new)
    return copy


def hostile_requests(method: str, path: str, shop: Shop, caller: str) -> Iterator[Hostile]:
    operation = operation_of(method, path)
    url = path.format(**shop.ids)
    yield Hostile("JSON 5,000 deep", url, raw='{"a": ' + DEEP + "}")
    yield Hostile("a number of 5,000 digits", url, raw='{"a": ' + "7" * 5_000 + "}")
    # Headers that reach the database without a schema: a bad Authorization is refused, or
    # ignored where anyone may call; a bad Last-Event-ID (read by GETs) is refused.
    for value in ["ab\x00cd", "ocd_\x00", "7" * 100_000, "\u00e9\u00e9"]:
        yield Hostile(
            f"header Authorization: {value[:20]!r}",
            url,
            headers={"Authorization": f"Bearer {value}"},
            may_pass=caller == "anyone",
        )
    if method == "GET":
        for value in ["1\x00", "9" * 30, "\u0661"]:
            yield Hostile(
                f"header Last-Event-ID: {value!r}", url, headers={"Last-Event-ID": value},
                may_pass=path != "/v1/events",
            )  # fmt: skip
    for name in re.findall(r"{(\w+)}", path):
        for bad in (str(HUGE_ID), "99999999999999999999999", "0", "-1", "1.5", "x"):
            yield Hostile(f"path {name}={bad}", path.format(**(shop.ids | {name: bad})))
    for parameter in operation.get("parameters", []):
        if parameter["in"] != "query":
            continue
        name = parameter["name"]
        for what, bad in wrong_values(parameter["schema"]):
            if isinstance(bad, (str, int, float)) and what != "lone surrogate":
                query = VALID_QUERIES | {name: bad}
                yield Hostile(f"query {name}: {what}", url, query=query)
        # What a URL can carry and no text can: bytes that are not UTF-8.
        yield Hostile(f"query {name}: not UTF-8", url, query=f"{name}=%FF%ED%A0%80", may_pass=True)
    schema = request_schema(operation)
    if schema is None:
        return
    valid = VALID_BODIES[(method, path)](shop, caller)
    for what, bad in [("a list", []), ("a string", "x"), ("a number", 1), ("null", None)]:
        yield Hostile(f"body: {what}", url, raw=json.dumps(bad))
    for field, field_schema in field_paths(schema, valid):
        for what, bad in wrong_values(field_schema):
            where = ".".join(map(str, field))
            yield Hostile(f"{where}: {what}", url, body=replaced(valid, field, bad))
    yield Hostile("an unknown field", url, body=valid | {"hostile": 1})
    if any(p["name"] == "Idempotency-Key" for p in operation.get("parameters", [])):
        # A valid request under a key that is not 1-255 visible ASCII characters.
        for bad in ["k\x00y", "k\x7fy", "k y", "\u00e9t\u00e9", "k" * 256]:
            yield Hostile(f"Idempotency-Key {bad[:12]!r}", url, body=valid, key=bad)


# -- what must hold ------------------------------------------------------------------------------


def snapshot(db) -> dict:
    """Every table's row count and every ledger balance (shards included)."""
    counts = {
        table.name: db.scalar(select(func.count()).select_from(table))
        for table in metadata.sorted_tables
    }
    balances = dict(db.execute(text("SELECT id, balance FROM ledger_accounts")).all())
    shards = db.execute(
        text("SELECT account_id, sum(balance) FROM ledger_balance_shards GROUP BY account_id")
    ).all()
    return {"rows": counts, "balances": balances, "shards": dict(shards)}


def send(api, method: str, hostile: Hostile, token: str | None):
    headers = {}
    if hostile.headers is not None:
        if "Authorization" in hostile.headers:
            token = None
        return api.call(method, hostile.path, token=token, headers=hostile.headers)
    if hostile.raw is not None:
        headers["Content-Type"] = "application/json"
        return api.call(method, hostile.path, token=token, data=hostile.raw, headers=headers)
    if hostile.body is not None:
        # json.dumps keeps NUL and lone surrogates as \u escapes, as a client would send them.
        return api.call(
            method,
            hostile.path,
            token=token,
            key=hostile.key,
            data=json.dumps(hostile.body),
            headers={"Content-Type": "application/json"},
        )
    return api.call(method, hostile.path, token=token, query_string=hostile.query)


@pytest.mark.parametrize(
    ("method", "path", "caller"), OPERATIONS, ids=[f"{m} {p} as {c}" for m, p, c in OPERATIONS]
)
def test_hostile_values_are_refused_in_the_error_shape_and_change_nothing(
    api, db, shop, method, path, caller
):
    token = shop.tokens[caller]
    before = snapshot(db)
    answered = []
    for hostile in hostile_requests(method, path, shop, caller):
        response = send(api, method, hostile, token)
        answered.append(hostile.what)
        where = f"{method} {path} as {caller}, {hostile.what}"
        assert response.status_code < 500, (where, response.status_code, response.data)
        if hostile.may_pass and response.status_code < 400:
            continue
        assert response.status_code >= 400, (where, response.status_code, response.data)
        body = response.get_json(silent=True)
        assert isinstance(body, dict) and set(body) == {"error"}, (where, response.data[:300])
        assert set(body["error"]) == {"code", "message", "details"}, where
        assert isinstance(body["error"]["code"], str) and body["error"]["code"], where
        assert isinstance(body["error"]["message"], str), where
        assert isinstance(body["error"]["details"], dict), where
    assert answered
    assert snapshot(db) == before

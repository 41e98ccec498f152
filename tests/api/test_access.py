"""Who may see and move what, through real HTTP: a principal never sees another's data, only
tills move money at the till, and every value-moving request needs an Idempotency-Key."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from app.cards.models import Card
from app.cards.services import issue_batch, issue_card
from app.core.settings import settings
from app.kiosk.services import pair_screen
from app.ledger.models import LedgerTransaction
from app.payments.models import TopUp
from app.sales.models import Refund, Sale

STAFF_PASSWORD = "correct horse battery"
PRICE = 450


def assert_error(response, status: int, code: str) -> None:
    """The one error shape of the API, with this status and code."""
    assert response.status_code == status, response.json
    assert set(response.json) == {"error"}
    assert set(response.json["error"]) == {"code", "message", "details"}
    assert response.json["error"]["code"] == code


def count(db, model) -> int:
    return db.scalar(select(func.count()).select_from(model))


def usd(amount: int) -> dict:
    return {"amount": amount, "currency": "USD"}


def sale_body(sku: str) -> dict:
    return {
        "lines": [{"sku": sku, "quantity": 1}],
        "tenders": [{"type": "cash", "amount": usd(PRICE)}],
    }


def ring_up(api, token, sku, **kw):
    return api.post("/v1/sales", token=token, json=sale_body(sku), **kw)


def staff_login(api, staff) -> str:
    response = api.post(
        "/v1/auth/login",
        json={"email": staff.email, "password": STAFF_PASSWORD, "account": "staff"},
        key=None,
    )
    assert response.status_code == 200, response.json
    return response.json["token"]


def me(api, token) -> dict:
    response = api.get("/v1/me", token=token)
    assert response.status_code == 200, response.json
    return response.json


# A shopper and another shopper's cards


@pytest.fixture
def shoppers(world):
    """Two shoppers with 20.00 and 10.00 on their cards: (owner, other), each a dict with
    ``token``, ``card_id`` and their /v1/me body as it stands."""
    _, _, till = world.till()
    people = []
    for name, amount in (("Ada", 2000), ("Grace", 1000)):
        token, body = world.shopper(name)
        card_id = body["cards"][0]["id"]
        world.load(card_id, amount, till)
        people.append({"token": token, "card_id": card_id})
    for person in people:
        person["me"] = me(world.api, person["token"])
    return people


OTHERS_CARD_REQUESTS = {
    "read": ("GET", "/v1/cards/{other}", None),
    "activity": ("GET", "/v1/cards/{other}/activity", None),
    "top-up": (
        "POST",
        "/v1/cards/{other}/top-ups",
        {"amount": usd(1000), "payment_token": "tok_visa"},
    ),
    "transfer-from": (
        "POST",
        "/v1/cards/{other}/transfers",
        {"to_card_id": "{own}", "amount": usd(500)},
    ),
    "transfer-to": (
        "POST",
        "/v1/cards/{own}/transfers",
        {"to_card_id": "{other}", "amount": usd(500)},
    ),
    "report-lost": ("POST", "/v1/cards/{other}/report-lost", None),
    "make-primary": ("PUT", "/v1/cards/{other}/primary", None),
    "auto-reload": (
        "PUT",
        "/v1/cards/{other}/auto-reload",
        {"threshold": usd(500), "amount": usd(1000), "payment_token": "tok_visa"},
    ),
    "auto-reload-off": ("DELETE", "/v1/cards/{other}/auto-reload", None),
    "pay-code": ("POST", "/v1/me/pay-codes", {"card_id": "{other}"}),
}


def fill_in(value, own: int, other: int):
    if isinstance(value, dict):
        return {k: fill_in(v, own, other) for k, v in value.items()}
    if value == "{own}":
        return own
    if value == "{other}":
        return other
    if isinstance(value, str):
        return value.format(own=own, other=other)
    return value


@pytest.mark.parametrize("request_name", list(OTHERS_CARD_REQUESTS))
def test_a_shopper_cannot_touch_another_shoppers_card(api, db, shoppers, request_name):
    owner, intruder = shoppers
    method, path, body = OTHERS_CARD_REQUESTS[request_name]
    own, other = intruder["card_id"], owner["card_id"]
    transactions_before = count(db, LedgerTransaction)
    top_ups_before = count(db, TopUp)

    response = api.call(
        method, fill_in(path, own, other), token=intruder["token"], json=fill_in(body, own, other)
    )

    assert_error(response, 404, "card_not_found")
    assert me(api, owner["token"]) == owner["me"]
    assert me(api, intruder["token"]) == intruder["me"]
    assert count(db, LedgerTransaction) == transactions_before
    assert count(db, TopUp) == top_ups_before


def test_another_shoppers_card_answers_exactly_as_a_card_that_does_not_exist(api, shoppers):
    owner, intruder = shoppers

    theirs = api.get(f"/v1/cards/{owner['card_id']}", token=intruder["token"])
    missing = api.get("/v1/cards/999999", token=intruder["token"])

    assert_error(theirs, 404, "card_not_found")
    assert theirs.json == missing.json


def test_the_owner_reads_their_own_card_and_its_activity(api, shoppers):
    owner, _ = shoppers

    card = api.get(f"/v1/cards/{owner['card_id']}", token=owner["token"])
    activity = api.get(f"/v1/cards/{owner['card_id']}/activity", token=owner["token"])

    assert card.status_code == 200
    assert card.json["balance"] == usd(2000)
    assert activity.status_code == 200
    assert [item["amount"] for item in activity.json["items"]] == [usd(2000)]


def test_an_admin_reads_any_shoppers_card(api, world, shoppers):
    owner, _ = shoppers

    response = api.get(f"/v1/cards/{owner['card_id']}", token=world.admin_token())

    assert response.status_code == 200, response.json
    assert response.json["balance"] == usd(2000)


def test_a_cashier_cannot_read_a_shoppers_card_or_its_history(api, world, shoppers):
    owner, _ = shoppers
    _, _, till = world.till()

    assert_error(api.get(f"/v1/cards/{owner['card_id']}", token=till), 403, "forbidden")
    assert_error(api.get(f"/v1/cards/{owner['card_id']}/activity", token=till), 403, "forbidden")


# Tills and another store's sales


@pytest.fixture
def sale_elsewhere(world):
    """A cash sale rung up at store B: (sale id, store B, the till token that rang it)."""
    store_b, _, till_b = world.till()
    product = world.product(price=PRICE)
    response = ring_up(world.api, till_b, product.sku)
    assert response.status_code == 201, response.json
    return response.json["id"], store_b, till_b


def test_a_cashier_cannot_see_a_sale_of_another_store(api, world, sale_elsewhere):
    sale_id, _, _ = sale_elsewhere
    _, _, till_a = world.till()

    theirs = api.get(f"/v1/sales/{sale_id}", token=till_a)
    missing = api.get("/v1/sales/999999", token=till_a)

    assert_error(theirs, 404, "sale_not_found")
    assert theirs.json == missing.json


def test_a_cashier_cannot_refund_a_sale_of_another_store(api, db, world, sale_elsewhere):
    sale_id, _, till_b = sale_elsewhere
    _, _, till_a = world.till()
    transactions_before = count(db, LedgerTransaction)

    response = api.post(f"/v1/sales/{sale_id}/refunds", token=till_a, json={})

    assert_error(response, 404, "sale_not_found")
    assert count(db, Refund) == 0
    assert count(db, LedgerTransaction) == transactions_before
    sale = api.get(f"/v1/sales/{sale_id}", token=till_b).json
    assert [line["refunded_quantity"] for line in sale["lines"]] == [0]
    assert [tender["refunded"] for tender in sale["tenders"]] == [usd(0)]


def test_another_till_of_the_same_store_sees_and_refunds_the_sale(api, world, sale_elsewhere):
    sale_id, store_b, _ = sale_elsewhere
    _, _, other_till_b = world.till(store_b)

    seen = api.get(f"/v1/sales/{sale_id}", token=other_till_b)
    refunded = api.post(f"/v1/sales/{sale_id}/refunds", token=other_till_b, json={})

    assert seen.status_code == 200, seen.json
    assert refunded.status_code == 201, refunded.json
    assert refunded.json["amount"] == usd(PRICE)


@pytest.mark.parametrize("kind", ["pos", "kiosk"])
def test_a_device_secret_alone_cannot_read_or_refund_a_sale(api, db, world, sale_elsewhere, kind):
    sale_id, store_b, _ = sale_elsewhere
    _, secret = world.device(store_b, kind)  # even of the sale's own store

    read = api.get(f"/v1/sales/{sale_id}", token=secret)
    refund = api.post(f"/v1/sales/{sale_id}/refunds", token=secret, json={})

    assert_error(read, 403, "forbidden")
    assert_error(refund, 403, "forbidden")
    assert count(db, Refund) == 0


# Devices do not move money; only a cashier signed in on a till does


@pytest.mark.parametrize("kind", ["kiosk", "pos"])
def test_a_device_secret_cannot_ring_up_a_sale(api, db, world, kind):
    store = world.store()
    _, secret = world.device(store, kind)
    product = world.product(price=PRICE)

    response = ring_up(api, secret, product.sku)

    assert_error(response, 403, "forbidden")
    assert count(db, Sale) == 0
    assert count(db, LedgerTransaction) == 0


@pytest.mark.parametrize("kind", ["kiosk", "pos"])
def test_a_device_secret_cannot_top_up_a_card(api, db, world, kind):
    store = world.store()
    _, secret = world.device(store, kind)
    token, body = world.shopper()
    card_id = body["cards"][0]["id"]

    response = api.post(
        f"/v1/cards/{card_id}/top-ups", token=secret, json={"amount": usd(1000), "tender": "cash"}
    )

    assert_error(response, 403, "forbidden")
    assert count(db, TopUp) == 0
    assert me(api, token)["cards"][0]["balance"] == usd(0)


# Shoppers and staff logins stay out of the till and the back office


@pytest.fixture
def targets(world, sale_elsewhere):
    """Real ids for the paths below, so that a refusal is never just a missing resource."""
    sale_id, store, _ = sale_elsewhere
    _, body = world.shopper("Target")
    return {"sale": sale_id, "store": store.id, "card": body["cards"][0]["id"]}


TILL_AND_ADMIN_REQUESTS = {
    "ring-up-sale": ("POST", "/v1/sales", "sale-body"),
    "read-sale": ("GET", "/v1/sales/{sale}", None),
    "refund-sale": ("POST", "/v1/sales/{sale}/refunds", {}),
    "open-cashier-session": ("POST", "/v1/pos/sessions", {"staff_code": "C0001", "pin": "1357"}),
    "look-up-card": ("POST", "/v1/pos/lookups", {"card_number": "1234567890123456"}),
    "bind-nfc-at-till": (
        "POST",
        "/v1/pos/nfc-bindings",
        {"uid": "04a1b2c3d4e5f6", "card": {"pay_code": "123456789012"}},
    ),
    "open-store": ("POST", "/v1/admin/stores", {"code": "rogue", "name": "Rogue"}),
    "register-device": ("POST", "/v1/admin/devices", {"kind": "pos", "name": "T", "store_id": 0}),
    "issue-card-batch": ("POST", "/v1/admin/card-batches", {"size": 1}),
    "sell-gift-card": (
        "POST",
        "/v1/pos/gift-cards",
        {"card": {"card_number": "1234567890123456"}, "amount": usd(1000), "tender": "cash"},
    ),
    "ask-offline-allowance": (
        "POST",
        "/v1/pos/offline-allowances",
        {"card": {"card_number": "1234567890123456"}},
    ),
    "release-offline-allowance": ("POST", "/v1/pos/offline-allowances/1/release", None),
    "add-product": (
        "POST",
        "/v1/products",
        {"sku": "ROGUE", "name": "Rogue", "category": "coffee", "price": usd(1)},
    ),
}


def till_and_admin_request(world, targets, request_name):
    method, path, body = TILL_AND_ADMIN_REQUESTS[request_name]
    if body == "sale-body":
        body = sale_body(world.product(price=PRICE).sku)
    if request_name == "register-device":
        body = body | {"store_id": targets["store"]}
    return method, path.format(**targets), body


@pytest.mark.parametrize("request_name", list(TILL_AND_ADMIN_REQUESTS))
def test_a_shopper_cannot_call_till_or_admin_endpoints(api, db, world, targets, request_name):
    token, _ = world.shopper()
    method, path, body = till_and_admin_request(world, targets, request_name)
    transactions_before = count(db, LedgerTransaction)

    response = api.call(method, path, token=token, json=body)

    assert_error(response, 403, "forbidden")
    assert count(db, LedgerTransaction) == transactions_before
    assert count(db, Refund) == 0


@pytest.mark.parametrize("request_name", list(TILL_AND_ADMIN_REQUESTS))
def test_a_cashiers_own_email_login_is_not_a_till_or_an_admin(
    api, db, world, targets, request_name
):
    store = world.store()
    cashier = world.staff("cashier", store=store)
    token = staff_login(api, cashier)
    method, path, body = till_and_admin_request(world, targets, request_name)
    transactions_before = count(db, LedgerTransaction)

    response = api.call(method, path, token=token, json=body)

    assert_error(response, 403, "forbidden")
    assert count(db, LedgerTransaction) == transactions_before


@pytest.mark.parametrize("request_name", list(TILL_AND_ADMIN_REQUESTS))
def test_till_and_admin_endpoints_answer_401_without_a_token(api, world, targets, request_name):
    method, path, body = till_and_admin_request(world, targets, request_name)

    response = api.call(method, path, json=body)

    assert_error(response, 401, "unauthenticated")


# Every request that moves value needs an Idempotency-Key


@pytest.fixture
def value_moves(app, db, world):
    """Each value-moving request, ready to send by its rightful caller: name -> (path, token,
    body), and the shopper's token under ``shopper``. The shopper's primary card holds 20.00
    and they have a second card; a cash sale at the till's store is there to refund."""
    _, _, till = world.till()
    token, body = world.shopper()
    card_id = body["cards"][0]["id"]
    world.load(card_id, 2000, till)
    with app.app_context():
        second_card = issue_card(db, kind="digital", customer_id=body["id"]).id
    product = world.product(price=PRICE)
    sale = ring_up(world.api, till, product.sku).json
    with app.app_context():
        ((gift, _code),) = issue_batch(db, staff_id=world.staff("admin").id, size=1)
        number = db.get(Card, card_id).number
    allowance = world.api.post(
        "/v1/pos/offline-allowances",
        token=till,
        json={"card": {"card_number": number}, "amount": usd(500)},
    )
    assert allowance.status_code == 201, allowance.json
    return {
        "sale": ("/v1/sales", till, sale_body(product.sku)),
        "refund": (f"/v1/sales/{sale['id']}/refunds", till, {}),
        "top-up-at-till": (
            f"/v1/cards/{card_id}/top-ups",
            till,
            {"amount": usd(1000), "tender": "cash"},
        ),
        "top-up-in-app": (
            f"/v1/cards/{card_id}/top-ups",
            token,
            {"amount": usd(1000), "payment_token": "tok_visa"},
        ),
        "transfer": (
            f"/v1/cards/{card_id}/transfers",
            token,
            {"to_card_id": second_card, "amount": usd(500)},
        ),
        "report-lost": (f"/v1/cards/{second_card}/report-lost", token, None),
        "sell-gift-card": (
            "/v1/pos/gift-cards",
            till,
            {"card": {"card_number": gift.number}, "amount": usd(1000), "tender": "cash"},
        ),
        "offline-allowance": (
            "/v1/pos/offline-allowances",
            till,
            {"card": {"card_number": number}, "amount": usd(500)},
        ),
        "offline-release": (
            f"/v1/pos/offline-allowances/{allowance.json['id']}/release",
            till,
            None,
        ),
        "shopper": token,
    }


#: Each value move and what it answers when it succeeds.
VALUE_MOVES = {
    "sale": 201,
    "refund": 201,
    "top-up-at-till": 201,
    "top-up-in-app": 201,
    "transfer": 201,
    "report-lost": 200,
    "sell-gift-card": 201,
    "offline-allowance": 201,
    "offline-release": 200,
}


@pytest.mark.parametrize("name", list(VALUE_MOVES))
def test_each_value_move_succeeds_with_an_idempotency_key(api, value_moves, name):
    """The control for the test below: its 400 is the missing key's doing, nothing else."""
    path, token, body = value_moves[name]

    response = api.post(path, token=token, json=body)

    assert response.status_code == VALUE_MOVES[name], response.json


@pytest.mark.parametrize("name", list(VALUE_MOVES))
def test_a_value_moving_request_without_an_idempotency_key_answers_400(api, db, value_moves, name):
    path, token, body = value_moves[name]
    shopper_before = me(api, value_moves["shopper"])
    transactions_before = count(db, LedgerTransaction)
    top_ups_before = count(db, TopUp)

    response = api.post(path, token=token, json=body, key=None)

    assert_error(response, 400, "idempotency_key_missing")
    assert count(db, LedgerTransaction) == transactions_before
    assert count(db, TopUp) == top_ups_before
    assert me(api, value_moves["shopper"]) == shopper_before


def test_an_empty_idempotency_key_counts_as_missing(api, db, value_moves):
    path, token, body = value_moves["sale"]
    sales_before = count(db, Sale)

    response = api.post(path, token=token, json=body, key=None, headers={"Idempotency-Key": ""})

    assert_error(response, 400, "idempotency_key_missing")
    assert count(db, Sale) == sales_before


#: Keys that are not 1-255 visible ASCII characters, as the app receives them (WSGI hands
#: header bytes over as Latin-1, so a UTF-8 key arrives as its bytes).
INVALID_KEYS = {
    "256-characters": "k" * 256,
    "space": "two words",
    "tab": "tab\there",
    "delete": "del\x7f",
    "latin-1": "cl\xe9",
    "utf-8": "ключ-1".encode().decode("latin-1"),
}


@pytest.mark.parametrize("key", list(INVALID_KEYS.values()), ids=list(INVALID_KEYS))
def test_an_idempotency_key_that_is_not_visible_ascii_answers_400_and_moves_nothing(
    api, db, value_moves, key
):
    path, token, body = value_moves["sale"]
    sales_before = count(db, Sale)
    transactions_before = count(db, LedgerTransaction)

    response = api.post(path, token=token, json=body, key=None, headers={"Idempotency-Key": key})

    assert_error(response, 400, "idempotency_key_invalid")
    assert "255 visible ASCII characters" in response.json["error"]["message"]
    assert count(db, Sale) == sales_before
    assert count(db, LedgerTransaction) == transactions_before


@pytest.mark.parametrize("name", ["sale", "top-up-in-app"])
def test_an_idempotency_key_of_255_visible_ascii_characters_is_taken(api, value_moves, name):
    path, token, body = value_moves[name]
    key = ("!~" + "".join(map(chr, range(0x21, 0x7F))) * 3)[:255]
    assert len(key) == 255

    first = api.post(path, token=token, json=body, key=key)
    again = api.post(path, token=token, json=body, key=key)

    assert first.status_code == VALUE_MOVES[name], first.json
    assert again.headers["Idempotent-Replayed"] == "true"


@pytest.mark.parametrize("name", list(VALUE_MOVES))
def test_a_replay_answers_the_same_bytes_as_the_first_answer(api, value_moves, name):
    path, token, body = value_moves[name]

    first = api.post(path, token=token, json=body, key=f"replay-{name}")
    again = api.post(path, token=token, json=body, key=f"replay-{name}")

    assert first.status_code == again.status_code == VALUE_MOVES[name], first.json
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.data == first.data
    assert again.headers["Content-Type"] == first.headers["Content-Type"]


def test_the_openapi_document_requires_an_idempotency_key_on_exactly_the_value_moves(client):
    spec = client.get("/openapi.json").json

    requiring = {
        (method.upper(), path)
        for path, operations in spec["paths"].items()
        for method, operation in operations.items()
        if method != "parameters"
        and any(p.get("name") == "Idempotency-Key" for p in operation.get("parameters", []))
    }

    assert requiring == {
        ("POST", "/v1/sales"),
        ("POST", "/v1/sales/{sale_id}/refunds"),
        ("POST", "/v1/cards/{card_id}/top-ups"),
        ("POST", "/v1/cards/{card_id}/transfers"),
        ("POST", "/v1/cards/{card_id}/report-lost"),
        ("POST", "/v1/pos/shifts"),
        ("POST", "/v1/pos/shifts/{shift_id}/close"),
        ("POST", "/v1/pos/gift-cards"),
        ("POST", "/v1/pos/offline-allowances"),
        ("POST", "/v1/pos/offline-allowances/{allowance_id}/release"),
    }


# A refusal says who may call


def test_a_till_secret_sent_to_ring_up_a_sale_is_told_a_cashier_session_is_needed(api, db, world):
    store = world.store()
    _, secret = world.device(store, "pos")
    sales_before = count(db, Sale)

    response = ring_up(api, secret, world.product(price=PRICE).sku)

    assert_error(response, 403, "forbidden")
    message = response.json["error"]["message"]
    assert "cashier session" in message
    assert "POST /v1/pos/sessions" in message
    assert response.json["error"]["details"] == {"allowed": ["cashier"], "caller": "device (pos)"}
    assert count(db, Sale) == sales_before


def who_may_call(operation: dict) -> set[str]:
    """The kinds of caller an operation's description names (``Who may call: ...``)."""
    line = operation["description"].rsplit("Who may call: ", 1)[1].rstrip(".")
    return {who.strip() for who in line.split(",")}


@pytest.fixture
def every_kind_of_caller(api, world):
    """A token of each kind, named as the OpenAPI descriptions name them."""
    store, _, cashier_session = world.till()
    _, pos_secret = world.device(store, "pos")
    _, kiosk_secret = world.device(store, "kiosk")
    shopper, _ = world.shopper()
    cashier = world.staff("cashier", store=store)
    code = api.post("/v1/kiosk/pairing-codes", token=kiosk_secret, key=None).json["code"]
    with api.client.application.app_context():
        screen = pair_screen(api.db, code, settings().kiosk_screen_token_ttl_s)
    return {
        "customer": shopper,
        "staff (admin)": world.admin_token(),
        "staff": staff_login(api, cashier),  # a cashier's own email login: staff, not admin
        "cashier": cashier_session,
        "device (pos)": pos_secret,
        "device (kiosk)": kiosk_secret,
        "kiosk_screen": screen,
    }


def test_every_refusal_of_a_caller_says_which_callers_may_do_it(api, client, every_kind_of_caller):
    spec = client.get("/openapi.json").json
    checked = 0
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            if not isinstance(operation, dict) or "Who may call: " not in operation.get(
                "description", ""
            ):
                continue
            allowed = who_may_call(operation)
            url = path.replace("{", "").replace("}", "")
            url = "/".join("1" if part.endswith("_id") else part for part in url.split("/"))
            for kind, token in every_kind_of_caller.items():
                if kind in allowed or kind.split(" (")[0] in allowed:
                    continue
                response = api.call(method.upper(), url, token=token, json={})
                assert response.status_code == 403, (method, path, kind, response.data[:300])
                error = response.json["error"]
                assert error["message"] != "This caller may not do that.", (method, path)
                assert error["details"]["allowed"], (method, path)
                caller = "staff (cashier)" if kind == "staff" else kind
                assert error["details"]["caller"] == caller, (method, path)
                checked += 1
    assert checked > 50

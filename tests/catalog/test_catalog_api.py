"""The catalog through HTTP: everyone reads it, admins manage it, prices are integers."""

import pytest

from app.catalog.pricing import ListPrice, price_cart
from app.core.types import utcnow


def product_json(**overrides):
    body = {
        "sku": "AP-TEE-M",
        "barcode": "8900000000017",
        "name": "Logo T-Shirt M",
        "description": "Organic cotton.",
        "category": "apparel",
        "price": {"amount": 2400, "currency": "USD"},
        "image_url": "https://cdn.example/tee.png",
        "nfc_tag_ids": ["04:a1:b2:c3"],
    }
    body.update(overrides)
    return body


def test_admin_adds_a_product_that_everyone_can_read(world, api):
    admin = world.admin_token()
    created = api.post("/v1/products", token=admin, json=product_json(), key=None)
    assert created.status_code == 201, created.json
    assert created.json["price"] == {"amount": 2400, "currency": "USD"}
    assert created.json["nfc_tag_ids"] == ["04A1B2C3"]
    fetched = api.get(f"/v1/products/{created.json['id']}")
    assert fetched.status_code == 200
    assert fetched.json == created.json


@pytest.mark.parametrize(
    "overrides",
    [
        {"price": {"amount": 24.5, "currency": "USD"}},
        {"price": {"amount": "2400", "currency": "USD"}},
        {"price": {"amount": -1, "currency": "USD"}},
        {"price": {"amount": 2400, "currency": "usd"}},
        {"sku": "has spaces"},
        {"colour": "green"},
    ],
)
def test_bad_product_fields_are_refused_and_nothing_is_added(world, api, overrides):
    admin = world.admin_token()
    response = api.post("/v1/products", token=admin, json=product_json(**overrides), key=None)
    assert response.status_code == 422
    assert response.json["error"]["code"] == "validation_error"
    assert api.get("/v1/products").json["items"] == []


def test_product_in_another_currency_is_refused(world, api):
    response = api.post(
        "/v1/products", token=world.admin_token(), key=None,
        json=product_json(price={"amount": 2400, "currency": "EUR"}),
    )  # fmt: skip
    assert response.status_code == 422
    assert response.json["error"]["code"] == "currency_mismatch"


def test_duplicate_sku_barcode_or_tag_is_a_conflict(world, api):
    admin = world.admin_token()
    assert api.post("/v1/products", token=admin, json=product_json(), key=None).status_code == 201
    for clash in (
        product_json(barcode="8900000000024"),
        product_json(sku="OTHER", nfc_tag_ids=[]),
        product_json(sku="OTHER2", barcode="8900000000031", nfc_tag_ids=["04A1B2C3"]),
    ):
        response = api.post("/v1/products", token=admin, json=clash, key=None)
        assert response.status_code == 409, clash
        assert response.json["error"]["code"] == "product_exists"
    assert len(api.get("/v1/products").json["items"]) == 1


def test_only_admins_manage_the_catalog(world, api):
    shopper, _ = world.shopper()
    _, _, cashier = world.till()
    for token, status in ((None, 401), (shopper, 403), (cashier, 403)):
        response = api.post("/v1/products", token=token, json=product_json(), key=None)
        assert response.status_code == status
    assert api.get("/v1/products").json["items"] == []


def test_patch_changes_only_what_is_sent_and_a_new_price_prices_the_next_sale(world, api):
    admin = world.admin_token()
    product = api.post("/v1/products", token=admin, json=product_json(), key=None).json
    patched = api.patch(
        f"/v1/products/{product['id']}", token=admin, key=None,
        json={"price": {"amount": 1999, "currency": "USD"}},
    )  # fmt: skip
    assert patched.status_code == 200
    assert patched.json == product | {"price": {"amount": 1999, "currency": "USD"}}
    _, _, cashier = world.till()
    sale = api.post("/v1/sales", token=cashier, json={
        "lines": [{"sku": "AP-TEE-M", "quantity": 1}],
        "tenders": [{"type": "cash", "amount": {"amount": 1999, "currency": "USD"}}],
    })  # fmt: skip
    assert sale.status_code == 201
    assert sale.json["total"] == {"amount": 1999, "currency": "USD"}


def test_inactive_products_leave_the_catalog_and_cannot_be_sold(world, api):
    admin = world.admin_token()
    product = api.post("/v1/products", token=admin, json=product_json(), key=None).json
    api.patch(f"/v1/products/{product['id']}", token=admin, json={"active": False}, key=None)
    assert api.get("/v1/products").json["items"] == []
    _, _, cashier = world.till()
    sale = api.post("/v1/sales", token=cashier, json={
        "lines": [{"sku": "AP-TEE-M", "quantity": 1}],
        "tenders": [{"type": "cash", "amount": {"amount": 2400, "currency": "USD"}}],
    })  # fmt: skip
    assert sale.status_code == 422
    assert sale.json["error"]["code"] == "unknown_sku"


def test_catalog_pages_walk_every_product_once_newest_first(world, api):
    ids = [world.product(price=100 + n).id for n in range(7)]
    seen, cursor = [], None
    while True:
        query = "/v1/products?limit=3" + (f"&cursor={cursor}" if cursor else "")
        page = api.get(query).json
        seen += [item["id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == sorted(ids, reverse=True)


def test_unknown_product_is_404(api):
    response = api.get("/v1/products/999999")
    assert response.status_code == 404
    assert response.json["error"]["code"] == "product_not_found"


def test_price_cart_uses_list_prices_times_quantities():
    prices = {
        "A": ListPrice(1, "A", "Latte", 445, "USD"),
        "B": ListPrice(2, "B", "Croissant", 325, "USD"),
    }
    cart = price_cart(
        [("A", 2), ("B", 1)], prices, currency="USD", customer_id=None, channel="pos",
        store_id=1, at=utcnow(),
    )  # fmt: skip
    assert [line.line_total_minor for line in cart.lines] == [890, 325]
    assert cart.total_minor == 1215

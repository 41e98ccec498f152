"""Which stores sell a product and whether it is in stock there: everyone reads it, admins
set it (the whole list, or one store), and a refusal changes nothing."""

from __future__ import annotations

import pytest

from app.catalog import services as catalog


def stock(*pairs):
    return {"items": [{"store_id": store.id, "in_stock": in_stock} for store, in_stock in pairs]}


def listed(response):
    return [(item["store"]["name"], item["in_stock"]) for item in response.json["items"]]


def test_a_product_is_sold_nowhere_until_an_admin_says_where(world, api):
    product = world.product()
    response = api.get(f"/v1/products/{product.id}/stores")
    assert response.status_code == 200
    assert response.json == {"items": []}


def test_admin_sets_the_stores_of_a_product_and_anyone_reads_them_by_store_name(world, api):
    product = world.product()
    north, south = world.store(name="North"), world.store(name="South")
    admin = world.admin_token()

    put = api.put(f"/v1/products/{product.id}/stores", token=admin,
                  json=stock((south, False), (north, True)))  # fmt: skip

    assert put.status_code == 200, put.json
    assert listed(put) == [("North", True), ("South", False)]
    assert put.json["items"][0]["store"] == {
        "id": north.id, "code": north.code, "name": "North", "address": ""
    }  # fmt: skip
    assert api.get(f"/v1/products/{product.id}/stores").json == put.json


def test_the_whole_list_replaces_what_was_there(world, api):
    product = world.product()
    north, south, west = (world.store(name=n) for n in ("North", "South", "West"))
    admin = world.admin_token()
    api.put(f"/v1/products/{product.id}/stores", token=admin,
            json=stock((north, True), (south, True)))  # fmt: skip

    put = api.put(f"/v1/products/{product.id}/stores", token=admin,
                  json=stock((south, False), (west, True)))  # fmt: skip

    assert listed(put) == [("South", False), ("West", True)]
    emptied = api.put(f"/v1/products/{product.id}/stores", token=admin, json={"items": []})
    assert emptied.json == {"items": []}


def test_one_store_runs_out_and_is_restocked_leaving_the_others_as_they_were(world, api):
    product = world.product()
    north, south = world.store(name="North"), world.store(name="South")
    admin = world.admin_token()
    api.put(f"/v1/products/{product.id}/stores", token=admin, json=stock((north, True)))

    out = api.put(f"/v1/products/{product.id}/stores/{south.id}", token=admin,
                  json={"in_stock": False})  # fmt: skip
    assert listed(out) == [("North", True), ("South", False)]
    back = api.put(f"/v1/products/{product.id}/stores/{south.id}", token=admin,
                   json={"in_stock": True})  # fmt: skip
    assert listed(back) == [("North", True), ("South", True)]
    gone = api.delete(f"/v1/products/{product.id}/stores/{north.id}", token=admin)
    assert gone.status_code == 200
    assert listed(gone) == [("South", True)]


def test_the_kiosk_question_in_stock_at_this_store(world, api, app):
    product = world.product()
    north, south, west = (world.store(name=n) for n in ("North", "South", "West"))
    api.put(f"/v1/products/{product.id}/stores", token=world.admin_token(),
            json=stock((north, True), (south, False)))  # fmt: skip

    with app.app_context():
        answers = [catalog.in_stock_at(world.db, product.id, s.id) for s in (north, south, west)]

    assert answers == [True, False, None]


def test_an_unknown_store_is_refused_and_nothing_changes(world, api):
    product = world.product()
    north = world.store(name="North")
    admin = world.admin_token()
    api.put(f"/v1/products/{product.id}/stores", token=admin, json=stock((north, True)))

    whole = api.put(f"/v1/products/{product.id}/stores", token=admin, json={"items": [
        {"store_id": north.id, "in_stock": False}, {"store_id": 999999, "in_stock": True},
    ]})  # fmt: skip
    one = api.put(f"/v1/products/{product.id}/stores/999999", token=admin,
                  json={"in_stock": True})  # fmt: skip

    for response in (whole, one):
        assert response.status_code == 404
        assert response.json["error"]["code"] == "store_not_found"
    assert listed(api.get(f"/v1/products/{product.id}/stores")) == [("North", True)]


def test_an_unknown_product_is_404(world, api):
    north = world.store()
    admin = world.admin_token()
    for response in (
        api.get("/v1/products/999999/stores"),
        api.put("/v1/products/999999/stores", token=admin, json=stock((north, True))),
        api.put(f"/v1/products/999999/stores/{north.id}", token=admin, json={"in_stock": True}),
        api.delete(f"/v1/products/999999/stores/{north.id}", token=admin),
    ):
        assert response.status_code == 404
        assert response.json["error"]["code"] == "product_not_found"


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"items": [{"store_id": "{north}"}]},
        {"items": [{"store_id": "{north}", "in_stock": "yes"}]},
        {"items": [{"store_id": "{north}", "in_stock": 1}]},
        {
            "items": [
                {"store_id": "{north}", "in_stock": True},
                {"store_id": "{north}", "in_stock": False},
            ]
        },
        {"items": [{"store_id": 0, "in_stock": True}]},
        {"items": [{"store_id": "{north}", "in_stock": True, "shelf": "A3"}]},
        {"items": {"store_id": "{north}", "in_stock": True}},
    ],
)
def test_bad_lists_are_refused_and_nothing_changes(world, api, body):
    product = world.product()
    north = world.store()
    admin = world.admin_token()
    api.put(f"/v1/products/{product.id}/stores", token=admin, json=stock((north, True)))
    fill = {"{north}": north.id}
    if "items" in body and isinstance(body["items"], list):
        body = {"items": [{k: fill.get(v, v) for k, v in item.items()} for item in body["items"]]}

    response = api.put(f"/v1/products/{product.id}/stores", token=admin, json=body)

    assert response.status_code == 422, response.json
    assert response.json["error"]["code"] == "validation_error"
    assert listed(api.get(f"/v1/products/{product.id}/stores")) == [(north.name, True)]


def test_only_admins_set_where_a_product_is_sold(world, api):
    product = world.product()
    north, south = world.store(name="North"), world.store(name="South")
    api.put(f"/v1/products/{product.id}/stores", token=world.admin_token(),
            json=stock((north, True)))  # fmt: skip
    shopper, _ = world.shopper()
    _, _, cashier = world.till(north)
    _, device_secret = world.device(north, "kiosk")
    staff = world.staff("cashier", store=north)
    from app.auth.services import issue_token

    with api.client.application.app_context():
        cashier_login, _ = issue_token(world.db, "staff", 3600, staff_id=staff.id)

    for token, status in (
        (None, 401),
        (shopper, 403),
        (cashier, 403),
        (device_secret, 403),
        (cashier_login, 403),
    ):
        for response in (
            api.put(f"/v1/products/{product.id}/stores", token=token, json=stock((south, False))),
            api.put(f"/v1/products/{product.id}/stores/{north.id}", token=token,
                    json={"in_stock": False}),
            api.delete(f"/v1/products/{product.id}/stores/{north.id}", token=token),
        ):  # fmt: skip
            assert response.status_code == status, (token, response.json)
    assert listed(api.get(f"/v1/products/{product.id}/stores")) == [("North", True)]


def test_a_signed_in_shoppers_cookie_cannot_set_stores_either(world, api, client):
    product = world.product()
    north = world.store(name="North")
    _, me = world.shopper()
    client.get("/login")
    csrf = client.get_cookie("omnicard_csrf").value
    client.post("/session", json={"email": me["email"], "password": "a long password"},
                headers={"X-CSRF-Token": csrf})  # fmt: skip
    page_csrf = client.get("/").get_data(as_text=True).split('name="csrf-token" content="')[1]
    page_csrf = page_csrf.split('"')[0]

    response = api.put(f"/v1/products/{product.id}/stores", json=stock((north, True)),
                       headers={"X-CSRF-Token": page_csrf})  # fmt: skip

    assert response.status_code == 403
    assert api.get(f"/v1/products/{product.id}/stores").json == {"items": []}


def test_the_openapi_document_describes_the_store_lists(client):
    paths = client.get("/openapi.json").json["paths"]
    stores = paths["/v1/products/{product_id}/stores"]
    assert set(stores) >= {"get", "put"}
    assert "security" not in stores["get"]
    assert stores["put"]["security"] == [{"bearerAuth": []}]
    assert {"401", "403", "404", "422"} <= set(stores["put"]["responses"])
    one = paths["/v1/products/{product_id}/stores/{store_id}"]
    assert set(one) >= {"put", "delete"}

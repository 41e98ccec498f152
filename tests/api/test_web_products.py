"""The product page (/p/<SKU>) through HTTP: public, priced by the one pricing function,
where it is sold; an unknown or withdrawn product gets a page that says so, in the shopper's
language."""

from __future__ import annotations

import json
import re
from html import unescape

import pytest

from app.web.products import picture_url


def page_prices(response) -> dict:
    found = re.search(
        r'<script type="application/json" id="product-prices">(.*?)</script>',
        response.get_data(as_text=True),
        re.S,
    )
    assert found, "the page carries no prices"
    return json.loads(found.group(1))


def test_anyone_sees_a_product_page_with_its_picture_name_description_and_price(world, client):
    product = world.product(
        sku="DW-MUG", price=1495, name="Siren Mug", description="Dishwasher safe."
    )

    response = client.get("/p/DW-MUG")

    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert "Siren Mug" in html and "Dishwasher safe." in html
    assert f'src="/media/products/{product.id}.svg"' in html
    assert page_prices(response)["price"] == {"amount": 1495, "currency": "USD"}
    assert response.headers["Cache-Control"] == "no-store"
    assert "script-src 'self'" in response.headers["Content-Security-Policy"]


def test_the_page_follows_a_price_change_made_through_the_api(world, api, client):
    product = world.product(sku="DW-CUP", price=1795)
    admin = world.admin_token()
    price = {"amount": 1650, "currency": "USD"}
    changed = api.patch(f"/v1/products/{product.id}", token=admin, json={"price": price})
    assert changed.status_code == 200, changed.json

    assert page_prices(client.get("/p/DW-CUP"))["price"] == {"amount": 1650, "currency": "USD"}


def test_a_signed_in_shopper_sees_the_price_made_for_them(world, client):
    world.product(sku="BN-PIKE", price=1700)
    _, me = world.shopper()
    log_in(client, me["email"])

    response = client.get("/p/BN-PIKE")

    assert page_prices(response) == {
        "price": {"amount": 1700, "currency": "USD"},
        "list_price": {"amount": 1700, "currency": "USD"},
    }
    html = response.get_data(as_text=True)
    assert "Your price" in html
    assert 'href="/pay"' in html  # the signed-in frame, with its navigation


def log_in(client, email: str) -> None:
    client.get("/login")
    csrf = client.get_cookie("omnicard_csrf").value
    response = client.post(
        "/session", json={"email": email, "password": "a long password"},
        headers={"X-CSRF-Token": csrf},
    )  # fmt: skip
    assert response.status_code == 200, response.json


def test_the_page_lists_the_stores_that_sell_the_product_and_their_stock(world, api, client):
    product = world.product(sku="AP-CAP")
    north, south = world.store(name="North"), world.store(name="South")
    world.store(name="West")
    stock = [{"store_id": north.id, "in_stock": True}, {"store_id": south.id, "in_stock": False}]
    put = api.put(f"/v1/products/{product.id}/stores", token=world.admin_token(),
                  json={"items": stock})  # fmt: skip
    assert put.status_code == 200, put.json

    html = client.get("/p/AP-CAP").get_data(as_text=True)

    assert "North" in html and "South" in html and "West" not in html
    assert re.search(r"North.*?In stock", html, re.S)
    assert re.search(r"South.*?Out of stock", html, re.S)


def test_a_product_no_store_sells_says_so(world, client):
    world.product(sku="AP-SOCKS")
    assert "No store sells this right now." in client.get("/p/AP-SOCKS").get_data(as_text=True)


@pytest.mark.parametrize("sku", ["NO-SUCH-SKU", "dw-mug", "DW-MUG-", "WITHDRAWN", ""])
def test_an_unknown_or_withdrawn_sku_gets_a_404_page_not_json(world, client, sku):
    world.product(sku="DW-MUG")
    world.product(sku="WITHDRAWN", active=False)

    response = client.get(f"/p/{sku}")

    assert response.status_code == 404
    assert response.mimetype == "text/html"
    html = unescape(response.get_data(as_text=True))
    assert "can't find that product" in html
    assert 'href="/"' in html


def test_the_404_page_speaks_the_shoppers_language(client):
    response = client.get("/p/NOPE", headers={"Accept-Language": "es-ES,es;q=0.9"})

    assert response.status_code == 404
    html = response.get_data(as_text=True)
    assert '<html lang="es">' in html
    assert "No encontramos ese producto" in html


def test_the_page_speaks_spanish_when_chosen(world, client):
    world.product(sku="TE-CHAI")
    client.set_cookie("lang", "es")

    html = client.get("/p/TE-CHAI").get_data(as_text=True)

    assert '<html lang="es">' in html
    assert "Dónde comprarlo" in html and "Precio" in html


@pytest.mark.parametrize(
    ("image_url", "shown"),
    [
        ("", "tile"),
        ("http://127.0.0.1:5000/media/products/{id}.svg", "tile"),
        ("https://cdn.example/mug.png", "tile"),
        ("//cdn.example/mug.png", "tile"),
        ("http://127.0.0.1:5000/media/products/999999.svg", "tile"),
        ("/static/pictures/mug.png", "/static/pictures/mug.png"),
    ],
)
def test_the_picture_is_loaded_from_this_site_only(world, app, image_url, shown):
    product = world.product()
    product.image_url = image_url.format(id=product.id)
    expected = f"/media/products/{product.id}.svg" if shown == "tile" else shown
    assert picture_url(product) == expected

"""Each view reads its request with the one schema instance it was declared with: no schema
is made per request (making one copies every field, and its nested schemas with it), and
requests read at once by many threads each get their own answer."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import marshmallow as ma
import pytest

from app.sales.api import SaleRequestSchema


@pytest.fixture
def made(monkeypatch) -> list[str]:
    """The name of every schema made from now on."""
    names: list[str] = []
    init = ma.Schema.__init__

    def counting(self, *args, **kwargs):
        names.append(type(self).__name__)
        init(self, *args, **kwargs)

    monkeypatch.setattr(ma.Schema, "__init__", counting)
    return names


def sale(sku: str, quantity: int, amount: int) -> dict:
    return {
        "customer": {"card_number": "4" * 16},
        "lines": [{"sku": sku, "quantity": quantity}],
        "tenders": [{"type": "cash", "amount": {"amount": amount, "currency": "USD"}}],
    }


def test_a_sale_request_is_read_without_making_a_schema(api, world, made):
    _store, _device, cashier = world.till()
    world.product(sku="LATTE", price=450)
    first = api.post("/v1/sales", token=cashier, json=sale("LATTE", 1, 450))
    assert first.status_code == 422  # no such card; read and checked all the same
    made.clear()
    again = api.post("/v1/sales", token=cashier, json=sale("LATTE", 2, 900))
    assert again.status_code == 422, again.json
    refused = api.post("/v1/sales", token=cashier, json={"lines": [{"sku": ""}]})
    assert refused.status_code == 422
    assert set(refused.json["error"]["details"]["fields"]["json"]) == {"lines", "tenders"}
    assert made == []


def test_one_schema_reads_many_requests_at_once_each_as_its_own():
    schema = SaleRequestSchema()
    bodies = []
    for n in range(400):
        body = sale(f"SKU-{n}", n % 7 + 1, 450 * (n % 7 + 1))
        if n % 3 == 0:
            body["lines"][0]["quantity"] = 0  # out of range: refused, for this one only
        if n % 5 == 0:
            body["tenders"][0]["type"] = f"coupon-{n}"
        bodies.append(body)

    def read(body: dict) -> str:
        try:
            return "read " + json.dumps(schema.load(body), sort_keys=True, default=str)
        except ma.ValidationError as refused:
            return "refused " + json.dumps(refused.messages, sort_keys=True)

    alone = [read(body) for body in bodies]
    with ThreadPoolExecutor(max_workers=8) as pool:
        for _ in range(5):
            assert list(pool.map(read, bodies)) == alone
    refused = [n for n, answer in enumerate(alone) if answer.startswith("refused")]
    assert refused == [n for n in range(400) if n % 3 == 0 or n % 5 == 0]
    assert all(f"SKU-{n}" in alone[n] for n in range(400) if n not in refused)


def test_a_website_forms_body_is_read_without_making_a_schema(app, made):
    from app.web.pages import WebLoginSchema, json_body

    body = {"account": "shopper", "email": "ada@example.test", "password": "a long password"}
    with app.test_request_context("/login", method="POST", json=body):
        first = json_body(WebLoginSchema)
    made.clear()
    with app.test_request_context("/login", method="POST", json=body):
        again = json_body(WebLoginSchema)
    assert again == first and again["email"] == "ada@example.test"
    assert made == []

"""The README's run command loads demo data that a new user can use right away."""

import json

from sqlalchemy import func, select

from app.auth.models import Staff
from app.catalog.models import Product
from app.customers.models import Customer
from app.ledger.models import LedgerTransaction
from app.stores.models import Device, Store


def count(db, model, *where):
    return db.scalar(select(func.count()).select_from(model).where(*where))


def test_demo_load_creates_a_usable_programme_and_says_how_to_use_it(app, db, api, tmp_path):
    original, app.config["DEMO_FILE"] = app.config["DEMO_FILE"], str(tmp_path / "demo.json")
    try:
        result = app.test_cli_runner().invoke(args=["demo", "load"])
        again = app.test_cli_runner().invoke(args=["demo", "load"])
    finally:
        app.config["DEMO_FILE"] = original
    assert result.exit_code == 0, result.output
    assert "Demo data loaded." in result.output
    assert "Demo data was there already." in again.output
    assert count(db, Store) == 2
    assert count(db, Product) >= 30
    assert count(db, Product, Product.image_url == "") == 0
    assert count(db, Device, Device.kind == "pos") == 2
    assert count(db, Device, Device.kind == "kiosk") == 2
    assert count(db, Staff, Staff.role == "admin") == 1
    assert count(db, Staff, Staff.role == "cashier") == 2
    assert count(db, Customer) == 3
    assert count(db, LedgerTransaction) >= 9

    info = json.loads((tmp_path / "demo.json").read_text())
    shopper = info["shoppers"][0]
    login = api.post(
        "/v1/auth/login",
        json={"email": shopper["email"], "password": shopper["password"]},
        key=None,
    )
    assert login.status_code == 200
    me = api.get("/v1/me", token=login.json["token"]).json
    assert me["stars"] > 0
    assert me["cards"][0]["balance"]["amount"] > 0
    store = info["stores"][0]
    session = api.post("/v1/pos/sessions", token=store["pos"]["secret"], key=None,
                       json={"staff_code": store["cashier"]["staff_code"],
                             "pin": store["cashier"]["pin"]})  # fmt: skip
    assert session.status_code == 201
    image = api.get(f"/media/products/{api.get('/v1/products').json['items'][0]['id']}.svg")
    assert image.status_code == 200
    assert image.mimetype == "image/svg+xml"

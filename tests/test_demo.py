"""The README's run command loads demo data that a new user can use right away."""

import json
from pathlib import Path

from sqlalchemy import func, select

from app.auth.models import Staff
from app.catalog.models import Product, StoreProduct
from app.core import config
from app.customers.models import Customer
from app.kiosk.models import KioskTap
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
    # Every product is sold somewhere, and some shelves are empty.
    assert count(db, Product, ~Product.id.in_(select(StoreProduct.product_id))) == 0
    assert count(db, StoreProduct, StoreProduct.in_stock.is_(False)) >= 1
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
    # Its kiosk knows the shelves' tags, shows a drink's sizes and suggests from past visits.
    assert count(db, KioskTap) >= 15
    tap = api.post("/v1/kiosk/taps", token=store["kiosk"]["secret"], key=None, json={
        "tap_ref": "demo-check", "tapped_at": "2026-12-05T10:00:00Z", "uid": "04A1B2C3D4E5F9",
        "uris": [], "texts": [], "unreadable": False})  # fmt: skip
    assert tap.status_code == 201, tap.json
    screen = tap.json["screen"]
    assert screen["product"]["sku"] == "CF-LATTE-G"
    assert [v["sku"] for v in screen["product"]["variants"]] == [
        "CF-LATTE-T", "CF-LATTE-G", "CF-LATTE-V"]  # fmt: skip
    assert screen["suggestions"]
    image = api.get(f"/media/products/{api.get('/v1/products').json['items'][0]['id']}.svg")
    assert image.status_code == 200
    assert image.mimetype == "image/svg+xml"


def run_demo(app, demo_file, *args):
    original, app.config["DEMO_FILE"] = app.config["DEMO_FILE"], str(demo_file)
    try:
        return app.test_cli_runner().invoke(args=["demo", *args])
    finally:
        app.config["DEMO_FILE"] = original


def test_each_database_has_a_demo_file_of_its_own(monkeypatch):
    monkeypatch.delenv("OMNICARD_DEMO_FILE", raising=False)
    files = {}
    for url in (
        None,
        "postgresql://omnicard:secret@db.example/omnicard",
        "postgresql://omnicard@db.example/staging",
        "sqlite:////srv/other.sqlite3",
    ):
        if url is None:
            monkeypatch.delenv("DATABASE_URL", raising=False)
        else:
            monkeypatch.setenv("DATABASE_URL", url)
        files[url] = config.from_environment()["DEMO_FILE"]

    assert files[None] == str(config.INSTANCE_DIR / "demo.json")
    assert len(set(files.values())) == 4
    assert all(Path(f).parent == config.INSTANCE_DIR for f in files.values())
    assert not any("secret" in f for f in files.values())


def test_a_demo_file_left_by_another_database_is_never_shown_for_this_one(app, db, tmp_path):
    ours, theirs = tmp_path / "ours.json", tmp_path / "theirs.json"
    assert run_demo(app, ours, "load").exit_code == 0
    other = json.loads(ours.read_text())
    other["admin"]["password"] = "the-other-databases-password"
    other["stores"][0]["pos"]["secret"] = "ocd_the_other_databases_till"
    theirs.write_text(json.dumps(other))

    shown = run_demo(app, theirs, "load")

    assert shown.exit_code == 0, shown.output
    assert "the-other-databases-password" not in shown.output
    assert "ocd_the_other_databases_till" not in shown.output
    assert "no demo file here describes it" in shown.output
    refused = run_demo(app, theirs, "get", "stores.0.pos.secret")
    assert refused.exit_code != 0
    assert "ocd_the_other_databases_till" not in refused.output


def test_demo_get_prints_one_value_of_this_databases_demo_file(app, db, tmp_path):
    demo = tmp_path / "demo.json"
    assert run_demo(app, demo, "load").exit_code == 0
    info = json.loads(demo.read_text())

    secret = run_demo(app, demo, "get", "stores.0.pos.secret")
    card = run_demo(app, demo, "get", "shoppers.0.card_number")

    assert secret.output.strip() == info["stores"][0]["pos"]["secret"]
    assert card.output.strip() == info["shoppers"][0]["card_number"]
    assert run_demo(app, demo, "get", "stores.9.pos").exit_code != 0

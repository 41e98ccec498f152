"""A live Omnicard server process, and a world to sell in: a store with a till (its device
secret), a cashier, products with barcodes, and shoppers with loaded cards. For the tests that
meet the server across the network as its clients do: the till's (tests/pos_client/) and the
website's in a browser (tests/web/).

The server is a process of its own (``tests/server.py``) on the test database: it can be
stopped and started again on the same port. Its cookies are not marked Secure
(``OMNICARD_SECURE_COOKIES=0``): it serves plain HTTP on 127.0.0.1, and a browser would not
send a Secure cookie there. Setup goes through the API in the test process (its writes commit
for real); what the server process's event hub must hear (a shopper's top-up, a sale) goes to
the server itself (``via_server``, ``World.http``).

A package's conftest takes the fixtures it needs from here (``server``, ``admin``, ``world``):
they are package-scoped, so each package of tests has a server of its own and its tables are
emptied after it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
from sqlalchemy import func, select, text

from app.auth.services import create_staff, issue_token
from app.core.db import session
from app.core.settings import settings
from app.ledger.verify import verify
from tests.conftest import ROOT, TABLES_TO_EMPTY


class ServerProcess:
    def __init__(self, database_url: str):
        self.database_url = database_url
        self.port = 0
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        env = dict(
            os.environ,
            DATABASE_URL=self.database_url,
            PYTHONPATH=str(ROOT),
            OMNICARD_SECURE_COOKIES="0",
        )
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.server", str(self.port)], cwd=ROOT,
            env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        line = self.process.stdout.readline()
        self.process.stdout.close()
        if not line.strip():
            self.process.wait(timeout=10)
            raise RuntimeError(f"the test server did not start (exit {self.process.returncode})")
        self.port = int(line)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def empty_tables(engine) -> None:
    """After tests that committed for real: every table as the migrations left it."""
    with engine.begin() as c:
        if engine.dialect.name == "postgresql":
            c.execute(text(f"TRUNCATE {', '.join(TABLES_TO_EMPTY)} RESTART IDENTITY CASCADE"))
        else:
            for table in TABLES_TO_EMPTY:
                c.execute(text(f"DELETE FROM {table}"))


@dataclass
class Shopper:
    token: str
    card_id: int
    number: str
    email: str = ""
    password: str = ""
    name: str = ""


@dataclass
class World:
    """One store's till and what it sells, made fresh for a test."""

    app: object
    server: ServerProcess
    admin: str
    store_id: int
    device_secret: str
    staff_code: str
    pin: str
    skus: dict[str, str]  # short name -> SKU
    barcodes: dict[str, str]  # short name -> barcode
    product_ids: dict[str, int]  # short name -> product id
    prices: dict[str, int]  # short name -> price in minor units

    def call(self, method, path, token=None, json=None, key=True):
        """Through the app in the test process (its writes commit for real)."""
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        if key and method != "GET":
            headers["Idempotency-Key"] = uuid.uuid4().hex
        return self.app.test_client().open(path, method=method, json=json, headers=headers)

    def http(self, method, path, token=None, json=None, key=True, url=None) -> httpx.Response:
        """Through the server process, over HTTP: its event hub hears what this changes."""
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        if key and method != "GET":
            headers["Idempotency-Key"] = uuid.uuid4().hex
        return httpx.request(
            method, f"{url or self.server.url}{path}", json=json, headers=headers, timeout=10
        )

    def shopper(self, load_minor: int = 0, name: str = "Ada") -> Shopper:
        email = f"{uuid.uuid4().hex[:10]}@example.test"
        password = "a long password"
        r = self.call("POST", "/v1/auth/signup", json={
            "email": email, "password": password, "name": name}, key=False)  # fmt: skip
        assert r.status_code == 201, r.json
        token = r.json["token"]
        card_id = r.json["customer"]["cards"][0]["id"]
        if load_minor:
            self.top_up(token, card_id, load_minor)
        return Shopper(token, card_id, self.card_number(card_id), email, password, name)

    def top_up(self, token: str, card_id: int, amount: int, *, via_server: bool = False, url=None):
        body = {"amount": {"amount": amount, "currency": "USD"}, "payment_token": "tok_visa"}
        if via_server:  # the server process's hub hears it at once
            r = self.http("POST", f"/v1/cards/{card_id}/top-ups", token, body, url=url)
            assert r.status_code == 201, r.text
            return r.json()
        r = self.call("POST", f"/v1/cards/{card_id}/top-ups", token, body)
        assert r.status_code == 201, r.json
        return r.json

    def other_till(self) -> str:
        """A cashier session on another till of the store."""
        device = self.call("POST", "/v1/admin/devices", self.admin, {
            "store_id": self.store_id, "kind": "pos", "name": "Till 2"}, key=False)  # fmt: skip
        assert device.status_code == 201, device.json
        r = self.call("POST", "/v1/pos/sessions", device.json["secret"],
                      {"staff_code": self.staff_code, "pin": self.pin}, key=False)  # fmt: skip
        assert r.status_code == 201, r.json
        return r.json["token"]

    def card_number(self, card_id: int) -> str:
        from app.cards.models import Card

        with self.app.app_context():
            return session().get(Card, card_id).number

    def balance(self, card_id: int) -> int:
        from app.cards.models import Card
        from app.cards.services import card_balance

        with self.app.app_context():
            return card_balance(session(), session().get(Card, card_id))

    def owned(self, card_id: int) -> int:
        """The card's balance with what offline allowances hold of it."""
        from app.cards.models import Card
        from app.cards.services import card_balance, held_balance

        with self.app.app_context():
            card = session().get(Card, card_id)
            return card_balance(session(), card) + held_balance(session(), card)

    def sales(self) -> list:
        """This store's sales in the database (id, total, offline receipt or not)."""
        from app.sales.models import Sale

        with self.app.app_context():
            rows = session().execute(
                select(Sale.id, Sale.total_minor, Sale.card_id)
                .where(Sale.store_id == self.store_id)
                .order_by(Sale.id)  # fmt: skip
            )
            return [tuple(r) for r in rows]

    def sale_count(self) -> int:
        from app.sales.models import Sale

        with self.app.app_context():
            return session().scalar(
                select(func.count()).select_from(Sale).where(Sale.store_id == self.store_id)
            )

    def verify_ledger(self) -> None:
        with self.app.app_context():
            report = verify(session())
            assert report.ok, "\n".join(report.lines())


def make_world(app, server: ServerProcess, admin: str, cls: type[World] = World) -> World:
    code = uuid.uuid4().hex[:6]
    client = app.test_client()

    def post(path, body):
        r = client.post(path, json=body, headers={"Authorization": f"Bearer {admin}"})
        assert r.status_code == 201, r.json
        return r.json

    store = post("/v1/admin/stores", {"code": f"s-{code}", "name": f"Store {code}"})
    device = post("/v1/admin/devices", {"store_id": store["id"], "kind": "pos", "name": "Till 1"})
    with app.app_context():
        create_staff(
            session(), settings(), email=f"{code}@cashier.test", name="Grace Hopper",
            role="cashier", password="correct horse battery", staff_code=f"K{code}", pin="2468",
            store_id=store["id"],
        )  # fmt: skip
        session().commit()
    digits = str(int(code, 16)).zfill(8)[-8:]
    products = {"latte": ("LATTE", 445, "40" + digits + "123"), "bagel": ("BAGEL", 300, None),
                "mug": ("MUG", 1250, "7" + digits + "12")}  # fmt: skip
    skus, barcodes, ids, prices = {}, {}, {}, {}
    for short, (name, price, barcode) in products.items():
        sku = f"{name}-{code}"
        ids[short] = post(
            "/v1/products",
            {
                "sku": sku,
                "name": f"{name.title()} {code}",
                "category": "test",
                "barcode": barcode,
                "price": {"amount": price, "currency": "USD"},
            },
        )["id"]
        skus[short] = sku
        prices[short] = price
        if barcode:
            barcodes[short] = barcode
    return cls(app, server, admin, store["id"], device["secret"], f"K{code}", "2468",
               skus, barcodes, ids, prices)  # fmt: skip


@pytest.fixture(scope="package")
def server(app, engine, database_url) -> Iterator[ServerProcess]:
    """One real server for a package's tests; the tables are emptied after them."""
    process = ServerProcess(database_url)
    process.start()
    yield process
    process.stop()
    empty_tables(engine)


@pytest.fixture(scope="package")
def admin(app, server) -> str:
    with app.app_context():
        staff = create_staff(
            session(), settings(), email=f"{uuid.uuid4().hex[:8]}@staff.test", name="Admin",
            role="admin", password="correct horse battery",
        )  # fmt: skip
        token, _ = issue_token(session(), "staff", 3600, staff_id=staff.id)
        session().commit()
    return token


@pytest.fixture
def world(app, server, admin) -> World:
    return make_world(app, server, admin)

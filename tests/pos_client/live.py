"""A live Omnicard server process for the till's tests, and a world to sell in: a store with
a till (its device secret), a cashier, products with barcodes, and shoppers with loaded cards.

The server is a process of its own (``tests/pos_client/server.py``) on the test database, as
a till meets it across the network: it can be stopped and started again on the same port.
Setup goes through the API in the test process (its writes commit for real); what the server
process's event hub must hear (a shopper's top-up during a sale) goes to the server itself.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select, text

from app.auth.services import create_staff, issue_token
from app.core.db import database, session
from app.ledger.verify import verify
from tests.conftest import ROOT, TABLES_TO_EMPTY


class ServerProcess:
    def __init__(self, database_url: str):
        self.database_url = database_url
        self.port = 0
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        env = dict(os.environ, DATABASE_URL=self.database_url, PYTHONPATH=str(ROOT))
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.pos_client.server", str(self.port)], cwd=ROOT,
            env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        self.port = int(self.process.stdout.readline())
        self.process.stdout.close()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@dataclass
class Shopper:
    token: str
    card_id: int
    number: str


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

    def call(self, method, path, token=None, json=None, key=True):
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        if key and method != "GET":
            headers["Idempotency-Key"] = uuid.uuid4().hex
        return self.app.test_client().open(path, method=method, json=json, headers=headers)

    def shopper(self, load_minor: int = 0, name: str = "Ada") -> Shopper:
        r = self.call("POST", "/v1/auth/signup", json={
            "email": f"{uuid.uuid4().hex[:10]}@example.test", "password": "a long password",
            "name": name}, key=False)  # fmt: skip
        assert r.status_code == 201, r.json
        token = r.json["token"]
        card_id = r.json["customer"]["cards"][0]["id"]
        if load_minor:
            self.top_up(token, card_id, load_minor)
        return Shopper(token, card_id, self.card_number(card_id))

    def top_up(self, token: str, card_id: int, amount: int, *, via_server: bool = False):
        body = {"amount": {"amount": amount, "currency": "USD"}, "payment_token": "tok_visa"}
        if via_server:  # the server process's hub hears it at once
            r = httpx.post(
                f"{self.server.url}/v1/cards/{card_id}/top-ups",
                json=body,
                headers={"Authorization": f"Bearer {token}", "Idempotency-Key": uuid.uuid4().hex},
                timeout=10,
            )
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

    def config_text(self, state_dir: Path, *, api_url: str | None = None, allowance=2500,
                    read_s: float = 5.0, printer: str | None = None) -> str:  # fmt: skip
        printer = printer if printer is not None else f"file:{state_dir}/receipts.bin"
        return f"""
api_url = "{api_url or self.server.url}"
device_secret = "{self.device_secret}"
state_dir = "{state_dir}"
[printer]
target = "{printer}"
[offline]
allowance_minor = {allowance}
[timeouts]
connect_s = 2.0
read_s = {read_s}
replay_s = 0.2
"""


def make_world(app, server: ServerProcess, admin: str) -> World:
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
            session(), email=f"{code}@cashier.test", name="Grace Hopper", role="cashier",
            password="correct horse battery", staff_code=f"K{code}", pin="2468",
            store_id=store["id"],
        )  # fmt: skip
        session().commit()
    digits = str(int(code, 16)).zfill(8)[-8:]
    products = {"latte": ("LATTE", 445, "40" + digits + "123"), "bagel": ("BAGEL", 300, None),
                "mug": ("MUG", 1250, "7" + digits + "12")}  # fmt: skip
    skus, barcodes = {}, {}
    for short, (name, price, barcode) in products.items():
        sku = f"{name}-{code}"
        post(
            "/v1/products",
            {
                "sku": sku,
                "name": f"{name.title()} {code}",
                "category": "test",
                "barcode": barcode,
                "price": {"amount": price, "currency": "USD"},
            },
        )
        skus[short] = sku
        if barcode:
            barcodes[short] = barcode
    return World(app, server, admin, store["id"], device["secret"], f"K{code}", "2468",
                 skus, barcodes)  # fmt: skip


@pytest.fixture(scope="package")
def server(app, engine, database_url) -> Iterator[ServerProcess]:
    """One real server for the till's tests; the tables are emptied after them."""
    process = ServerProcess(database_url)
    process.start()
    yield process
    process.stop()
    with engine.begin() as c:
        if engine.dialect.name == "postgresql":
            c.execute(text(f"TRUNCATE {', '.join(TABLES_TO_EMPTY)} RESTART IDENTITY CASCADE"))
        else:
            for table in TABLES_TO_EMPTY:
                c.execute(text(f"DELETE FROM {table}"))


@pytest.fixture(scope="package")
def admin(app, server) -> str:
    with app.app_context():
        staff = create_staff(
            session(), email=f"{uuid.uuid4().hex[:8]}@staff.test", name="Admin", role="admin",
            password="correct horse battery",
        )  # fmt: skip
        token, _ = issue_token(session(), "staff", 3600, staff_id=staff.id)
        session().commit()
    return token


@pytest.fixture
def world(app, server, admin) -> World:
    return make_world(app, server, admin)


@pytest.fixture
def config_path(world, tmp_path) -> Path:
    path = tmp_path / "pos.toml"
    path.write_text(world.config_text(tmp_path / "state"))
    return path


class Changes:
    """What the till announced through on_change, to wait on (bounded) from the test."""

    def __init__(self):
        self.seen: list[str] = []
        self._cond = threading.Condition()

    def __call__(self, what: str) -> None:
        with self._cond:
            self.seen.append(what)
            self._cond.notify_all()

    def wait_for(self, predicate, timeout_s: float = 10.0) -> None:
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while not predicate():
                left = deadline - time.monotonic()
                assert left > 0, f"timed out; changes seen: {self.seen[-20:]}"
                self._cond.wait(left)


def database_of(app):
    return database(app)


class Swallower:
    """A stand-in for the API in front of `upstream`: it takes each sale and never answers.
    With `reaches_server`, it first passes the sale on to the server (which does it) and
    throws the answer away: the till cannot know whether its sale went through. Other
    requests pass through."""

    def __init__(self, upstream: str, *, reaches_server: bool, swallow: str = "/v1/sales"):
        self.upstream = upstream
        self.reaches_server = reaches_server
        self.swallow = swallow
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.received = threading.Event()
        self.forwarded = threading.Event()
        self._held: list[socket.socket] = []
        threading.Thread(target=self._serve, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self._held.append(conn)
            threading.Thread(target=self._take, args=(conn,), daemon=True).start()

    def _take(self, conn: socket.socket) -> None:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(65536)
            if not chunk:
                return
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        while len(body) < length:
            body += conn.recv(65536)
        method, path, _ = head.split(b"\r\n")[0].decode().split(" ")
        swallowed = path == self.swallow
        if swallowed:
            self.received.set()
            if not self.reaches_server:
                return
        headers = {}
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() in (b"authorization", b"idempotency-key", b"content-type"):
                headers[name.strip().decode()] = value.strip().decode()
        answer = httpx.request(method, self.upstream + path, content=body, headers=headers,
                               timeout=10)  # fmt: skip
        if swallowed:
            self.forwarded.set()
            return
        conn.sendall(
            f"HTTP/1.1 {answer.status_code} X\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(answer.content)}\r\nConnection: close\r\n\r\n".encode()
            + answer.content
        )
        conn.close()

    def close(self) -> None:
        self.sock.close()
        for conn in self._held:
            conn.close()

"""A real Omnicard server on 127.0.0.1 with its event hub running, and a real SSE client."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
from werkzeug.serving import make_server

from app import create_app
from app.auth.services import issue_token
from app.core.db import database, session
from app.core.settings import settings
from tests.conftest import ROOT, TEST_CONFIG


class Quiet(Exception):
    """Only heartbeats came: the stream has nothing (more) for this subscriber."""


@dataclass
class Received:
    id: int
    type: str
    data: dict


class Stream:
    """An open ``GET /v1/events`` connection, read event by event."""

    def __init__(self, port: int, token: str, last_event_id: int | None = None, timeout=10.0):
        self.timeout = timeout
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        lines = [
            "GET /v1/events HTTP/1.1",
            f"Host: 127.0.0.1:{port}",
            f"Authorization: Bearer {token}",
            "Accept: text/event-stream",
        ]
        if last_event_id is not None:
            lines.append(f"Last-Event-ID: {last_event_id}")
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        self.fp = self.sock.makefile("rb")
        self.status = int(self.fp.readline().split()[1])
        self.headers = {}
        while (line := self.fp.readline().decode().strip()) != "":
            name, _, value = line.partition(": ")
            self.headers[name.lower()] = value
        self.heartbeats = 0

    def set_timeout(self, seconds: float) -> None:
        self.timeout = seconds
        self.sock.settimeout(seconds)

    def next(self, quiet_after_heartbeats: int | None = None) -> Received:
        """The next event. Raises Quiet once that many heartbeats pass without one, and
        TimeoutError if no event arrives within the stream's timeout, heartbeats or not."""
        fields: dict[str, str] = {}
        heartbeats = 0
        deadline = time.monotonic() + self.timeout
        while True:
            if time.monotonic() > deadline:
                raise TimeoutError(f"no event within {self.timeout} s")
            line = self.fp.readline()
            if not line:
                raise ConnectionError("stream closed")
            line = line.decode().rstrip("\n")
            if line == "":
                if "data" in fields:
                    return Received(int(fields["id"]), fields["event"], json.loads(fields["data"]))
                fields = {}
                continue
            if line.startswith(":"):
                self.heartbeats += 1
                heartbeats += 1
                if quiet_after_heartbeats is not None and heartbeats >= quiet_after_heartbeats:
                    raise Quiet()
                continue
            name, _, value = line.partition(": ")
            fields[name] = value

    def until(self, predicate, limit: int = 1000) -> list[Received]:
        """Events up to and including the first one ``predicate`` accepts."""
        seen = []
        for _ in range(limit):
            event = self.next()
            seen.append(event)
            if predicate(event):
                return seen
        raise AssertionError(f"no matching event in {limit}: {seen[-5:]}")

    def close(self) -> None:
        self.fp.close()
        self.sock.close()


class Live:
    """A served app plus helpers to act on it for real (every request commits)."""

    def __init__(self, app, port: int):
        self.app, self.port = app, port
        self.client = app.test_client()
        self.streams: list[Stream] = []

    def call(self, method, path, token=None, json_body=None, key=True):
        headers = {}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        if key and method != "GET":
            headers["Idempotency-Key"] = uuid.uuid4().hex
        response = self.client.open(path, method=method, json=json_body, headers=headers)
        return response

    def stream(self, token, last_event_id=None, timeout=10.0, port=None) -> Stream:
        stream = Stream(port or self.port, token, last_event_id, timeout)
        self.streams.append(stream)
        return stream

    def shopper(self, name="Ada"):
        email = f"{uuid.uuid4().hex[:10]}@example.test"
        r = self.call("POST", "/v1/auth/signup", json_body={
            "email": email, "password": "a long password", "name": name}, key=False)  # fmt: skip
        assert r.status_code == 201, r.json
        return r.json["token"], r.json["customer"]

    def admin_token(self):
        from app.auth.services import create_staff

        with self.app.app_context():
            admin = create_staff(
                session(), settings(), email=f"{uuid.uuid4().hex[:8]}@staff.test", name="Admin",
                role="admin", password="correct horse battery",
            )  # fmt: skip
            token, _ = issue_token(session(), "staff", 3600, staff_id=admin.id)
            session().commit()
            return token

    def till(self, admin, store=None):
        """A POS terminal, in a new store or the one given, with a cashier signed in on it:
        (store, device, cashier token)."""
        from app.auth.services import create_staff

        code = uuid.uuid4().hex[:6]
        if store is None:
            store = self.call(
                "POST",
                "/v1/admin/stores",
                admin,
                {"code": f"s-{code}", "name": f"Store {code}"},
                key=False,
            ).json
        device = self.call(
            "POST",
            "/v1/admin/devices",
            admin,
            {"store_id": store["id"], "kind": "pos", "name": "Till"},
            key=False,
        ).json
        with self.app.app_context():
            cashier = create_staff(
                session(), settings(), email=f"{code}@cashier.test", name="Cashier", role="cashier",
                password="correct horse battery", staff_code=f"K{code}", pin="2468",
                store_id=store["id"],
            )  # fmt: skip
            session().commit()
        signed = self.call(
            "POST",
            "/v1/pos/sessions",
            device["secret"],
            {"staff_code": cashier.staff_code, "pin": "2468"},
            key=False,
        )
        assert signed.status_code == 201, signed.json
        return store, device, signed.json["token"]

    def product(self, admin, sku, price):
        r = self.call("POST", "/v1/products", admin, {
            "sku": sku, "name": sku, "category": "coffee",
            "price": {"amount": price, "currency": "USD"}}, key=False)  # fmt: skip
        assert r.status_code == 201, r.json

    def card_number(self, card_id):
        from app.cards.models import Card

        with self.app.app_context():
            return session().get(Card, card_id).number

    def load(self, card_id, amount, cashier):
        r = self.call(
            "POST",
            f"/v1/cards/{card_id}/top-ups",
            cashier,
            {"amount": {"amount": amount, "currency": "USD"}, "tender": "cash"},
        )
        assert r.status_code == 201, r.json

    def sell(self, cashier, card_number, sku, price):
        r = self.call("POST", "/v1/sales", cashier, {
            "customer": {"card_number": card_number},
            "lines": [{"sku": sku, "quantity": 1}],
            "tenders": [{"type": "card_balance", "amount": {"amount": price, "currency": "USD"}}],
        })  # fmt: skip
        assert r.status_code == 201, r.json
        return r.json


@pytest.fixture
def hub_here():
    """Whether the test process runs an event hub of its own (off: only the servers do)."""
    return True


@pytest.fixture
def live_config():
    """Settings a test module gives its served app."""
    return {}


@pytest.fixture
def live(database_url, committed, hub_here, live_config):
    # The hub's own look for new events is put off for a minute: every event must reach the
    # streams because its commit woke the hub, as in production, within the streams' 10 s.
    app = create_app(TEST_CONFIG | {
        "DATABASE_URL": database_url, "EVENTS_HUB": hub_here, "EVENTS_HEARTBEAT_S": 1,
        "EVENTS_POLL_S": 60,
    } | live_config)  # fmt: skip
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    live = Live(app, server.server_port)
    yield live
    for stream in live.streams:
        stream.close()
    server.shutdown()
    server.server_close()
    hub = app.extensions["omnicard.events"]["hub"]
    if hub is not None:
        hub.stop()
    database(app).engine.dispose()


class ServerProcess:
    """An app process of its own, as on another machine sharing the one database: the
    embedded server (``tests/events/server.py``), or with ``production=True`` gunicorn as the
    README runs it (``gunicorn.conf.py``: one gevent worker unless told more, and ``settings``
    on top of the tests' own). Gunicorn's access log, if asked for, names for each request
    the worker process that answered it and the request's ``Idempotency-Key``."""

    def __init__(
        self,
        database_url: str,
        *,
        production: bool = False,
        workers: int = 1,
        settings: dict[str, str] | None = None,
        access_log: Path | None = None,
    ):
        env = dict(os.environ, DATABASE_URL=database_url, PYTHONPATH=str(ROOT))
        self.production = production
        self.access_log = access_log
        if not production:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "tests.events.server"], cwd=ROOT, env=env,
                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            )  # fmt: skip
            self.port = int(self.process.stdout.readline())
            self.process.stdout.close()
            return
        self.port = free_port()
        env |= {
            "OMNICARD_BIND": f"127.0.0.1:{self.port}", "WEB_CONCURRENCY": str(workers),
            "OMNICARD_EVENTS_HEARTBEAT_S": "1", "OMNICARD_EVENTS_POLL_S": "60",
            "OMNICARD_ARGON2_TIME_COST": "1", "OMNICARD_ARGON2_MEMORY_KIB": "1024",
        } | (settings or {})  # fmt: skip
        logging = []
        if access_log is not None:
            env["OMNICARD_ACCESS_LOG"] = str(access_log)
            logging = ["--access-logformat", "%(p)s %({idempotency-key}i)s"]
        self.process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", *logging, "wsgi:app"],
            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        self._wait_until_serving()

    def _wait_until_serving(self, timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.process.poll() is None, "the server exited"
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
                conn.request("GET", "/v1/health")
                if conn.getresponse().status == 200:
                    return
            except OSError:
                time.sleep(0.1)
            finally:
                conn.close()
        raise TimeoutError("the server did not start serving")

    def post(self, path: str, token: str, body: dict, key: str | None = None) -> tuple[int, dict]:
        """On a connection of its own (so that any of the server's workers may take it)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        conn.request("POST", path, body=json.dumps(body), headers={
            "Authorization": f"Bearer {token}", "Content-Type": "application/json",
            "Idempotency-Key": key or uuid.uuid4().hex})  # fmt: skip
        response = conn.getresponse()
        answer = (response.status, json.loads(response.read()))
        conn.close()
        return answer

    def workers_by_key(self, keys: int) -> dict[str, str]:
        """The worker process that answered each request, by its ``Idempotency-Key``, once the
        access log holds ``keys`` of them (a worker logs a request after answering it)."""
        answered: dict[str, str] = {}

        def logged() -> bool:
            lines = self.access_log.read_text().splitlines()
            answered.update(line.split(" ")[::-1] for line in lines if not line.endswith(" -"))
            return len(answered) >= keys

        wait_until(logged)
        return answered

    def kill(self) -> None:
        self.process.kill()
        self.process.wait(timeout=10)

    def stop(self) -> None:
        """As an operator stops gunicorn quickly (SIGQUIT); the embedded one is killed."""
        if self.process.poll() is not None:
            return
        if not self.production:
            self.kill()
            return
        self.process.send_signal(signal.SIGQUIT)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.kill()


def wait_until(condition, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sale_body(number: str, sku: str = "LATTE", price: int = 450) -> dict:
    return {
        "customer": {"card_number": number},
        "lines": [{"sku": sku, "quantity": 1}],
        "tenders": [{"type": "card_balance", "amount": {"amount": price, "currency": "USD"}}],
    }


def is_sale(balance: int):
    """Matches the ``sale.completed`` event that left the card with ``balance``."""
    return lambda e: (
        e.type == "sale.completed" and e.data["data"]["card_balance"]["amount"] == balance
    )


@pytest.fixture
def postgresql_only(db_kind):
    """For tests of several processes or deployments on one PostgreSQL server (SQLite serves
    one process, from a file of its own)."""
    if db_kind != "postgresql":
        pytest.skip("several processes share a PostgreSQL server; SQLite serves one process")


@pytest.fixture
def processes(database_url):
    started: list[ServerProcess] = []

    def start(production: bool = False, url: str | None = None, **options) -> ServerProcess:
        started.append(ServerProcess(url or database_url, production=production, **options))
        return started[-1]

    yield start
    for p in started:
        p.stop()


def sse_events(body: bytes) -> list[dict]:
    """The events in a stretch of ``text/event-stream`` (comments and the retry line left out)."""
    events = []
    for block in body.decode().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
        if "data" in fields and not block.startswith(":"):
            events.append({"id": int(fields["id"]), "type": fields["event"],
                           "data": json.loads(fields["data"])["data"]})  # fmt: skip
    return events


class ChunkedReader:
    """The client's end of a connection the server writes HTTP/1.1 chunks on, read strictly:
    anything but well-formed chunks fails the test."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.fp = sock.makefile("rb")

    def chunk(self) -> bytes:
        size = self.fp.readline()
        assert size.endswith(b"\r\n") and size[:-2], f"not a chunk: {size!r}"
        body = self.fp.read(int(size[:-2], 16))
        assert self.fp.read(2) == b"\r\n", "a chunk that does not end where it says"
        return body

    def close(self) -> None:
        self.fp.close()
        self.sock.close()

    def events_until(self, last_id: int) -> list[dict]:
        body = b""
        while not (seen := sse_events(body)) or seen[-1]["id"] < last_id:
            body += self.chunk()
        return seen


def open_stream(
    port: int, token: str, version: str, last_event_id: int
) -> tuple[dict[str, str], ChunkedReader]:
    """``GET /v1/events`` in that version of HTTP: the response's headers, and its body."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(f"GET /v1/events {version}\r\nHost: omnicard\r\n"
                 f"Authorization: Bearer {token}\r\n"
                 f"Last-Event-ID: {last_event_id}\r\n\r\n".encode())  # fmt: skip
    body = ChunkedReader(sock)
    assert body.fp.readline().split()[1] == b"200"
    headers = {}
    while (line := body.fp.readline().decode().strip()) != "":
        name, _, value = line.partition(": ")
        headers[name.lower()] = value
    return headers, body


def connected_pair(buffer_bytes: int) -> tuple[socket.socket, socket.socket]:
    """A loopback TCP connection whose buffers hold a few events at most: (server, client)."""
    with socket.create_server(("127.0.0.1", 0)) as listening:
        client = socket.socket()
        client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, buffer_bytes)
        client.connect(listening.getsockname())
        server, _ = listening.accept()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, buffer_bytes)
    return server, client

"""The till's side of the live server's world (tests/live.py): a till's config file for the
world's store, and what its tests wait on or put between the till and the server."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import httpx
import pytest

from app.core.db import database
from tests.live import ServerProcess, Shopper, World, admin, make_world, server

__all__ = ["Changes", "ServerProcess", "Shopper", "Swallower", "TillWorld", "admin", "server"]


class TillWorld(World):
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


@pytest.fixture
def world(app, server, admin) -> TillWorld:
    return make_world(app, server, admin, TillWorld)


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

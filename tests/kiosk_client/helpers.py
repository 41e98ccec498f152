"""What the kiosk's tests share: a free udp reader path, a kiosk daemon in the test process
reporting what it did, and the kiosk program run as a process."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import nfc

from kiosk.config import Config
from kiosk.daemon import Kiosk
from store_devices.type2_tag import Type2TagEmulator
from tests.conftest import ROOT

SHOP = "https://shop.example"
#: Bounded waits: a tap over udp takes well under a second (one poll cycle at most), but
#: the machine running the tests may be busy.
WAIT_S = 10.0


def free_udp_path() -> str:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return f"udp:127.0.0.1:{s.getsockname()[1]}"


def closed_port_url() -> str:
    """An http URL where nothing listens: the API is down."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


class Events:
    """What the kiosk announced (on_event), to wait on from the test."""

    def __init__(self):
        self.seen: list[tuple[str, dict]] = []
        self._cond = threading.Condition()

    def __call__(self, kind: str, data: dict) -> None:
        with self._cond:
            self.seen.append((kind, data))
            self._cond.notify_all()

    def of(self, kind: str) -> list[dict]:
        with self._cond:
            return [data for k, data in self.seen if k == kind]

    def wait_for(self, predicate, timeout_s: float = WAIT_S) -> None:
        with self._cond:
            assert self._cond.wait_for(predicate, timeout_s), f"saw {self.seen[-20:]}"


def make_config(tmp_path: Path, reader: str, api_url: str, *, secret="none", debounce_s=1.0):
    return Config(api_url=api_url, device_secret=secret, state_dir=tmp_path / "kiosk-state",
                  reader=reader, shop_url=SHOP, debounce_s=debounce_s,
                  connect_timeout_s=1.0, read_timeout_s=5.0, replay_interval_s=0.2)  # fmt: skip


def start_kiosk(config: Config, events: Events, **reader_options) -> Kiosk:
    reader_options.setdefault("retry_s", (0.05, 0.2))
    kiosk = Kiosk(config, on_event=events, reader_options=reader_options)
    kiosk.start()
    events.wait_for(lambda: {"status": "ready"} in events.of("reader"))
    return kiosk


def play_until(tag: Type2TagEmulator, path: str, done, hold_s: float = WAIT_S) -> None:
    """Holds *tag* on the reader until *done()* (a tap was counted), then takes it away."""
    tag.present(path, hold_s=hold_s, until=done)


def run_kiosk(*args: str, config: Path | None = None, timeout_s: float = 30):
    """`python -m kiosk ARGS` as a process: (exit code, its JSON output or None, stderr)."""
    command = [sys.executable, "-m", "kiosk"]
    if config is not None:
        command += ["--config", str(config)]
    done = subprocess.run(
        [*command, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout_s,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
    )  # fmt: skip
    try:
        body = json.loads(done.stdout) if done.stdout.strip() else None
    except ValueError:
        body = None
    return done.returncode, body, done.stderr


def unpluggable(path: str):
    """An open_frontend for the reader with a plug: `pull_out()` pulls the reader out (the
    open frontend's next poll fails in its closed socket, as a USB reader's does when pulled
    out, and opening it again fails as for a missing device); `plug.set()` plugs it back in."""
    plug = threading.Event()
    plug.set()
    opened: list = []

    def open_frontend(p):
        if not plug.is_set():
            return nfc.ContactlessFrontend("tty:OMNICARD_UNPLUGGED:pn532")
        clf = nfc.ContactlessFrontend(p)
        opened.append(clf)
        return clf

    def pull_out():
        plug.clear()
        opened[-1].device.socket.close()

    return open_frontend, plug, pull_out


def wait_until(predicate, timeout_s: float = WAIT_S, what: str = "") -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what or predicate}"
        time.sleep(0.05)

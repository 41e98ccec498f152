"""The kiosk daemon against a live server: a tag tapped through nfcpy's udp frontend reaches
the API as a tap of that product, and taps made while the API is down are sent once each, in
order, when it is back."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import select

from app.core.db import session
from app.kiosk.models import KioskTap
from kiosk import config as kiosk_config
from kiosk.outbox import SENT
from kiosk.tags import sim_tag
from store_devices.nfc import play_tag
from tests.conftest import ROOT
from tests.kiosk_client.helpers import (
    SHOP,
    WAIT_S,
    Events,
    free_udp_path,
    make_config,
    run_kiosk,
    start_kiosk,
    wait_until,
)
from tests.live import ServerProcess


@pytest.fixture
def kiosk_device(world) -> dict:
    r = world.call("POST", "/v1/admin/devices", world.admin, {
        "store_id": world.store_id, "kind": "kiosk", "name": "Kiosk 1"}, key=False)  # fmt: skip
    assert r.status_code == 201, r.json
    return r.json


def taps_of(app, device_id: int) -> list[KioskTap]:
    with app.app_context():
        rows = (
            session()
            .scalars(select(KioskTap).where(KioskTap.device_id == device_id).order_by(KioskTap.id))
            .all()
        )
        session().expunge_all()
        return rows


def write_config(path: Path, api_url: str, secret: str, reader: str) -> Path:
    path.write_text(f"""
api_url = "{api_url}"
device_secret = "{secret}"
state_dir = "state"
shop_url = "{SHOP}"
debounce_s = 1.0
[nfc]
reader = "{reader}"
[timeouts]
connect_s = 1.0
read_s = 5.0
replay_s = 0.2
""")
    return path


def test_a_product_tag_tapped_on_the_udp_reader_reaches_the_api_as_a_tap(
    app, world, kiosk_device, tmp_path
):
    reader = free_udp_path()
    config = write_config(tmp_path / "kiosk.toml", world.server.url, kiosk_device["secret"],
                          reader)  # fmt: skip
    daemon = subprocess.Popen(
        [sys.executable, "-m", "kiosk", "--config", str(config)], cwd=ROOT,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    log: list[str] = []
    reading = threading.Thread(target=lambda: log.extend(daemon.stderr), daemon=True)
    reading.start()
    try:
        wait_until(lambda: any(": ready" in line for line in log), timeout_s=30,
                   what="the daemon's reader")  # fmt: skip
        sku = world.skus["latte"]
        code, played, _ = run_kiosk("sim", "tap", sku, "--timeout", str(WAIT_S), config=config)
        assert code == 0 and played["kind"] == "product" and played["sku"] == sku

        wait_until(lambda: taps_of(app, kiosk_device["id"]), what="the tap at the server")
        [tap] = taps_of(app, kiosk_device["id"])
        assert tap.kind == "product" and tap.product_id == world.product_ids["latte"]
        assert tap.store_id == world.store_id

        code, queue, _ = run_kiosk("queue", "--all", config=config)
        assert code == 0 and queue["pending"] == 0
        [sent] = queue["items"]
        assert sent["state"] == SENT and sent["tap_ref"] == tap.tap_ref
        assert sent["tap"]["id"] == tap.id and sent["uris"] == [f"{SHOP}/p/{sku}"]
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(timeout=15)
        reading.join(5)
        daemon.stderr.close()
    log = "".join(log)
    assert daemon.returncode == 0, log
    assert "tap 1: product" in log and "tap 1 sent: product" in log
    assert "signal SIGTERM: stopping" in log and "kiosk stopped" in log


@pytest.fixture
def own_server(database_url, server):
    """A server process of the kiosk's own, to stop and start again on the same port."""
    process = ServerProcess(database_url)
    process.start()
    yield process
    process.stop()


def test_taps_made_while_the_api_is_down_are_sent_once_each_in_order_when_it_is_back(
    app, world, kiosk_device, own_server, tmp_path
):
    reader = free_udp_path()
    events = Events()
    config = make_config(tmp_path, reader, own_server.url, secret=kiosk_device["secret"])
    kiosk = start_kiosk(config, events)
    try:
        play_tag(reader, sim_tag(world.skus["bagel"], SHOP)[0], timeout_s=WAIT_S)
        events.wait_for(lambda: events.of("sent"))

        own_server.stop()
        order = [world.skus["mug"], "sign:test", "garbled", world.skus["latte"]]
        for value in order:
            play_tag(reader, sim_tag(value, SHOP)[0], timeout_s=WAIT_S)
        events.wait_for(lambda: len(events.of("tap")) == 5 and events.of("offline"))
        # Tried, and kept: nothing is lost or sent twice while it waits.
        wait_until(lambda: kiosk.outbox.taps()[1].attempts >= 2, what="retries")
        assert kiosk.outbox.pending_count() == 4 and len(taps_of(app, kiosk_device["id"])) == 1

        own_server.start()
        events.wait_for(lambda: len(events.of("sent")) == 5, timeout_s=20)

        at_server = taps_of(app, kiosk_device["id"])
        queued = kiosk.outbox.taps()
        assert [t.tap_ref for t in at_server] == [q.tap_ref for q in queued]  # once, in order
        assert [t.kind for t in at_server] == ["product", "product", "sign", "unknown", "product"]
        assert at_server[1].product_id == world.product_ids["mug"]
        assert at_server[2].category == "test"
        assert kiosk.outbox.pending_count() == 0 and events.of("online")
    finally:
        kiosk.stop()

    # A daemon started again later sends nothing again.
    kiosk = start_kiosk(make_config(tmp_path, reader, own_server.url,
                                    secret=kiosk_device["secret"]), Events())  # fmt: skip
    try:
        time.sleep(0.5)
        assert len(taps_of(app, kiosk_device["id"])) == 5
    finally:
        kiosk.stop()


def test_pair_prints_a_code_for_the_screen(world, kiosk_device, tmp_path):
    config = write_config(tmp_path / "kiosk.toml", world.server.url, kiosk_device["secret"],
                          free_udp_path())  # fmt: skip
    code, body, _ = run_kiosk("pair", config=config)

    assert code == 0, body
    assert len(body["code"].replace("-", "")) == 6 and body["expires_at"]
    assert kiosk_config.load(config).device_secret == kiosk_device["secret"]


def test_pair_with_a_wrong_secret_is_refused_with_exit_code_1(world, tmp_path):
    config = write_config(tmp_path / "kiosk.toml", world.server.url, "not-a-secret",
                          free_udp_path())  # fmt: skip
    code, body, _ = run_kiosk("pair", config=config)

    assert code == 1 and body["error"]["code"]

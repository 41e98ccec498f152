"""The till program against a live server: the Till controller and the subcommands."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tty

import pytest

from pos_client import config as till_config
from pos_client.till import Tender, Till, TillError
from tests.conftest import ROOT
from tests.events.conftest import Stream
from tests.pos_client.live import Changes, Swallower


def cli(config_path, *args, timeout=30):
    """`python -m pos_client --config ... args`: (exit code, JSON printed)."""
    done = subprocess.run(
        [sys.executable, "-m", "pos_client", "--config", str(config_path), *args], cwd=ROOT,
        capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip
    try:
        body = json.loads(done.stdout) if done.stdout.strip() else None
    except ValueError:
        body = done.stdout
    return done.returncode, body


@pytest.fixture
def till(config_path):
    changes = Changes()
    till = Till(till_config.load(config_path), on_change=changes, hardware=False)
    till.changes = changes
    till.start()
    yield till
    till.stop()


def test_a_sale_from_the_card_balance_with_the_balance_live_on_screen(world, till):
    ada = world.shopper(load_minor=2000)
    till.sign_in(world.staff_code, world.pin)
    assert till.cashier["name"] == "Grace Hopper"
    with pytest.raises(TillError) as refused:
        till.pay([Tender("cash", None)])
    assert refused.value.code == "no_open_shift"
    till.open_shift(10_000)

    assert till.scan(world.barcodes["latte"]) == "product"
    assert till.scan(world.barcodes["mug"]) == "product"  # 12 digits: UPC-A, not a pay code
    assert till.scan(ada.number) == "card"
    assert till.shopper.card_id == ada.card_id
    assert till.shopper.balance_minor == 2000

    # Ada tops up from her phone while she waits: the till's screen shows it.
    world.top_up(ada.token, ada.card_id, 1000, via_server=True)
    till.changes.wait_for(lambda: till.shopper.balance_minor == 3000)

    result = till.pay([Tender("card_balance", None)])
    assert not result.offline
    assert result.sale["total"]["amount"] == 445 + 1250
    assert result.sale["card_balance"]["amount"] == 3000 - 1695
    assert result.receipt["url"] and result.receipt["number"] == result.sale["number"]
    assert result.printed, result.printer_error
    assert till.shopper.balance_minor == 3000 - 1695 == world.owned(ada.card_id)
    assert till.shopper.available_minor == world.balance(ada.card_id)
    assert till.sale.lines == []
    printed = (till.config.state_dir / "receipts.bin").read_bytes()
    assert result.sale["number"].encode() in printed
    assert world.sale_count() == 1
    world.verify_ledger()


def test_the_subcommands_sign_in_sell_split_and_refuse_with_the_apis_error(world, config_path):
    ada = world.shopper(load_minor=1000)
    code, body = cli(config_path, "sale", "--sku", world.skus["latte"], "--tender", "cash")
    assert code == 1 and body["error"]["code"] == "not_signed_in"

    code, body = cli(config_path, "sign-in", "--staff-code", world.staff_code, "--pin", "0000")
    assert code == 1 and body["error"]["code"] == "invalid_staff_pin", body
    code, body = cli(config_path, "sign-in", "--staff-code", world.staff_code, "--pin", world.pin)
    assert code == 0 and body["cashier"]["name"] == "Grace Hopper"
    session_file = config_path.parent / "state" / "session.json"
    assert session_file.stat().st_mode & 0o777 == 0o600
    code, body = cli(config_path, "sale", "--sku", world.skus["latte"], "--tender", "cash")
    assert code == 1 and body["error"]["code"] == "no_open_shift"
    code, body = cli(config_path, "shift", "open", "--float", "100.00")
    assert code == 0 and body["float"]["amount"] == 10_000

    # Split: 2.00 from the card, the rest (2.45 + 3.00) in cash from a 10.00 note.
    code, body = cli(
        config_path, "sale", "--card", ada.number, "--sku", world.skus["latte"],
        "--scan", world.barcodes["latte"],
        "--sku", world.skus["bagel"], "--tender", "card_balance=200", "--tender", "cash=1.00",
        "--tender", "cash=990:10.00",
    )  # fmt: skip
    assert code == 1 and body["error"]["code"] == "tenders_do_not_match_total"
    code, body = cli(
        config_path, "sale", "--card", ada.number, "--sku", world.skus["latte"],
        "--sku", world.skus["bagel"], "--tender", "card_balance=200",
        "--tender", "cash=:10.00",
    )  # fmt: skip
    assert code == 0, body
    assert [t["type"] for t in body["sale"]["tenders"]] == ["card_balance", "cash"]
    assert body["change_minor"] == 455 and body["receipt"]["change"]["amount"] == 455
    assert body["sale"]["card_balance"]["amount"] == 800 == world.owned(ada.card_id)

    # Not enough on the card: the API's refusal, with the balance and a split to offer.
    before = world.sale_count()
    paper = config_path.parent / "state" / "receipts.bin"
    printed = paper.read_bytes()
    assert body["sale"]["number"].encode() in printed
    code, body = cli(config_path, "sale", "--card", ada.number, "--sku", world.skus["mug"],
                     "--tender", "card_balance")  # fmt: skip
    assert code == 1 and body["error"]["code"] == "insufficient_funds"
    details = body["error"]["details"]
    assert details["balance"]["amount"] == 800
    assert [s["amount"]["amount"] for s in details["split"]] == [800, 450]
    assert world.sale_count() == before and world.owned(ada.card_id) == 800

    # A lost card is frozen: the till says so and sells nothing from it.
    r = world.call("POST", f"/v1/cards/{ada.card_id}/report-lost", ada.token)
    assert r.status_code == 200, r.json
    code, body = cli(config_path, "sale", "--card", ada.number, "--sku", world.skus["latte"],
                     "--tender", "card_balance")  # fmt: skip
    assert code == 1 and body["error"]["code"] == "card_frozen", body
    assert world.sale_count() == before
    assert paper.read_bytes() == printed  # a refused sale prints nothing

    code, body = cli(config_path, "sale", "--sku", world.skus["latte"], "--tender", "cash=4,45")
    assert code == 2 and body["error"]["code"] == "usage"
    code, body = cli(config_path, "sales")
    assert code == 0 and [s["total"]["amount"] for s in body["items"]] == [745]
    code, body = cli(config_path, "reprint")
    assert code == 0 and body == {"printed": True}
    world.verify_ledger()


def _outbox_pending(state_dir) -> int:
    from pos_client.outbox import Outbox

    outbox = Outbox(state_dir / "outbox.sqlite3")
    try:
        return outbox.pending_count()
    finally:
        outbox.close()


def test_a_till_killed_mid_sale_replays_it_on_the_next_start_exactly_once(
    world, config_path, tmp_path
):
    ada = world.shopper(load_minor=1000)
    state = config_path.parent / "state"
    assert cli(config_path, "sign-in", "--staff-code", world.staff_code, "--pin", world.pin)[0] == 0
    assert cli(config_path, "shift", "open", "--float", "0")[0] == 0

    def killed_mid_sale(stand_in: Swallower, *sale_args) -> None:
        """A sale sent to `stand_in`, the till killed -9 while it waits for the answer."""
        path = tmp_path / f"pos-{stand_in.port}.toml"
        path.write_text(world.config_text(state, api_url=stand_in.url, read_s=60))
        process = subprocess.Popen(
            [sys.executable, "-m", "pos_client", "--config", str(path), "sale", *sale_args],
            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            event = stand_in.forwarded if stand_in.reaches_server else stand_in.received
            assert event.wait(20), "the till sent nothing"
        finally:
            process.kill()
            process.wait(10)
            stand_in.close()

    # Never reached the server (it went into a black hole), then a sale the server did but
    # whose answer was lost: both wait in the outbox with their keys.
    killed_mid_sale(
        Swallower(world.server.url, reaches_server=False),
        "--sku",
        world.skus["bagel"],
        "--tender",
        "cash",
    )
    killed_mid_sale(Swallower(world.server.url, reaches_server=True), "--card", ada.number,
                    "--sku", world.skus["latte"], "--tender", "card_balance")  # fmt: skip
    assert world.sale_count() == 1 and world.owned(ada.card_id) == 1000 - 445
    assert _outbox_pending(state) == 2

    code, body = cli(config_path, "queue")
    assert code == 0 and [i["kind"] for i in body["items"]] == ["sale", "sale"]
    code, body = cli(config_path, "queue", "drain")
    assert code == 0 and body == {"sent": 2, "refused": 0, "left": 0}
    assert sorted(total for _, total, _ in world.sales()) == [300, 445]
    assert world.owned(ada.card_id) == 1000 - 445  # the card paid once
    code, body = cli(config_path, "queue", "drain")
    assert code == 0 and body == {"sent": 0, "refused": 0, "left": 0}
    world.verify_ledger()


def test_a_till_with_its_hardware_tap_scan_pay_print_and_the_shoppers_stream(world, tmp_path):
    """The whole till: a card tapped through nfcpy's udp frontend (`sim tap`), two products
    scanned through a pty, paid from the card balance, the receipt printed through
    python-escpos; the shopper's own event stream shows the new balance."""
    ada = world.shopper(load_minor=3000)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        reader = f"udp:127.0.0.1:{s.getsockname()[1]}"
    master, slave = os.openpty()
    tty.setraw(master)
    path = tmp_path / "pos.toml"
    path.write_text(world.config_text(tmp_path / "state") + f"""
[nfc]
reader = "{reader}"
[scanner]
port = "{os.ttyname(slave)}"
""")  # fmt: skip
    changes = Changes()
    till = Till(till_config.load(path), on_change=changes)
    till.start()
    stream = Stream(world.server.port, ada.token)
    try:
        till.sign_in(world.staff_code, world.pin)
        till.open_shift(0)
        changes.wait_for(lambda: till.reader_status == "ready" and "ready" in till.scanner_status)
        code, body = cli(path, "sim", "tap", ada.number, "--reader", reader)
        assert code == 0 and body["card_number"] == ada.number
        changes.wait_for(lambda: till.shopper is not None)
        assert till.shopper.card_id == ada.card_id and till.shopper.identified_by == "card_number"
        os.write(master, f"{world.barcodes['latte']}\r\n{world.barcodes['mug']}\n".encode())
        changes.wait_for(lambda: len(till.sale.lines) == 2)

        result = till.pay([Tender("card_balance", None)])
        assert result.printed and result.sale["card_balance"]["amount"] == 3000 - 1695
        printed = (tmp_path / "state" / "receipts.bin").read_bytes()
        assert result.receipt["url"].encode() in printed  # the QR's payload
        assert b"\x1dV" in printed  # cut
        seen = stream.until(lambda e: e.type == "card.balance_changed"
                            and e.data["data"]["balance"]["amount"] == 3000 - 1695)  # fmt: skip
        assert seen
    finally:
        stream.close()
        till.stop()
        os.close(master)
        os.close(slave)


def test_a_sale_refused_on_replay_is_kept_and_shown_and_the_queue_goes_on(
    world, config_path, tmp_path
):
    assert cli(config_path, "sign-in", "--staff-code", world.staff_code, "--pin", world.pin)[0] == 0
    assert cli(config_path, "shift", "open", "--float", "0")[0] == 0
    assert cli(config_path, "catalog")[0] == 0  # kept for selling offline
    with socket.socket() as s:  # a port nothing listens on: the API is unreachable
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    offline = tmp_path / "offline.toml"
    offline.write_text(world.config_text(config_path.parent / "state", api_url=dead))

    code, body = cli(offline, "sale", "--sku", world.skus["bagel"], "--tender", "cash=:5.00")
    assert code == 3 and body["offline"] and body["change_minor"] == 200
    assert body["receipt"]["offline"] and body["receipt"]["url"] is None and body["printed"]
    code, body = cli(offline, "sale", "--sku", world.skus["latte"], "--tender", "bank_card")
    assert code == 3 and body["offline"]
    code, body = cli(offline, "top-up", "--card", world.shopper().number, "--amount", "10.00",
                     "--tender", "cash")  # fmt: skip
    assert code == 1 and body["error"]["code"] == "unreachable"
    # The bagel leaves the catalog before the till is back: its sale cannot be replayed.
    r = world.call("PATCH", f"/v1/products/{world.product_ids['bagel']}", world.admin,
                   {"active": False}, key=False)  # fmt: skip
    assert r.status_code == 200, r.json

    code, body = cli(config_path, "queue", "drain")
    assert code == 0 and body == {"sent": 1, "refused": 1, "left": 0}
    code, body = cli(config_path, "queue")
    assert [(i["state"], i["error"]["code"]) for i in body["items"]] == [("refused", "unknown_sku")]
    assert [total for _, total, _ in world.sales()] == [445]
    world.verify_ledger()


def test_products_added_while_the_till_runs_are_found_and_a_restart_reads_the_catalog(
    world, till, config_path
):
    """The copy of the catalog on disk is for offline only: a product added to the catalog
    while the till runs is found by its barcode, SKU or name, and a till started again reads
    the catalog afresh."""
    till.sign_in(world.staff_code, world.pin)
    till.open_shift(0)
    till.catalog_miss_refresh_s = 0  # the catalog was read a moment ago, at the till's start

    def new_product(short: str, barcode: str) -> str:
        sku = f"{short}-{world.skus['latte'].split('-')[1]}"
        r = world.call("POST", "/v1/products", world.admin, {
            "sku": sku, "name": f"Scone {sku}", "category": "test", "barcode": barcode,
            "price": {"amount": 375, "currency": "USD"},
        }, key=False)  # fmt: skip
        assert r.status_code == 201, r.json
        return sku

    scone = new_product("SCONE", "2" + world.barcodes["latte"][1:])
    assert till.scan("2" + world.barcodes["latte"][1:]) == "product"
    assert till.sale.lines[-1].sku == scone

    # A restart, with the catalog on disk from before the next product was added.
    till.stop()
    cake = new_product("CAKE", "3" + world.barcodes["latte"][1:])
    again = Till(till_config.load(config_path), hardware=False)
    again.start()
    try:
        assert cake in {p["sku"] for p in again.catalog}
        assert [p["sku"] for p in again.search(cake)] == [cake]
    finally:
        again.stop()

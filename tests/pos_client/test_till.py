"""The till program against a live server: the Till controller and the subcommands."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from pos_client import config as till_config
from pos_client.till import Tender, Till, TillError
from tests.conftest import ROOT
from tests.pos_client.live import Changes


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
    assert till.shopper.balance_minor == 3000 - 1695 == world.balance(ada.card_id)
    assert till.sale.lines == []
    printed = (till.config.state_dir / "receipts.bin").read_bytes()
    assert result.sale["number"].encode() in printed
    assert world.sale_count() == 1
    world.verify_ledger()

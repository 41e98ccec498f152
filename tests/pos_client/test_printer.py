"""The receipt printer: python-escpos' real bytes, sent to printers played by the test
(a TCP server on 127.0.0.1, a pty, a file)."""

from __future__ import annotations

import copy
import os
import platform
import shutil
import socket
import struct
import threading
import time
import tty

import pytest
from PIL import Image

from pos_client.hardware.printer import (
    Line,
    PrinterUnavailable,
    ReceiptPrinter,
    format_money,
    layout_escpos,
    parse_escpos,
    receipt_layout,
    receipt_text,
    render_receipt_png,
    shift_report_layout,
    slip_layout,
)
from pos_client.hardware.sample_receipt import SAMPLE_RECEIPT

STATUS_QUERY = b"\x10\x04\x04"  # DLE EOT 4: paper sensor status
PAPER_OK, PAPER_LOW, PAPER_OUT = b"\x12", b"\x1e", b"\x72"
CUT = b"\x1dV\x00"
WAIT_S = 5


def usd(amount_minor: int) -> dict:
    return {"amount": amount_minor, "currency": "USD"}


def receipt_bytes(receipt: dict) -> bytes:
    return layout_escpos(receipt_layout(receipt, 42))


def qr_store_command(url: str) -> bytes:
    """GS ( k, function 180: store the QR's data (what a native QR prints)."""
    return b"\x1d(k" + struct.pack("<H", len(url) + 3) + b"1P0" + url.encode()


def test_money_is_formatted_from_minor_units():
    assert format_money(usd(445)) == "$4.45"
    assert format_money(usd(5)) == "$0.05"
    assert format_money(usd(0)) == "$0.00"
    assert format_money(usd(123456)) == "$1,234.56"
    assert format_money(usd(-200)) == "-$2.00"
    assert format_money({"amount": 1999, "currency": "EUR"}) == "19.99 EUR"


def test_the_receipt_bytes_hold_every_line_total_tender_and_the_qr_then_a_cut():
    data = receipt_bytes(SAMPLE_RECEIPT)
    for text in (
        "Pike Place",
        "1912 Pike Pl, Seattle, WA 98101",
        "Till: Front till 1            Cashier: Ana",
        "SALE                              S-000123",
        "2026-12-04 18:20 UTC",
        "Caffe Latte Grande                   $9.90",
        "  2 x $4.95",
        "Blueberry Muffin                     $3.25",
        "TOTAL                               $13.15",
        "Card balance                         $8.00",
        "Cash                                 $5.15",
        "Cash given                          $10.00",
        "Change                               $4.85",
        "Card                              ****4821",
        "Balance after                       $17.60",
        "Stars earned                           +21",
        "Stars balance                          142",
    ):
        assert text.encode() + b"\n" in data, text
    url = SAMPLE_RECEIPT["url"]
    qr = data.index(qr_store_command(url))
    assert data.index(b"\x1d(k\x03\x001Q0") > qr  # ... and print it
    assert data.endswith(CUT) and data.count(b"\x1dV") == 1
    assert b"OFFLINE" not in data


def test_the_text_receipt_is_the_printed_one_line_for_line():
    data = receipt_bytes(SAMPLE_RECEIPT)
    text = receipt_text(SAMPLE_RECEIPT)
    lines = [line for line in text.splitlines() if line.strip()]
    assert f"[QR] {SAMPLE_RECEIPT['url']}" in lines
    for line in lines:
        if not line.startswith("[QR]"):
            assert line.strip().encode() + b"\n" in data, line
    assert all(len(line) <= 42 for line in lines if not line.startswith("[QR]"))


def test_an_offline_sale_not_yet_replayed_prints_no_qr_and_says_so():
    receipt = {**copy.deepcopy(SAMPLE_RECEIPT), "id": None, "url": None, "number": None}
    receipt["offline"] = True
    data = receipt_bytes(receipt)
    assert b"OFFLINE - receipt link to follow" in data
    assert b"\x1d(k" not in data
    assert data.endswith(CUT)
    assert "[QR]" not in receipt_text(receipt)


def test_a_replayed_offline_sale_has_its_qr_and_a_marker():
    receipt = {**SAMPLE_RECEIPT, "offline": True}
    data = receipt_bytes(receipt)
    assert b"Made offline" in data
    assert qr_store_command(receipt["url"]) in data


def test_a_refund_receipt_names_the_sale_and_the_stars_taken_back():
    receipt = {
        **copy.deepcopy(SAMPLE_RECEIPT),
        "kind": "refund",
        "number": "R-000045",
        "sale_number": "S-000123",
        "lines": [SAMPLE_RECEIPT["lines"][1]],
        "total": usd(325),
        "tenders": [{"type": "card_balance", "amount": usd(325)}],
        "cash_given": None,
        "change": None,
        "stars": {"earned": -6, "balance": 136},
    }
    text = receipt_text(receipt)
    assert "REFUND                            R-000045" in text
    assert "Refund of sale                    S-000123" in text
    assert "REFUNDED                             $3.25" in text
    assert "To card balance                      $3.25" in text
    assert "Stars taken back                         6" in text
    assert "Change" not in text


def test_a_long_product_name_wraps_above_its_price():
    receipt = copy.deepcopy(SAMPLE_RECEIPT)
    receipt["lines"][0]["name"] = "Pumpkin Spice Latte Venti with oat milk and an extra shot"
    lines = receipt_text(receipt).splitlines()
    at = lines.index("Pumpkin Spice Latte Venti with oat milk")
    assert lines[at + 1] == "and an extra shot                    $9.90"


SHIFT = {
    "id": 7,
    "status": "closed",
    "report": {
        "store": {"name": "Pike Place", "address": "1912 Pike Pl"},
        "till": "Front till 1",
        "cashier": "Ana",
        "opened_at": "2026-12-04T08:00:00+00:00",
        "closed_at": "2026-12-04T16:02:00+00:00",
        "float": usd(10000),
        "sales": {
            "count": 41,
            "total": usd(52310),
            "by_tender": {"card_balance": usd(20110), "cash": usd(12200), "bank_card": usd(20000)},
        },
        "refunds": {
            "count": 1,
            "total": usd(325),
            "by_tender": {"card_balance": usd(0), "cash": usd(325), "bank_card": usd(0)},
        },
        "top_ups": {
            "count": 3,
            "total": usd(7500),
            "by_tender": {"cash": usd(5000), "bank_card": usd(2500)},
        },
        "expected_cash": usd(26875),
        "counted_cash": usd(26675),
        "difference": usd(-200),
    },
}


def test_the_shift_report_shows_each_tender_and_the_cash_difference():
    data = layout_escpos(shift_report_layout(SHIFT, 42))
    for text in (
        "SHIFT REPORT",
        "Opened                2026-12-04 08:00 UTC",
        "Float                              $100.00",
        "Sales (41)                         $523.10",
        "  Card balance                     $201.10",
        "Refunds (1)                          $3.25",
        "Top-ups (3)                         $75.00",
        "Expected cash                      $268.75",
        "Counted cash                       $266.75",
        "Difference                          -$2.00",
    ):
        assert text.encode() + b"\n" in data, text
    assert data.endswith(CUT)
    with pytest.raises(ValueError, match="still open"):
        shift_report_layout({"status": "open", "report": None}, 42)


def test_a_gift_card_slip_shows_the_card_the_amount_and_the_new_balance():
    slip = {
        "kind": "gift_card",
        "top_up": {
            "id": 311,
            "card_id": 9,
            "amount": usd(2500),
            "status": "succeeded",
            "source": "pos",
            "decline_code": None,
            "card_balance": usd(2500),
            "created_at": "2026-12-04T18:30:00+00:00",
        },
        "last4": "0042",
        "tender": "cash",
        "store": SAMPLE_RECEIPT["store"],
        "till": "Front till 1",
        "cashier": "Ana",
    }
    data = layout_escpos(slip_layout(slip, 42))
    for text in (
        "GIFT CARD SOLD                        #311",
        "Card                              ****0042",
        "Loaded                              $25.00",
        "Paid by                               Cash",
        "New balance                         $25.00",
    ):
        assert text.encode() + b"\n" in data, text
    assert b"Status" not in data
    assert data.endswith(CUT)


class NetworkPrinter:
    """A port-9100 printer played on 127.0.0.1: takes bytes, answers DLE EOT 4 queries."""

    def __init__(
        self, *, paper: bytes | None = PAPER_OK, accept: bool = True, read_max: int | None = None
    ):
        self.paper = paper
        self.read_max = read_max
        self.received = bytearray()
        self.done = threading.Event()
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.target = f"network:127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self._serve, daemon=True) if accept else None
        if self.thread:
            self.thread.start()

    def _serve(self) -> None:
        conn, _ = self.server.accept()
        with conn:
            answered = 0
            while chunk := conn.recv(4096 if self.read_max is None else self.read_max):
                self.received += chunk
                if self.read_max is not None and len(self.received) >= self.read_max:
                    # Dies mid-receipt: a reset, as when the printer is switched off.
                    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    break
                queries = self.received.count(STATUS_QUERY)
                if self.paper is not None and queries > answered:
                    conn.sendall(self.paper * (queries - answered))
                    answered = queries
        self.done.set()

    def close(self) -> None:
        self.server.close()
        if self.thread:
            self.thread.join(WAIT_S)


@pytest.fixture
def network_printer(request):
    printers = []

    def make(**kwargs) -> NetworkPrinter:
        printer = NetworkPrinter(**kwargs)
        printers.append(printer)
        return printer

    yield make
    for printer in printers:
        printer.close()


def test_a_network_printer_gets_exactly_the_receipt_bytes_between_status_queries(network_printer):
    far_end = network_printer()
    printer = ReceiptPrinter(far_end.target)
    printer.print_receipt(SAMPLE_RECEIPT)
    assert far_end.done.wait(WAIT_S)
    assert bytes(far_end.received) == STATUS_QUERY + receipt_bytes(SAMPLE_RECEIPT) + STATUS_QUERY
    assert printer.status == "ready"
    assert printer.last_text == receipt_text(SAMPLE_RECEIPT)


def test_a_refused_connection_is_unavailable_at_once():
    closed = socket.create_server(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()
    printer = ReceiptPrinter(f"network:127.0.0.1:{port}")
    started = time.monotonic()
    with pytest.raises(PrinterUnavailable, match="no printer at network:127.0.0.1"):
        printer.print_receipt(SAMPLE_RECEIPT)
    assert time.monotonic() - started < 1
    assert "refused" in printer.status.lower()


def test_a_printer_that_accepts_but_never_answers_fails_within_the_timeout(network_printer):
    far_end = network_printer(accept=False)  # the kernel completes the connection; no one reads
    printer = ReceiptPrinter(far_end.target, timeout_s=0.5)
    started = time.monotonic()
    with pytest.raises(PrinterUnavailable, match="does not answer"):
        printer.print_receipt(SAMPLE_RECEIPT)
    assert time.monotonic() - started < 1.5


def test_out_of_paper_prints_nothing(network_printer):
    far_end = network_printer(paper=PAPER_OUT)
    printer = ReceiptPrinter(far_end.target)
    with pytest.raises(PrinterUnavailable, match="out of paper"):
        printer.print_receipt(SAMPLE_RECEIPT)
    assert far_end.done.wait(WAIT_S)
    assert bytes(far_end.received) == STATUS_QUERY
    assert printer.status == "out of paper"


def test_paper_low_still_prints_and_says_so(network_printer):
    far_end = network_printer(paper=PAPER_LOW)
    printer = ReceiptPrinter(far_end.target)
    printer.print_receipt(SAMPLE_RECEIPT)
    assert far_end.done.wait(WAIT_S)
    assert CUT in far_end.received
    assert printer.status == "paper low"


def test_a_connection_lost_mid_receipt_says_to_reprint(network_printer):
    far_end = network_printer(read_max=200)
    printer = ReceiptPrinter(far_end.target, timeout_s=1)
    started = time.monotonic()
    with pytest.raises(PrinterUnavailable, match="reprint"):
        printer.print_receipt(SAMPLE_RECEIPT)
    assert time.monotonic() - started < 2
    assert far_end.done.wait(WAIT_S)
    # What the printer got is the start of the receipt, and no cut: the reason says reprint.
    received = bytes(far_end.received[len(STATUS_QUERY) :])
    assert receipt_bytes(SAMPLE_RECEIPT).startswith(received)
    assert CUT not in received
    assert parse_escpos(received)[0][0].text == "Pike Place"


def test_the_sim_printer_appends_each_document_to_its_file_and_its_text(tmp_path):
    roll = tmp_path / "receipts.bin"
    printer = ReceiptPrinter(f"file:{roll}")
    printer.print_receipt(SAMPLE_RECEIPT)
    printer.print_receipt(SAMPLE_RECEIPT)
    assert roll.read_bytes() == receipt_bytes(SAMPLE_RECEIPT) * 2
    text = (tmp_path / "receipts.bin.txt").read_text()
    assert text == (receipt_text(SAMPLE_RECEIPT) + "\n") * 2


def test_a_file_printer_in_a_missing_folder_is_unavailable(tmp_path):
    printer = ReceiptPrinter(f"file:{tmp_path / 'gone' / 'receipts.bin'}")
    with pytest.raises(PrinterUnavailable, match="cannot open"):
        printer.print_receipt(SAMPLE_RECEIPT)


def test_a_serial_printer_on_a_pty_gets_the_receipt():
    master, slave = os.openpty()
    tty.setraw(master)
    received = bytearray()
    done = threading.Event()

    def play_printer():
        while not done.is_set():
            try:
                chunk = os.read(master, 4096)
            except OSError:
                return
            received.extend(chunk)
            if chunk.endswith(STATUS_QUERY):
                os.write(master, PAPER_OK)
                if received.count(STATUS_QUERY) == 2:
                    done.set()

    player = threading.Thread(target=play_printer, daemon=True)
    player.start()
    try:
        printer = ReceiptPrinter(f"serial:{os.ttyname(slave)}", timeout_s=2)
        printer.print_receipt(SAMPLE_RECEIPT)
        assert done.wait(WAIT_S)
        assert bytes(received) == STATUS_QUERY + receipt_bytes(SAMPLE_RECEIPT) + STATUS_QUERY
    finally:
        os.close(slave)
        os.close(master)
        player.join(WAIT_S)


def test_an_unplugged_serial_or_usb_printer_is_unavailable(tmp_path):
    with pytest.raises(PrinterUnavailable, match="no printer at serial:"):
        ReceiptPrinter(f"serial:{tmp_path / 'ttyUSB0'}").print_receipt(SAMPLE_RECEIPT)
    with pytest.raises(PrinterUnavailable, match="no printer at usb:04b8:0202"):
        ReceiptPrinter("usb:04b8:0202").print_receipt(SAMPLE_RECEIPT)


def test_a_bad_target_or_profile_is_a_config_error():
    with pytest.raises(ValueError, match="network:HOST:PORT"):
        ReceiptPrinter("network:printer").print_receipt(SAMPLE_RECEIPT)
    with pytest.raises(ValueError, match="expected"):
        ReceiptPrinter("lpt1").print_receipt(SAMPLE_RECEIPT)
    with pytest.raises(Exception, match="NO-SUCH"):
        ReceiptPrinter("file:/dev/null", profile="NO-SUCH")


def test_a_serial_printer_that_is_switched_off_fails_within_the_timeout():
    master, slave = os.openpty()  # the cable is there; nothing answers at its far end
    tty.setraw(master)
    try:
        printer = ReceiptPrinter(f"serial:{os.ttyname(slave)}", timeout_s=0.5)
        started = time.monotonic()
        with pytest.raises(PrinterUnavailable, match="does not answer"):
            printer.print_receipt(SAMPLE_RECEIPT)
        assert time.monotonic() - started < 1.5
        assert os.read(master, 100) == STATUS_QUERY  # and no receipt after the silence
    finally:
        os.close(slave)
        os.close(master)


FEED_BEFORE_CUT = [Line()] * 6


@pytest.mark.parametrize(
    "layout",
    [
        lambda: receipt_layout(SAMPLE_RECEIPT, 42),
        lambda: receipt_layout({**SAMPLE_RECEIPT, "url": None, "offline": True}, 42),
        lambda: receipt_layout(
            {**SAMPLE_RECEIPT, "store": {"name": "Café Über €", "address": "Straße 1"}}, 42
        ),
        lambda: shift_report_layout(SHIFT, 42),
    ],
    ids=["sale", "offline", "accents", "shift"],
)
def test_the_bytes_read_back_as_exactly_the_layout_then_a_cut(layout):
    items = layout()
    assert parse_escpos(layout_escpos(items)) == [items + FEED_BEFORE_CUT]


def test_the_receipt_picture_from_the_printed_bytes(tmp_path):
    roll = receipt_bytes(SAMPLE_RECEIPT) * 2
    render_receipt_png(roll, tmp_path / "roll.png")
    render_receipt_png(SAMPLE_RECEIPT, tmp_path / "one.png")
    with Image.open(tmp_path / "roll.png") as both, Image.open(tmp_path / "one.png") as one:
        assert both.width == one.width == 512
        assert both.height > 2 * one.height - 100


def test_the_printer_loads_when_its_profile_cache_folder_is_missing(tmp_path):
    """python-escpos fails at import if the folder for its profiles' cache is missing: the
    till makes it (a fresh machine, or a state folder not yet made)."""
    import subprocess
    import sys

    folder = tmp_path / "not" / "yet"
    env = dict(os.environ, ESCPOS_CAPABILITIES_PICKLE_DIR=str(folder))
    done = subprocess.run(
        [sys.executable, "-c", "import pos_client.hardware.printer"],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""
    assert any(folder.iterdir())  # the cache went where it was told


def test_tills_starting_together_on_an_empty_profile_cache_all_start(tmp_path):
    """python-escpos writes its profiles' cache in place: a program that started while another
    was writing it read half a file and failed (EOFError). The cache is now written aside and
    moved into place whole."""
    import subprocess
    import sys

    folder = tmp_path / "cache"
    env = dict(os.environ, ESCPOS_CAPABILITIES_PICKLE_DIR=str(folder))
    for _ in range(3):
        shutil.rmtree(folder, ignore_errors=True)
        starting = [
            subprocess.Popen(
                [sys.executable, "-c", "import pos_client.hardware.printer"],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )  # fmt: skip
            for _ in range(6)
        ]
        for process in starting:
            _, err = process.communicate(timeout=60)
            assert process.returncode == 0, err
        assert [p.name for p in folder.iterdir()] == [
            f"{platform.python_version()}.capabilities.pickle"
        ]

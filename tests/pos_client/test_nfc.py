"""The till's NFC reader through nfcpy's real udp frontend, with a Type 2 tag on the far end.

Everything between the two sockets is nfcpy's own code: sense, anticollision, Type 2
activation, the NDEF read and the presence check on the reader's side; listen and exchange on
the tag's. No database.
"""

from __future__ import annotations

import queue
import socket
import subprocess
import sys
import threading
import time

import ndef
import nfc
import pytest

from store_devices.nfc import (
    NfcReader,
    Tap,
    card_number_in,
    luhn_valid,
    sim_tap,
    uid_for_card_number,
)
from store_devices.type2_tag import Type2TagEmulator, ndef_memory, ndef_tlv, tag_memory
from tests.conftest import ROOT

CARD = "4000001234567899"
OTHER_CARD = "4000001234567808"
NXP_UID = "04A1B2C3D4E5F6"
#: Bounded waits: a tap over udp takes well under a second (one poll cycle at most).
TAP_WAIT_S = 3.0


@pytest.fixture
def udp_path() -> str:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"udp:127.0.0.1:{port}"


class Watch:
    """What a reader reported: its taps in order, and its status changes as events."""

    def __init__(self):
        self.taps: queue.Queue[Tap] = queue.Queue()
        self.statuses: list[str] = []
        self._changed = threading.Condition()

    def on_status(self, status: str) -> None:
        with self._changed:
            self.statuses.append(status)
            self._changed.notify_all()

    def wait_status(self, predicate, timeout_s: float = TAP_WAIT_S) -> str:
        with self._changed:
            assert self._changed.wait_for(
                lambda: self.statuses and predicate(self.statuses[-1]), timeout_s
            ), f"status never matched; saw {self.statuses}"
            return self.statuses[-1]

    def next_tap(self) -> Tap:
        return self.taps.get(timeout=TAP_WAIT_S)

    def assert_no_tap(self, within_s: float = 0.4) -> None:
        with pytest.raises(queue.Empty):
            tap = self.taps.get(timeout=within_s)
            pytest.fail(f"unexpected tap {tap}")


@pytest.fixture
def watch() -> Watch:
    return Watch()


@pytest.fixture
def make_reader(watch):
    """Started readers reporting to *watch*, retrying fast; stopped after the test."""
    readers = []

    def make(path, *, open_frontend=nfc.ContactlessFrontend, retry_s=(0.05, 0.2)):
        r = NfcReader(
            path,
            watch.taps.put,
            on_status=watch.on_status,
            retry_s=retry_s,
            open_frontend=open_frontend,
        )
        readers.append(r)
        r.start()
        return r

    yield make
    for r in readers:
        r.stop()


@pytest.fixture
def reader(make_reader, udp_path, watch):
    r = make_reader(udp_path)
    watch.wait_status(lambda s: s == "ready")
    return r


def reader_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "nfc-reader" and t.is_alive()]


def present_until_tapped(tag: Type2TagEmulator, path: str, watch: Watch) -> Tap:
    """Holds *tag* on the reader until the reader reports a tap (a real read), then takes it
    away."""
    tag.present(path, hold_s=TAP_WAIT_S, until=lambda: not watch.taps.empty())
    return watch.next_tap()


def test_a_card_tag_gives_its_uid_and_card_number(reader, udp_path, watch):
    started = time.monotonic()
    played = sim_tap(udp_path, CARD, timeout_s=TAP_WAIT_S)
    tap = watch.next_tap()
    elapsed_s = time.monotonic() - started

    uid = uid_for_card_number(CARD).hex().upper()
    assert tap == Tap(uid=uid, card_number=CARD, uris=(), texts=(CARD,))
    assert played == tap
    assert len(uid) == 14 and uid.startswith("02")
    assert elapsed_s < 2.0  # one udp poll cycle at the most


def test_a_tag_without_ndef_gives_its_uid_only(reader, udp_path, watch):
    # An NXP UID: nfcpy probes the chip (AUTHENTICATE, GET_VERSION) and senses it again
    # between the probes, as it does with the shop's real NTAG cards.
    played = sim_tap(udp_path, NXP_UID.lower(), timeout_s=TAP_WAIT_S)

    assert watch.next_tap() == played == Tap(uid=NXP_UID)


def test_a_tag_held_on_the_reader_counts_once_and_again_when_tapped_again(reader, udp_path, watch):
    tag = Type2TagEmulator.with_records(uid_for_card_number(CARD), [ndef.TextRecord(CARD)])

    tag.present(udp_path, hold_s=2.2)  # held, and the reader keeps checking it is there

    assert watch.next_tap().card_number == CARD
    watch.assert_no_tap()

    # Taken away (present returned) and tapped again straight away.
    assert sim_tap(udp_path, CARD, timeout_s=TAP_WAIT_S) == watch.next_tap()
    watch.assert_no_tap(within_s=0.1)


UID = bytes.fromhex("02AABBCCDDEEFF")
CARD_MESSAGE = b"".join(ndef.message_encoder([ndef.TextRecord(CARD)]))


@pytest.mark.parametrize(
    "memory",
    [
        # The NDEF TLV claims 4095 bytes, far past the tag's end.
        tag_memory(UID, b"\x03\xff\x0f\xff" + CARD_MESSAGE),
        # The NDEF TLV claims fewer bytes than the message has: the record is cut short.
        tag_memory(UID, bytes([3, len(CARD_MESSAGE) - 5]) + CARD_MESSAGE + b"\xfe"),
        # A card number in memory, but no NDEF capability container: not an NDEF tag.
        tag_memory(UID, ndef_tlv(CARD_MESSAGE), capability=bytes(4)),
        # A well-formed TLV around bytes that are no NDEF records.
        tag_memory(UID, ndef_tlv(b"\xff" * 12)),
    ],
    ids=["tlv-past-the-end", "tlv-too-short", "no-ndef-capability", "not-ndef-records"],
)
def test_a_garbled_tag_gives_its_uid_and_the_reader_goes_on(reader, udp_path, watch, memory):
    tap = present_until_tapped(Type2TagEmulator(UID, memory), udp_path, watch)

    assert tap.uid == UID.hex().upper()
    assert tap.card_number is None
    assert sim_tap(udp_path, CARD, timeout_s=TAP_WAIT_S) == watch.next_tap()
    assert reader.status == "ready"


@pytest.mark.parametrize("path", ["usb:ffff:ffff", "tty:OMNICARD_NO_SUCH_PORT:pn532"])
def test_a_reader_that_cannot_open_shows_in_the_status_and_is_retried_with_backoff(
    path, watch, make_reader
):
    attempts: list[float] = []
    attempted = threading.Semaphore(0)

    def open_frontend(p):
        attempts.append(time.monotonic())
        attempted.release()
        return nfc.ContactlessFrontend(p)

    r = make_reader(path, open_frontend=open_frontend, retry_s=(0.05, 0.4))
    status = watch.wait_status(lambda s: s.startswith("no reader: "))
    for _ in range(4):
        assert attempted.acquire(timeout=TAP_WAIT_S)
    assert r.status == status
    r.stop()

    pauses = [b - a for a, b in zip(attempts, attempts[1:], strict=False)]
    assert pauses[0] >= 0.05 and pauses[2] >= 0.15  # 0.05, 0.1, 0.2: it backs off
    assert r.status == "stopped" and not reader_threads()


def test_a_reader_plugged_in_later_is_found_and_reads(udp_path, watch, make_reader):
    plugged_in = threading.Event()

    def open_frontend(path):
        # Until it is plugged in, nfcpy looks for the reader on a serial port that is not
        # there, and fails as it does for a missing device.
        return nfc.ContactlessFrontend(
            path if plugged_in.is_set() else "tty:OMNICARD_UNPLUGGED:pn532"
        )

    make_reader(udp_path, open_frontend=open_frontend)
    watch.wait_status(lambda s: s == "no reader: No such device")
    plugged_in.set()
    watch.wait_status(lambda s: s == "ready")

    assert sim_tap(udp_path, CARD, timeout_s=TAP_WAIT_S) == watch.next_tap()


def test_a_reader_that_fails_in_use_shows_in_the_status_and_is_reopened(watch, make_reader):
    opened = threading.Semaphore(0)

    def open_frontend(path):
        opened.release()
        return nfc.ContactlessFrontend(path)

    # nfcpy opens this frontend, but every poll fails in the socket (a broadcast address):
    # the same IOError path as a USB reader pulled out mid-poll.
    make_reader("udp:255.255.255.255:54321", open_frontend=open_frontend)
    watch.wait_status(lambda s: s == "no reader: the reader stopped answering")
    for _ in range(3):
        assert opened.acquire(timeout=TAP_WAIT_S)

    assert "ready" in watch.statuses


def test_stop_returns_promptly_while_polling(reader):
    started = time.monotonic()
    reader.stop()

    assert time.monotonic() - started < 2.0
    assert reader.status == "stopped" and not reader_threads()


def test_stop_returns_promptly_while_a_tag_is_held(reader, udp_path, watch):
    tag = Type2TagEmulator.with_records(uid_for_card_number(CARD), [ndef.TextRecord(CARD)])
    holder = threading.Thread(target=tag.present, args=(udp_path,), kwargs={"hold_s": 1.5})
    holder.start()
    try:
        watch.next_tap()
        started = time.monotonic()
        reader.stop()
        assert time.monotonic() - started < 2.0
        assert not reader_threads()
    finally:
        holder.join()


def test_no_reader_configured_starts_nothing(watch):
    r = NfcReader("", watch.taps.put, on_status=watch.on_status)
    r.start()
    r.stop()

    assert r.status == "no reader: none configured" and not reader_threads()


def test_sim_tap_with_no_reader_times_out(udp_path):
    with pytest.raises(TimeoutError):
        sim_tap(udp_path, CARD, timeout_s=0.3)


@pytest.mark.parametrize("value", ["4000001234567890", "12345", "04A1B2C3D4E5", "not-hex!"])
def test_sim_tap_refuses_what_is_neither_a_card_number_nor_a_uid(udp_path, value):
    with pytest.raises(ValueError):
        sim_tap(udp_path, value, timeout_s=0.3)


def test_a_tag_written_by_a_reader_keeps_what_was_written(reader, udp_path, watch):
    """What the kiosk will do: write product links to a blank tag, then any till reads them."""
    tag = Type2TagEmulator(UID, ndef_memory(UID, []))
    records = [ndef.UriRecord("https://shop.example/p/CF-LATTE-G"), ndef.TextRecord(OTHER_CARD)]
    reader.stop()
    writer = nfc.ContactlessFrontend(udp_path)
    written = threading.Event()

    def write(nfc_tag):
        nfc_tag.ndef.records = records
        written.set()
        return False  # hand the tag back at once

    def run_writer():
        give_up = time.monotonic() + TAP_WAIT_S
        writer.connect(
            rdwr={"targets": ["106A"], "iterations": 1, "on-connect": write},
            terminate=lambda: written.is_set() or time.monotonic() > give_up,
        )
        writer.close()

    thread = threading.Thread(target=run_writer)
    thread.start()
    tag.present(udp_path, hold_s=TAP_WAIT_S, until=written.is_set)
    thread.join(TAP_WAIT_S)

    assert written.is_set()
    assert tag.memory[16:].startswith(ndef_tlv(b"".join(ndef.message_encoder(records))))
    reader.start()
    watch.wait_status(lambda s: s == "ready")
    tap = present_until_tapped(tag, udp_path, watch)
    assert tap == Tap(
        uid=UID.hex().upper(),
        card_number=OTHER_CARD,
        uris=("https://shop.example/p/CF-LATTE-G",),
        texts=(OTHER_CARD,),
    )


def test_card_numbers_are_read_only_from_luhn_valid_16_digit_texts():
    assert luhn_valid(CARD) and luhn_valid(OTHER_CARD)
    assert card_number_in(["4000 0012 3456 7899"]) == CARD
    assert card_number_in(["hello", f" {OTHER_CARD} "]) == OTHER_CARD
    assert card_number_in(["4000001234567890"]) is None  # wrong check digit
    assert card_number_in(["400000123456789"]) is None
    assert card_number_in([f"card {CARD}"]) is None
    assert card_number_in([f"omnicard:card:{CARD}"]) is None  # only a Text record's text


def test_a_missing_reader_and_a_failing_callback_write_nothing_on_the_cashiers_screen():
    """With no logging configured, Python prints a library's WARNINGs and ERRORs to stderr,
    over the till's screen: a till process of its own shows the reader stays quiet."""
    script = (
        "import threading\n"
        "from store_devices.nfc import NfcReader\n"
        "seen = threading.Event()\n"
        "def on_status(status):\n"
        "    if status.startswith('no reader'):\n"
        "        seen.set()\n"
        "        raise RuntimeError('a buggy screen')\n"
        "r = NfcReader('tty:OMNICARD_NO_SUCH_PORT:pn532', print, retry_s=(0.05, 0.1),\n"
        "              on_status=on_status)\n"
        "r.start()\n"
        "assert seen.wait(5)\n"
        "r.stop()\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )

    assert done.returncode == 0, done.stderr
    assert done.stdout == "" and done.stderr == ""

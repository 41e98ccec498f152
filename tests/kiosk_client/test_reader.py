"""The kiosk daemon's reading side through nfcpy's real udp frontend, with a Type 2 tag on
the far end: taps land in the outbox with their refs, a held tag counts once, a garbled tag
is an unreadable tap, and a reader pulled out and plugged back in reads again. The API is
down in these tests: every tap stays queued, in order (its sending is in test_live.py)."""

from __future__ import annotations

import uuid

import ndef
import pytest

from kiosk.daemon import Debouncer
from kiosk.outbox import PENDING
from kiosk.tags import sim_tag
from store_devices.nfc import Tap, play_tag
from store_devices.type2_tag import Type2TagEmulator, ndef_tlv, tag_memory
from tests.kiosk_client.helpers import (
    SHOP,
    WAIT_S,
    Events,
    closed_port_url,
    free_udp_path,
    make_config,
    start_kiosk,
    unpluggable,
)


@pytest.fixture
def events() -> Events:
    return Events()


@pytest.fixture
def udp_path() -> str:
    return free_udp_path()


@pytest.fixture
def kiosk(tmp_path, udp_path, events):
    k = start_kiosk(make_config(tmp_path, udp_path, closed_port_url()), events)
    yield k
    k.stop()


def tap_count(events: Events) -> int:
    return len(events.of("tap"))


def test_a_product_tag_becomes_a_queued_tap_with_its_link_and_a_fresh_ref(kiosk, udp_path, events):
    tag, expected = sim_tag("DW-MUG", SHOP)
    play_tag(udp_path, tag, timeout_s=WAIT_S)
    events.wait_for(lambda: tap_count(events) == 1)

    [queued] = kiosk.outbox.taps()
    assert queued.state == PENDING  # written before any send; the API is down
    assert queued.body == {
        "tap_ref": queued.tap_ref, "tapped_at": queued.tapped_at, "uid": expected.uid,
        "uris": [f"{SHOP}/p/DW-MUG"], "texts": [], "unreadable": False,
    }  # fmt: skip
    assert uuid.UUID(queued.tap_ref).version == 4
    events.wait_for(lambda: events.of("offline"))
    assert kiosk.outbox.taps()[0].attempts >= 1 and kiosk.outbox.pending_count() == 1


def test_taps_queue_in_the_order_they_were_made(kiosk, udp_path, events):
    for value in ["DW-MUG", "sign:apparel", "4000001234567899", "uid:04A1B2C3D4E5F6"]:
        play_tag(udp_path, sim_tag(value, SHOP)[0], timeout_s=WAIT_S)
    events.wait_for(lambda: tap_count(events) == 4)

    bodies = [t.body for t in kiosk.outbox.taps()]
    assert [b["uris"] for b in bodies] == [[f"{SHOP}/p/DW-MUG"], [f"{SHOP}/c/apparel"], [], []]
    assert bodies[2]["texts"] == ["4000001234567899"]
    assert bodies[3]["uid"] == "04A1B2C3D4E5F6"
    assert len({b["tap_ref"] for b in bodies}) == 4


def test_a_tag_held_on_the_reader_counts_once(kiosk, udp_path, events):
    tag, _ = sim_tag("AP-HOODIE", SHOP)
    tag.present(udp_path, hold_s=2.5)  # the reader keeps checking it is still there

    events.wait_for(lambda: tap_count(events) >= 1)
    assert tap_count(events) == 1 and len(kiosk.outbox.taps()) == 1


def test_the_same_tag_again_counts_only_after_the_debounce_time(kiosk, udp_path, events):
    counted = lambda n: lambda: tap_count(events) >= n  # noqa: E731
    tag = lambda: sim_tag("AP-HOODIE", SHOP)[0]  # noqa: E731
    play_tag(udp_path, tag(), timeout_s=WAIT_S)
    events.wait_for(counted(1))

    # Taken away and back at once (a wobbling hand): read, but not counted again.
    back = tag()
    play_tag(udp_path, back, timeout_s=WAIT_S)
    assert back.read.is_set() and tap_count(events) == 1
    # Another tag counts at once; then the first one again, after debounce_s (1 s): counts.
    play_tag(udp_path, sim_tag("DW-MUG", SHOP)[0], timeout_s=WAIT_S)
    events.wait_for(counted(2))
    play_tag(udp_path, tag(), timeout_s=WAIT_S)
    events.wait_for(counted(3))

    assert [t["uris"] for t in events.of("tap")] == [
        [f"{SHOP}/p/AP-HOODIE"],
        [f"{SHOP}/p/DW-MUG"],
        [f"{SHOP}/p/AP-HOODIE"],
    ]


def test_the_debouncer_counts_a_tag_again_once_it_was_away_long_enough():
    now = [0.0]
    d = Debouncer(2.0, clock=lambda: now[0])
    a, b = Tap("04AA"), Tap("04BB")

    assert d.accept(a)
    assert not d.accept(a)  # still there
    now[0] = 10.0  # held for long: still one tap
    assert not d.accept(a)
    d.removed(a)
    now[0] = 11.9
    assert not d.accept(a)  # back within 2 s of leaving
    d.removed(a)
    now[0] = 13.95
    assert d.accept(a)  # away for 2.05 s
    assert d.accept(b) and d.accept(a)  # another tag in between: both count


UID = bytes.fromhex("02AABBCCDDEEFF")
MESSAGE = b"".join(ndef.message_encoder([ndef.UriRecord(f"{SHOP}/p/DW-MUG")]))


@pytest.mark.parametrize(
    "memory",
    [
        tag_memory(UID, ndef_tlv(b"\xff" * 12)),  # a TLV around bytes that are no records
        tag_memory(UID, bytes([3, len(MESSAGE) - 5]) + MESSAGE + b"\xfe"),  # cut short
    ],
    ids=["not-ndef-records", "record-cut-short"],
)
def test_a_garbled_tag_is_an_unreadable_tap_and_the_reader_reads_on(
    kiosk, udp_path, events, memory
):
    tag = Type2TagEmulator(UID, memory)
    tag.present(udp_path, hold_s=WAIT_S, until=lambda: tap_count(events) >= 1)
    events.wait_for(lambda: tap_count(events) == 1)
    play_tag(udp_path, sim_tag("DW-MUG", SHOP)[0], timeout_s=WAIT_S)
    events.wait_for(lambda: tap_count(events) == 2)

    garbled, good = (t.body for t in kiosk.outbox.taps())
    assert (garbled["uid"], garbled["unreadable"]) == ("02AABBCCDDEEFF", True)
    assert garbled["uris"] == [] and garbled["texts"] == []
    assert good["uris"] == [f"{SHOP}/p/DW-MUG"] and not good["unreadable"]
    assert kiosk.reader.status == "ready"


def test_the_simulated_garbled_tag_is_unreadable(kiosk, udp_path, events):
    tag, expected = sim_tag("garbled", SHOP)
    play_tag(udp_path, tag, timeout_s=WAIT_S)
    events.wait_for(lambda: tap_count(events) == 1)

    assert expected.unreadable
    assert kiosk.outbox.taps()[0].body["unreadable"] is True


def test_a_reader_pulled_out_and_plugged_back_in_reads_again(tmp_path, udp_path, events):
    open_frontend, plug, pull_out = unpluggable(udp_path)
    kiosk = start_kiosk(
        make_config(tmp_path, udp_path, closed_port_url()), events, open_frontend=open_frontend
    )
    try:
        play_tag(udp_path, sim_tag("DW-MUG", SHOP)[0], timeout_s=WAIT_S)
        events.wait_for(lambda: tap_count(events) == 1)

        pull_out()
        events.wait_for(lambda: any(s["status"] == "no reader: No such device"
                                    for s in events.of("reader")))  # fmt: skip
        plug.set()
        events.wait_for(lambda: events.of("reader")[-1]["status"] == "ready")
        play_tag(udp_path, sim_tag("BN-PIKE", SHOP)[0], timeout_s=WAIT_S)
        events.wait_for(lambda: tap_count(events) == 2)

        assert [t.body["uris"] for t in kiosk.outbox.taps()] == [
            [f"{SHOP}/p/DW-MUG"],
            [f"{SHOP}/p/BN-PIKE"],
        ]
    finally:
        kiosk.stop()


def test_a_second_daemon_on_the_same_state_folder_is_refused(kiosk, events):
    from kiosk.daemon import Kiosk

    with pytest.raises(RuntimeError, match="another kiosk daemon"):
        Kiosk(kiosk.config)

"""What the kiosk's tags carry, and writing and checking them through nfcpy.

A product tag holds one NDEF URI record, ``<shop_url>/p/<SKU>`` (the website's product page,
so a shopper's own phone opens it too); a shelf sign ``<shop_url>/c/<category>``. A loyalty
card or wristband holds its 16-digit number in a Text record. The server decides what a tap
means (contract: any host, the path counts); :func:`describe` is the kiosk's own reading of a
tag, for the staff who write and check tags.
"""

from __future__ import annotations

import re
import threading
import time
from urllib.parse import quote, unquote, urlsplit

import ndef
import nfc

from store_devices.nfc import Tap, luhn_valid, read_records, sim_uid, tap_from_records
from store_devices.type2_tag import (
    Type2TagEmulator,
    check_uid,
    ndef_memory,
    ndef_tlv,
    tag_memory,
)

SKU = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,39}")
CATEGORY = re.compile(r"[^/?#\x00-\x1f]{1,80}")
#: A message that is no NDEF: what a damaged or foreign tag can hold.
GARBLED = b"\xff" * 12


def product_uri(shop_url: str, sku: str) -> str:
    if not SKU.fullmatch(sku):
        raise ValueError(f"{sku!r} is not a SKU (letters, digits, '.', '_', '-'; up to 40)")
    return f"{shop_url.rstrip('/')}/p/{sku}"


def sign_uri(shop_url: str, category: str) -> str:
    if not CATEGORY.fullmatch(category.strip()):
        raise ValueError(f"{category!r} is not a category name")
    return f"{shop_url.rstrip('/')}/c/{quote(category.strip(), safe='')}"


def describe(tap: Tap) -> dict:
    """What a tag is, as the kiosk reads it: product, sign, card, unreadable or uid only."""
    found: dict = {"kind": "uid", "uid": tap.uid}
    if tap.unreadable:
        found["kind"] = "unreadable"
    else:
        for uri in tap.uris:
            path = urlsplit(uri).path
            if path.startswith("/p/") and len(path) > 3:
                found.update(kind="product", sku=unquote(path[3:]), uri=uri)
                break
            if path.startswith("/c/") and len(path) > 3:
                found.update(kind="sign", category=unquote(path[3:]), uri=uri)
                break
        else:
            if tap.card_number:
                found.update(kind="card", card_number=tap.card_number)
    found.update(uris=list(tap.uris), texts=list(tap.texts), unreadable=tap.unreadable)
    return found


def sim_tag(value: str, shop_url: str) -> tuple[Type2TagEmulator, Tap]:
    """A simulated tag from the command line's words, and the Tap a reader should see:
    ``SKU`` a product tag, ``sign:CATEGORY`` a shelf sign, a 16-digit number a loyalty card,
    an ``http(s)://`` URI a tag holding that URI, ``uid:HEX`` a blank tag with that UID,
    ``garbled`` a tag whose NDEF message is no NDEF. ValueError for anything else."""
    value = value.strip()
    digits = value.replace(" ", "")
    if value == "garbled":
        uid = sim_uid("garbled")
        memory = tag_memory(uid, ndef_tlv(GARBLED))
        return Type2TagEmulator(uid, memory), Tap(uid.hex().upper(), unreadable=True)
    if value.lower().startswith("uid:"):
        try:
            uid = check_uid(bytes.fromhex(value[4:]))
        except ValueError as e:
            raise ValueError(f"{value!r}: uid:HEX with 8, 14 or 20 hex digits ({e})") from None
        return Type2TagEmulator.with_records(uid, []), Tap(uid.hex().upper())
    if len(digits) == 16 and digits.isdigit():
        if not luhn_valid(digits):
            raise ValueError(f"{digits} is not a card number (its Luhn check digit is wrong)")
        records = [ndef.TextRecord(digits)]
        uid = sim_uid(digits)
    else:
        if value.startswith(("http://", "https://")):
            uri = value
        elif value.startswith("sign:"):
            uri = sign_uri(shop_url, value[5:])
        else:
            uri = product_uri(shop_url, value)
        records = [ndef.UriRecord(uri)]
        uid = sim_uid(f"tag:{urlsplit(uri).path}")
    return Type2TagEmulator.with_records(uid, records), tap_from_records(uid, records)


def blank_tag(seed: str) -> Type2TagEmulator:
    """A formatted, writable NTAG213 holding an empty NDEF message."""
    uid = sim_uid(f"tag:{seed}")
    return Type2TagEmulator(uid, ndef_memory(uid, []))


class TagError(Exception):
    """The tag could not be written or read back as asked."""


def _on_reader(path: str, work, *, timeout_s: float, simulated: Type2TagEmulator | None):
    """Opens the reader at *path*, waits up to *timeout_s* for a tag and runs *work(tag)* on
    it; *simulated*: a tag played on the same (udp) reader meanwhile. Returns work's result;
    TimeoutError when no tag came."""
    done = threading.Event()
    outcome: dict = {}

    def on_connect(tag):
        try:
            outcome["result"] = work(tag)
        except Exception as e:  # reported to the caller, the reader is closed cleanly
            outcome["error"] = e
        done.set()
        return False  # hand the tag back at once

    player = None
    if simulated is not None:
        player = threading.Thread(
            target=simulated.present, args=(path,),
            kwargs={"hold_s": timeout_s, "until": done.is_set}, daemon=True,
        )  # fmt: skip
        player.start()
    clf = nfc.ContactlessFrontend(path)
    try:
        give_up = time.monotonic() + timeout_s
        while not done.is_set() and time.monotonic() < give_up:
            clf.connect(
                rdwr={"targets": ["106A"], "iterations": 1, "interval": 0.1,
                      "on-connect": on_connect},
                terminate=lambda: done.is_set() or time.monotonic() > give_up,
            )  # fmt: skip
    finally:
        clf.close()
        if player is not None:
            player.join(timeout_s)
    if "error" in outcome:
        raise outcome["error"]
    if not done.is_set():
        raise TimeoutError(f"no tag on the reader {path} within {timeout_s} s")
    return outcome["result"]


def write_tag(path: str, uri: str, *, timeout_s: float = 10.0,
              simulated: Type2TagEmulator | None = None) -> dict:  # fmt: skip
    """Writes one NDEF URI record to the tag on the reader, reads the tag again and checks it
    holds exactly that; returns what was written and what was read back."""

    def work(tag) -> dict:
        if tag.ndef is None:
            raise TagError("The tag is not NDEF formatted.")
        if not tag.ndef.is_writeable:
            raise TagError("The tag is write protected.")
        records = [ndef.UriRecord(uri)]
        tag.ndef.records = records
        tag.ndef.has_changed  # noqa: B018  (reads the NDEF message from the tag again)
        read_back = tap_from_records(bytes(tag.identifier), read_records(tag))
        if list(read_back.uris) != [uri] or read_back.texts:
            raise TagError(f"Read back {list(read_back.uris)} instead of {uri}.")
        return describe(read_back)

    return _on_reader(path, work, timeout_s=timeout_s, simulated=simulated)


def check_tag(path: str, *, timeout_s: float = 10.0,
              simulated: Type2TagEmulator | None = None) -> dict:  # fmt: skip
    """Reads the tag on the reader and says what it is."""
    from store_devices.nfc import read_tap

    return _on_reader(path, lambda tag: describe(read_tap(tag)), timeout_s=timeout_s,
                      simulated=simulated)  # fmt: skip

"""The NFC reader of the till and the kiosk: a shopper taps an Omnicard card, wristband or
sticker, or (at a kiosk) a product tag or a shelf sign.

:class:`NfcReader` runs nfcpy's ``ContactlessFrontend`` on a thread of its own and hands each
tap to its program as a :class:`Tap`. The reader comes from the program's config: ``usb``,
``usb:VID:PID``, ``tty:PORT:DRIVER``, or ``udp:HOST:PORT`` (nfcpy's simulated frontend, on
which :func:`sim_tap` plays a tag for demos and tests).

What the till reads from a tag:

- the UID, as upper-case hex. A UID is trivially cloned, so the server treats it as
  identification of a bound card, never as proof of anything.
- the NDEF records. The card number is carried in exactly one way: an NDEF **Text record
  whose text is the 16-digit card number** (Luhn-checked; spaces allowed between digit groups,
  as printed on the card). Every Text and URI record is handed over too, for the kiosk's
  product tags (``https://<shop host>/p/<SKU>``) and shelf signs (``.../c/<category>``).
- whether the NDEF message could be read at all: a tag whose NDEF is garbled (a broken TLV,
  bytes that are no NDEF records, taken away mid-read) is a tap with ``unreadable=True`` and
  its UID, so the kiosk can say so; a tag without NDEF (blank, unformatted) is readable and
  simply has no records.

Only 106 kbps type A targets are polled: that is how NFC Forum Type 2 tags (the NTAG and
MIFARE Ultralight chips of the shop's cards and wristbands) answer, and the same poll also
finds Type 1 and Type 4A (ISO-DEP, e.g. DESFire) tags. Type B (106B) and FeliCa (212F) are
left out: the shop issues neither, and every target type that nobody answers lengthens the
poll cycle (about a second each over the udp frontend), so a tap would wait longer. A store
that takes FeliCa cards can pass ``targets=("106A", "212F")``.
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import ndef
import nfc
import nfc.tag

from store_devices.type2_tag import Type2TagEmulator, check_uid, ndef_memory

log = logging.getLogger(__name__)
# The till shows the reader's state in its status line. nfcpy's INFO lines ("searching for
# reader", "using ...") are noise in the till's log; its WARNINGs and ERRORs stay. nfcpy gives
# its logger a NullHandler, and so does this module, so that with no logging configured
# nothing reaches Python's last-resort printing to stderr, over the cashier's screen.
logging.getLogger("nfc").setLevel(logging.WARNING)
log.addHandler(logging.NullHandler())

CARD_NUMBER = re.compile(r"\d{4}(?: ?\d{4}){3}")


@dataclass(frozen=True)
class Tap:
    """What one presentation of a tag to the reader gave."""

    uid: str  # upper-case hex
    card_number: str | None = None  # from an NDEF Text record, if the tag holds one
    uris: tuple[str, ...] = ()
    texts: tuple[str, ...] = ()
    unreadable: bool = False  # the tag's NDEF message could not be read or decoded


def luhn_valid(number: str) -> bool:
    """True for a 16-digit number whose last digit is its Luhn check digit."""
    if len(number) != 16 or not number.isdigit():
        return False
    total = 0
    for position, digit in enumerate(int(d) for d in reversed(number)):
        if position % 2:
            digit = digit * 2 - 9 if digit > 4 else digit * 2
        total += digit
    return total % 10 == 0


def card_number_in(texts: Sequence[str]) -> str | None:
    """The first text that is a valid 16-digit card number, without its spaces."""
    for text in texts:
        text = text.strip()
        if CARD_NUMBER.fullmatch(text) and luhn_valid(number := text.replace(" ", "")):
            return number
    return None


def tap_from_records(uid: bytes, records: Sequence[ndef.Record]) -> Tap:
    texts = tuple(r.text for r in records if isinstance(r, ndef.TextRecord))
    uris = tuple(r.iri for r in records if isinstance(r, ndef.UriRecord))
    return Tap(uid.hex().upper(), card_number_in(texts), uris, texts)


def read_records(tag) -> list[ndef.Record]:
    """The NDEF records of an activated nfcpy tag (none on a tag without NDEF). Raises
    ndef.DecodeError for a message that is no NDEF, nfcpy's errors for a failed read."""
    if tag.ndef is None:
        return []
    # Strict: nfcpy's own `records` decodes leniently and lets a cut-off record through.
    return list(ndef.message_decoder(tag.ndef.octets, errors="strict"))


def read_tap(tag) -> Tap:
    """The Tap of an activated nfcpy tag. A tag whose NDEF cannot be read or decoded (a broken
    TLV, garbage records, taken away mid-read) still gives its UID, marked unreadable."""
    uid = bytes(tag.identifier)
    try:
        records = read_records(tag)
    except (nfc.tag.TagCommandError, nfc.clf.CommunicationError, ndef.DecodeError) as error:
        log.info("tag %s: NDEF unreadable (%s)", uid.hex().upper(), error)
        return Tap(uid.hex().upper(), unreadable=True)
    return tap_from_records(uid, records)


class NfcReader:
    """The reader on its own thread. *on_tap* is called on that thread once per presentation
    of a tag (held on the reader, it is not read again until taken away): keep it short, e.g.
    put the Tap on the till's queue.

    *on_removed*, if given, is called on that thread with the same Tap once the tag has been
    taken away (or the reader was lost while it lay there).

    A reader that is missing, unplugged or stops answering never raises into the program: it
    shows in :attr:`status` and is opened again with a growing pause (*retry_s*: first, most).
    """

    def __init__(
        self,
        path: str,
        on_tap: Callable[[Tap], None],
        *,
        targets: Sequence[str] = ("106A",),
        on_status: Callable[[str], None] | None = None,
        on_removed: Callable[[Tap], None] | None = None,
        retry_s: tuple[float, float] = (0.5, 10.0),
        open_frontend: Callable[[str], nfc.ContactlessFrontend] = nfc.ContactlessFrontend,
    ):
        self.path = path
        self._on_tap = on_tap
        self._on_status = on_status
        self._on_removed = on_removed
        self._present: Tap | None = None  # the tag on the reader now, if any
        self._targets = list(targets)
        self._retry_s = retry_s
        # The one seam for the device itself: how the frontend is opened (a test plugs a
        # reader in by opening the udp frontend only from some moment on).
        self._open_frontend = open_frontend
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._status = "stopped" if path else "no reader: none configured"

    @property
    def status(self) -> str:
        """``"ready"``, ``"no reader: <why>"``, ``"starting"`` or ``"stopped"``."""
        return self._status

    def start(self) -> None:
        if not self.path or self._thread is not None:
            return
        # A fresh event per run: a thread that outlived stop()'s join must not be woken up
        # again by the next start().
        self._stopping = stopping = threading.Event()
        self._set_status("starting")
        self._thread = threading.Thread(
            target=self._run, args=(stopping,), name="nfc-reader", daemon=True
        )
        self._thread.start()

    def stop(self, timeout_s: float = 2.0) -> None:
        """Stops polling and closes the reader; returns within about a poll cycle (nfcpy
        checks for termination between polls and presence checks)."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None
        if self.path:
            self._set_status("stopped")

    def _set_status(self, status: str) -> None:
        if status == self._status:
            return
        self._status = status
        log.info("NFC reader %s: %s", self.path, status)
        if self._on_status is not None:
            try:
                self._on_status(status)
            except Exception:
                log.exception("on_status callback failed")

    def _run(self, stopping: threading.Event) -> None:
        first_s, most_s = self._retry_s
        pause_s = first_s
        while not stopping.is_set():
            opened_at = time.monotonic()
            why = self._session(stopping)
            if why is None:
                return
            self._set_status(f"no reader: {why}")
            if time.monotonic() - opened_at > most_s:
                pause_s = first_s  # it worked for a while: this is a new problem
            if stopping.wait(pause_s):
                return
            pause_s = min(pause_s * 2, most_s)

    def _session(self, stopping: threading.Event) -> str | None:
        """Opens the reader and polls until stopped (None) or the reader is lost (why)."""
        try:
            clf = self._open_frontend(self.path)
        except Exception as error:  # nfcpy raises OSError; a bad path ValueError, and so on
            return describe(error)
        try:
            self._set_status("ready")
            rdwr = {
                "targets": self._targets,
                "iterations": 1,
                "interval": 0.1,
                "on-connect": self._on_connect,
            }
            while not stopping.is_set():
                # Returns after a tag was read and taken away (True), when stopped (None), or
                # False when the device failed (nfcpy turns an unplugged reader's IOError
                # into False).
                connected = clf.connect(rdwr=rdwr, terminate=stopping.is_set)
                self._removed()
                if connected is False:
                    return "the reader stopped answering"
            return None
        except Exception as error:
            return describe(error)
        finally:
            self._removed()
            try:
                clf.close()
            except Exception as error:
                log.info("closing the NFC reader: %s", error)

    def _removed(self) -> None:
        tap, self._present = self._present, None
        if tap is not None and self._on_removed is not None:
            try:
                self._on_removed(tap)
            except Exception:
                log.exception("on_removed callback failed")

    def _on_connect(self, tag) -> bool:
        try:
            tap = read_tap(tag)
        except Exception:
            log.exception("reading a tag")
            tap = Tap(bytes(tag.identifier).hex().upper(), unreadable=True)
        self._present = tap
        try:
            self._on_tap(tap)
        except Exception:
            log.exception("on_tap callback failed")
        # True: nfcpy waits until the tag is taken away before it polls again, so a tag
        # held on the reader is one tap.
        return True


def describe(error: BaseException) -> str:
    """A short reason for the till's status line."""
    text = getattr(error, "strerror", None) or str(error) or type(error).__name__
    # libusb's "cannot find a suitable libusb-1.0: [every path it tried]" is one example
    return text.split(": [")[0].strip()[:100]


def sim_tap(path: str, value: str, *, timeout_s: float = 10) -> Tap:
    """Plays a tag on nfcpy's udp frontend at *path* until a reader has read it; returns the
    Tap that reader should have seen.

    *value* is a 16-digit card number (a tag with a stable UID derived from it and an NDEF
    Text record holding the number) or a 4, 7 or 10 byte UID in hex (a blank formatted tag).
    Raises ValueError for anything else, TimeoutError when no reader read the tag in time.
    For demos and tests only: nfcpy's udp frontend binds the port on every interface.
    """
    value = value.strip().replace(" ", "")
    if len(value) == 16 and value.isdigit():
        if not luhn_valid(value):
            raise ValueError(f"{value} is not a card number (its Luhn check digit is wrong)")
        uid = uid_for_card_number(value)
        records = [ndef.TextRecord(value)]
    else:
        try:
            uid = check_uid(bytes.fromhex(value))
        except ValueError:
            raise ValueError(
                f"{value!r} is neither a 16-digit card number nor a tag UID in hex "
                "(8, 14 or 20 hex digits)"
            ) from None
        records = []
    play_tag(path, Type2TagEmulator(uid, ndef_memory(uid, records)), timeout_s=timeout_s)
    return tap_from_records(uid, records)


def play_tag(path: str, tag: Type2TagEmulator, *, timeout_s: float = 10) -> None:
    """Holds *tag* on the udp reader at *path* until a reader has read it (then takes it
    away); TimeoutError when no reader read it within *timeout_s*."""
    tag.present(path, hold_s=timeout_s, until=tag.read.is_set)
    if not tag.read.is_set():
        raise TimeoutError(f"no reader read the tag on {path} within {timeout_s} s")


def uid_for_card_number(number: str) -> bytes:
    """A stable 7-byte UID for a simulated card."""
    return sim_uid(number)


def sim_uid(seed: str) -> bytes:
    """A stable 7-byte UID for a simulated tag. Its first byte, the manufacturer code, is
    STMicroelectronics' (0x02) rather than NXP's, so nfcpy reads it as a plain Type 2 tag."""
    return b"\x02" + hashlib.sha256(f"omnicard-sim:{seed}".encode()).digest()[:6]

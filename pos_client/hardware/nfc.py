"""The till's NFC reader: the shopper taps an Omnicard card, wristband or sticker.

:class:`NfcReader` runs nfcpy's ``ContactlessFrontend`` on a thread of its own and hands each
tap to the till as a :class:`Tap`. The reader comes from the till's config: ``usb``,
``usb:VID:PID``, ``tty:PORT:DRIVER``, or ``udp:HOST:PORT`` (nfcpy's simulated frontend, on
which :func:`sim_tap` plays a tag for demos and tests).

What the till reads from a tag:

- the UID, as upper-case hex. A UID is trivially cloned, so the server treats it as
  identification of a bound card, never as proof of anything.
- the NDEF records. The card number is carried in exactly one way: an NDEF **Text record
  whose text is the 16-digit card number** (Luhn-checked; spaces allowed between digit groups,
  as printed on the card). Every Text and URI record is handed over too, for the kiosk's
  product tags.

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

from pos_client.hardware.type2_tag import Type2TagEmulator, check_uid, ndef_memory

log = logging.getLogger(__name__)
# The till reports the reader's state in its status line; nfcpy's own INFO lines ("searching
# for reader", "using ...") and its ERROR on every retry of a missing reader would scribble
# over the cashier's screen. A handler on each logger keeps Python's last-resort stderr
# printing away when the till configures no logging; a configured log still gets WARNINGs.
logging.getLogger("nfc").setLevel(logging.WARNING)
logging.getLogger("nfc").addHandler(logging.NullHandler())
log.addHandler(logging.NullHandler())

CARD_NUMBER = re.compile(r"\d{4}(?: ?\d{4}){3}")


@dataclass(frozen=True)
class Tap:
    """What one presentation of a tag to the reader gave."""

    uid: str  # upper-case hex
    card_number: str | None = None  # from an NDEF Text record, if the tag holds one
    uris: tuple[str, ...] = ()
    texts: tuple[str, ...] = ()


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


def read_tap(tag) -> Tap:
    """The Tap of an activated nfcpy tag. A tag whose NDEF cannot be read or decoded (not
    formatted, a broken TLV, garbage records, taken away mid-read) still gives its UID."""
    uid = bytes(tag.identifier)
    try:
        records = tag.ndef.records if tag.ndef is not None else []
    except (nfc.tag.TagCommandError, nfc.clf.CommunicationError, ndef.DecodeError) as error:
        log.info("tag %s: NDEF unreadable (%s)", uid.hex().upper(), error)
        records = []
    return tap_from_records(uid, records)


class NfcReader:
    """The reader on its own thread. *on_tap* is called on that thread once per presentation
    of a tag (held on the reader, it is not read again until taken away): keep it short, e.g.
    put the Tap on the till's queue.

    A reader that is missing, unplugged or stops answering never raises into the till: it
    shows in :attr:`status` and is opened again with a growing pause (*retry_s*: first, most).
    """

    def __init__(
        self,
        path: str,
        on_tap: Callable[[Tap], None],
        *,
        targets: Sequence[str] = ("106A",),
        on_status: Callable[[str], None] | None = None,
        retry_s: tuple[float, float] = (0.5, 10.0),
        open_frontend: Callable[[str], nfc.ContactlessFrontend] = nfc.ContactlessFrontend,
    ):
        self.path = path
        self._on_tap = on_tap
        self._on_status = on_status
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
        self._stopping.clear()
        self._set_status("starting")
        self._thread = threading.Thread(target=self._run, name="nfc-reader", daemon=True)
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

    def _run(self) -> None:
        first_s, most_s = self._retry_s
        pause_s = first_s
        while not self._stopping.is_set():
            opened_at = time.monotonic()
            why = self._session()
            if why is None:
                return
            self._set_status(f"no reader: {why}")
            if time.monotonic() - opened_at > most_s:
                pause_s = first_s  # it worked for a while: this is a new problem
            if self._stopping.wait(pause_s):
                return
            pause_s = min(pause_s * 2, most_s)

    def _session(self) -> str | None:
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
            while not self._stopping.is_set():
                # Returns after a tag was read and taken away (True), when stopped (None), or
                # False when the device failed (nfcpy turns an unplugged reader's IOError
                # into False).
                if clf.connect(rdwr=rdwr, terminate=self._stopping.is_set) is False:
                    return "the reader stopped answering"
            return None
        except Exception as error:
            return describe(error)
        finally:
            try:
                clf.close()
            except Exception as error:
                log.info("closing the NFC reader: %s", error)

    def _on_connect(self, tag) -> bool:
        try:
            tap = read_tap(tag)
        except Exception:
            log.exception("reading a tag")
            tap = Tap(bytes(tag.identifier).hex().upper())
        try:
            self._on_tap(tap)
        except Exception:
            log.exception("on_tap callback failed")
        # True: nfcpy waits until the tag is taken away before it polls again, so a tag
        # held on the reader is one tap.
        return True


def describe(error: BaseException) -> str:
    text = getattr(error, "strerror", None) or str(error) or type(error).__name__
    return text.strip()


def sim_tap(path: str, value: str, *, timeout_s: float = 10) -> Tap:
    """Plays a tag on nfcpy's udp frontend at *path* until a reader has read it; returns the
    Tap that reader should have seen.

    *value* is a 16-digit card number (a tag with a stable UID derived from it and an NDEF
    Text record holding the number) or a 4, 7 or 10 byte UID in hex (a blank formatted tag).
    Raises ValueError for anything else, TimeoutError when no reader read the tag in time.
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
    tag = Type2TagEmulator(uid, ndef_memory(uid, records))
    tag.present(path, hold_s=timeout_s, until=tag.read.is_set)
    if not tag.read.is_set():
        raise TimeoutError(f"no reader read the tag on {path} within {timeout_s} s")
    return tap_from_records(uid, records)


def uid_for_card_number(number: str) -> bytes:
    """A stable 7-byte UID for a simulated card. Its first byte, the manufacturer code, is
    STMicroelectronics' (0x02) rather than NXP's, so nfcpy reads it as a plain Type 2 tag."""
    return b"\x02" + hashlib.sha256(f"omnicard-sim:{number}".encode()).digest()[:6]

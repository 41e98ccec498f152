"""An NTAG-like NFC Forum Type 2 tag played on nfcpy's udp frontend.

nfcpy emulates Type 3 tags itself but has no Type 2 emulator, while the shop's cards,
wristbands and shelf tags are Type 2 (NTAG21x). This plays one: nfcpy's own ``listen`` answers
the anticollision with the tag's UID, then READ (0x30) and WRITE (0xA2) are answered from a
memory image through ``clf.exchange``. The reader on the other side runs nfcpy's real sense,
activation, NDEF and presence-check code, so a tap in a test or a demo is a real read.

The memory is the NTAG21x layout: UID and lock bytes in pages 0-2, the capability container
``E1 10 <size> 00`` in page 3, the NDEF message TLV ``03 <len> <message> FE`` from page 4. Any
NDEF records can be put on a tag (the till's card number, the kiosk's product links), and
what a reader writes stays in :attr:`Type2TagEmulator.memory`.
"""

from __future__ import annotations

import errno
import functools
import operator
import threading
import time
from collections.abc import Callable, Iterable

import ndef
import nfc
import nfc.clf

READ, WRITE = 0x30, 0xA2
ACK, NAK = b"\x0a", b"\x00"
PAGE = 4
#: ATQA and SAK of an NTAG21x: a Type 2 tag, no ISO-DEP.
SENS_RES, SEL_RES = bytes.fromhex("4400"), bytes.fromhex("00")
#: (data area size in bytes, total pages) of the NTAG213, 215 and 216, smallest first.
NTAG_SIZES = ((144, 45), (496, 135), (872, 231))


def ndef_tlv(message: bytes) -> bytes:
    """The NDEF message TLV with its terminator, as it sits in a Type 2 tag's data area."""
    length = bytes([len(message)]) if len(message) < 0xFF else b"\xff" + len(message).to_bytes(2)
    return b"\x03" + length + message + b"\xfe"


def tag_memory(uid: bytes, data_area: bytes, *, capability: bytes | None = None) -> bytearray:
    """A memory image of the smallest NTAG21x that holds *data_area* (the bytes from page 4).

    *capability* replaces the capability container (page 3); ``bytes(4)`` makes a tag that
    carries no NDEF at all.
    """
    fitting = [(size, pages) for size, pages in NTAG_SIZES if len(data_area) <= size]
    if not fitting:
        raise ValueError(f"{len(data_area)} bytes do not fit on an NTAG216")
    size, pages = fitting[0]
    memory = bytearray(pages * PAGE)
    memory[0:12] = _uid_pages(uid)
    memory[12:16] = capability if capability is not None else bytes([0xE1, 0x10, size // 8, 0])
    memory[16 : 16 + len(data_area)] = data_area
    return memory


def ndef_memory(uid: bytes, records: Iterable[ndef.Record]) -> bytearray:
    """A formatted tag holding *records* (none: an empty NDEF message, as a blank tag has)."""
    return tag_memory(uid, ndef_tlv(b"".join(ndef.message_encoder(list(records)))))


def _uid_pages(uid: bytes) -> bytes:
    """Pages 0-2 of a Type 2 tag: the UID with its check bytes, then the lock bytes."""
    if len(uid) != 7:  # 4- and 10-byte UIDs exist; their pages 0-2 matter to no reader here
        return uid[:12].ljust(12, b"\x00")
    bcc0 = 0x88 ^ uid[0] ^ uid[1] ^ uid[2]
    bcc1 = functools.reduce(operator.xor, uid[3:7])
    return uid[0:3] + bytes([bcc0]) + uid[3:7] + bytes([bcc1, 0x48, 0x00, 0x00])


def check_uid(uid: bytes) -> bytes:
    """Raises ValueError unless *uid* is a 4, 7 or 10 byte ISO 14443-A UID."""
    if len(uid) not in (4, 7, 10):
        raise ValueError(f"a tag UID has 4, 7 or 10 bytes, not {len(uid)}")
    if uid[0] == 0x88:  # the cascade tag: a reader would read it as the start of a longer UID
        raise ValueError("a tag UID cannot start with 88")
    return bytes(uid)


class Type2TagEmulator:
    """One tag: present it to a reader with :meth:`present`; it is taken away when that returns.

    :attr:`read` is set once a reader has read everything up to the end of the NDEF message
    (up to the capability container, on a tag without NDEF).
    """

    def __init__(self, uid: bytes, memory: bytearray):
        self.uid = check_uid(uid)
        self.memory = memory
        self.read = threading.Event()
        self._content_end = _content_end(memory)
        self._read_to = 0

    @classmethod
    def with_records(cls, uid: bytes, records: Iterable[ndef.Record]) -> Type2TagEmulator:
        return cls(uid, ndef_memory(uid, records))

    def present(self, path: str, *, hold_s: float, until: Callable[[], bool] | None = None) -> None:
        """Holds the tag on the reader at *path* (``udp:HOST:PORT``) for *hold_s* seconds, or
        less once *until* returns true (asked after each command the tag answers).

        Raises ValueError for a path that is not nfcpy's udp frontend, and OSError when the
        port is taken (another tag is already on that reader).
        """
        if not path.startswith("udp:"):
            raise ValueError(f"a tag can only be played on nfcpy's udp frontend, not {path!r}")
        deadline = time.time() + hold_s  # nfcpy's udp driver counts in wall-clock time
        target = nfc.clf.LocalTarget("106A", sens_res=SENS_RES, sel_res=SEL_RES, sdd_res=self.uid)
        clf = nfc.ContactlessFrontend(path)
        try:
            # One long listen window: a reader's poll that lands while no socket is bound is
            # lost and costs the reader a whole poll cycle (about 1 s over udp).
            activated = clf.listen(target, hold_s)
            if activated is None and time.time() < deadline - 0.1:
                raise OSError(errno.EADDRINUSE, f"another tag is being played on {path}")
            while activated is not None:
                # A real tag powers up idle and answers nothing until a reader selects it: a
                # reader still checking for the tag it saw before must not find this one.
                if clf.device.sent_data > 0 and self._answer(clf, activated, deadline, until):
                    return
                if until is not None and until():
                    return
                activated = self._listen_again(clf, target, deadline)
        finally:
            # Closing the socket is taking the tag away: the reader's next command times out.
            clf.close()

    def _answer(self, clf, activated, deadline: float, until) -> bool:
        """Answers the selecting reader's commands; False when it switched its field off."""
        command = activated.tt2_cmd
        while True:
            response = self._respond(command)
            if until is not None and until():
                clf.exchange(response, 0)  # send the last answer, wait for nothing
                return True
            try:
                command = clf.exchange(response, max(0.01, deadline - time.time()))
            except nfc.clf.TimeoutError:
                return True  # held until the deadline
            except nfc.clf.CommunicationError:
                # The reader switched its field off to sense again (nfcpy does so while it
                # identifies an NXP tag, and after a NAK).
                return False

    def _listen_again(self, clf, target, deadline: float):
        """Listens on the bound socket. ``clf.listen`` would rebind it and drop the reader's
        SENS_REQ already waiting in it; nfcpy 1.0.4 (pinned) has no public call for this, and
        its udp driver's ``_listen_tta`` is exactly that loop."""
        if time.time() >= deadline:
            return None
        clf.target = clf.device._listen_tta(target, deadline)
        return clf.target

    def _respond(self, command: bytearray) -> bytes | None:
        if command[0] == READ and len(command) == 2:
            return self._read(command[1])
        if command[0] == WRITE and len(command) == 6:
            return self._write(command[1], bytes(command[2:6]))
        return None  # a Type 2 tag goes mute on a command it does not know

    def _read(self, page: int) -> bytes:
        pages = len(self.memory) // PAGE
        if page >= pages:
            return NAK
        if page == 0:
            self._read_to = 0  # a reader starts (again) from the top
        if page * PAGE <= self._read_to:
            self._read_to = max(self._read_to, (page + 4) * PAGE)
        if self._read_to >= self._content_end:
            self.read.set()
        # An NTAG rolls over to page 0 when the four pages run past its end.
        return b"".join(
            self.memory[(p % pages) * PAGE : (p % pages + 1) * PAGE] for p in range(page, page + 4)
        )

    def _write(self, page: int, data: bytes) -> bytes:
        if page < 3 or page >= len(self.memory) // PAGE:
            return NAK
        start = page * PAGE
        if page == 3:  # the capability container is one-time programmable: bits only set
            current = self.memory[start : start + PAGE]
            data = bytes(a | b for a, b in zip(current, data, strict=True))
        self.memory[start : start + PAGE] = data
        return ACK


def _content_end(memory: bytearray) -> int:
    """Where a reader that read the whole NDEF message has read to."""
    if memory[12] != 0xE1 or memory[16] != 0x03:
        return 16
    length = memory[17]
    header = 2
    if length == 0xFF:
        length, header = int.from_bytes(memory[18:20]), 4
    return min(16 + header + length, len(memory))

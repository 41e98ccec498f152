"""The till's barcode scanner on a serial port (pyserial).

A scanner sends each code as a line of printable ASCII ended by ``\\r``, ``\\n`` or ``\\r\\n``
(depending on how it was set up), in as many reads as the port happens to deliver. The
pure :class:`CodeAssembler` turns that byte stream into whole codes; :class:`Scanner` owns
the port in its own thread and keeps reopening it while the scanner is unplugged, so a
cashier who pulls the cable and plugs it back in just carries on scanning.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
import tty
from collections.abc import Callable, Iterable
from typing import TextIO

import serial

log = logging.getLogger(__name__)

#: Longer than any code the till knows (EAN-13, 16-digit card numbers, 12-digit pay codes),
#: short enough that a stuck scanner or line noise cannot grow a line without bound.
MAX_CODE_LENGTH = 64

_PRINTABLE = range(0x20, 0x7F)


class CodeAssembler:
    """Bytes from the scanner in, complete codes out. Pure: no I/O, no clock.

    A line holding any byte outside printable ASCII is dropped whole (with its reason): a
    barcode with noise taken out of it would be a different, wrong code. So is a line longer
    than ``max_length``, up to its terminator. Empty lines are ignored, which is also what
    makes ``\\r\\n`` one terminator, even when the ``\\n`` comes in the next read.
    """

    def __init__(
        self,
        *,
        max_length: int = MAX_CODE_LENGTH,
        on_reject: Callable[[str], None] | None = None,
    ):
        self.max_length = max_length
        self.on_reject = on_reject
        self._line = bytearray()
        self._bad_byte: int | None = None
        self._too_long = False

    def reset(self) -> None:
        """Forget a partial line (the scanner was unplugged halfway through a code)."""
        self._line.clear()
        self._bad_byte = None
        self._too_long = False

    @property
    def pending(self) -> bytes:
        """The start of a code read so far, waiting for its terminator."""
        return bytes(self._line)

    def feed(self, data: bytes) -> list[str]:
        """Take the next bytes read from the port; answer the codes they complete, in order."""
        codes: list[str] = []
        for byte in data:
            if byte in (0x0D, 0x0A):
                code = self._end_line()
                if code:
                    codes.append(code)
            elif self._too_long:
                continue
            elif len(self._line) >= self.max_length:
                self._too_long = True
            else:
                if byte not in _PRINTABLE and self._bad_byte is None:
                    self._bad_byte = byte
                self._line.append(byte)
        return codes

    def _end_line(self) -> str | None:
        line, bad, too_long = bytes(self._line), self._bad_byte, self._too_long
        self._line.clear()
        self._bad_byte = None
        self._too_long = False
        if too_long:
            self._reject(f"code longer than {self.max_length} characters, dropped")
            return None
        if bad is not None:
            self._reject(f"non-printable byte 0x{bad:02X} in scanned code {line!r}, dropped")
            return None
        return line.decode("ascii").strip() or None

    def _reject(self, reason: str) -> None:
        log.warning("scanner: %s", reason)
        if self.on_reject is not None:
            self.on_reject(reason)


class Scanner:
    """A barcode scanner on a serial device path or pyserial URL, read in its own thread.

    ``on_code`` runs in the scanner's thread: keep it short (hand the code to a queue or the
    UI's thread). ``status`` says "ready", or why there is no scanner right now; ``on_status``
    is told of each change. The port is read with a short timeout, so :meth:`stop` returns
    promptly; when the port fails (unplugged), it is closed and reopened with a growing delay
    until the device is back.
    """

    def __init__(
        self,
        port: str,
        on_code: Callable[[str], None],
        baudrate: int = 9600,
        *,
        on_reject: Callable[[str], None] | None = None,
        on_status: Callable[[str], None] | None = None,
        read_timeout_s: float = 0.2,
        retry_s: tuple[float, float] = (0.1, 2.0),
    ):
        self.port = port
        self.baudrate = baudrate
        self.on_code = on_code
        self.on_status = on_status
        self.read_timeout_s = read_timeout_s
        self.first_retry_s, self.max_retry_s = retry_s
        self.assembler = CodeAssembler(on_reject=on_reject)
        self.status = "stopped"
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, name="scanner", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 2.0) -> None:
        """Stop reading and close the port; returns within about one read timeout."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None
        self._set_status("stopped")

    def _set_status(self, status: str) -> None:
        if status == self.status:
            return
        self.status = status
        if self.on_status is not None:
            try:
                self.on_status(status)
            except Exception:
                log.exception("scanner: the status callback failed")

    def _run(self) -> None:
        delay_s = self.first_retry_s
        while not self._stopping.is_set():
            try:
                port = serial.serial_for_url(
                    self.port, baudrate=self.baudrate, timeout=self.read_timeout_s
                )
            except (serial.SerialException, OSError, ValueError) as exc:
                self._set_status(f"no scanner: {_why(exc)}")
                self._stopping.wait(delay_s)
                delay_s = min(delay_s * 2, self.max_retry_s)
                continue
            delay_s = self.first_retry_s
            self.assembler.reset()
            self._set_status("ready")
            try:
                self._read(port)
            except (serial.SerialException, OSError) as exc:
                self._set_status(f"scanner unplugged: {_why(exc)}")
            finally:
                # The device may already be gone; there is nothing left to release then.
                with contextlib.suppress(serial.SerialException, OSError):
                    port.close()

    def _read(self, port: serial.SerialBase) -> None:
        while not self._stopping.is_set():
            data = port.read(max(1, port.in_waiting))
            for code in self.assembler.feed(data):
                try:
                    self.on_code(code)
                except Exception:
                    log.exception("scanner: handling code %r failed", code)


def _why(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def sim_scanner(
    link: str = "",
    *,
    lines: Iterable[str] | None = None,
    out: TextIO | None = None,
    terminator: bytes = b"\r\n",
) -> None:
    """A scanner a person can type into: a pty pair whose device end the till opens.

    Prints the device path (and makes ``link`` a symlink to it, so the till's config can name
    a stable path), then sends each line typed on stdin (or given in ``lines``) as a scanned
    code. Ends at end of input, removing the link.
    """
    lines = sys.stdin if lines is None else lines
    out = sys.stdout if out is None else out
    master, slave = os.openpty()
    tty.setraw(master)
    tty.setraw(slave)
    device = os.ttyname(slave)
    try:
        if link:
            _replace_symlink(device, link)
        print(f"scanner: {link or device}" + (f" -> {device}" if link else ""), file=out)
        print("type a code and press Enter to scan it; Ctrl-D ends", file=out, flush=True)
        for line in lines:
            code = line.strip()
            if code:
                os.write(master, code.encode("ascii", "replace") + terminator)
    finally:
        if link and os.path.islink(link) and os.readlink(link) == device:
            os.unlink(link)
        os.close(master)
        os.close(slave)


def _replace_symlink(target: str, link: str) -> None:
    """Point ``link`` at ``target`` atomically, as udev does when a device comes back."""
    tmp = f"{link}.{os.getpid()}.tmp"
    os.symlink(target, tmp)
    os.replace(tmp, link)

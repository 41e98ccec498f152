"""The barcode scanner: the pure line assembler, then pyserial reading a real pty."""

from __future__ import annotations

import io
import os
import queue
import socket
import threading
import time
import tty
from pathlib import Path

import pytest

from pos_client.hardware.scanner import CodeAssembler, Scanner, sim_scanner

WAIT_S = 5


def test_each_terminator_ends_a_code():
    assembler = CodeAssembler()
    assert assembler.feed(b"4006381333931\r") == ["4006381333931"]
    assert assembler.feed(b"012345678905\n") == ["012345678905"]
    assert assembler.feed(b"6000000000000001\r\n") == ["6000000000000001"]
    assert assembler.feed(b"A\rB\nC\r\nD\r") == ["A", "B", "C", "D"]


def test_a_crlf_split_between_reads_is_one_terminator():
    assembler = CodeAssembler()
    assert assembler.feed(b"4006381333931\r") == ["4006381333931"]
    assert assembler.feed(b"\n012345678905\r") == ["012345678905"]
    assert assembler.feed(b"\n") == []


def test_a_code_split_across_reads_is_reassembled():
    assembler = CodeAssembler()
    assert assembler.feed(b"40063") == []
    assert assembler.feed(b"8133") == []
    assert assembler.feed(b"3931\r\n6000") == ["4006381333931"]
    assert assembler.feed(b"000000000001\n") == ["6000000000000001"]


def test_empty_lines_are_ignored_and_a_lone_lf_after_cr_is_not_a_code():
    assembler = CodeAssembler()
    assert assembler.feed(b"\r\n\n\r\r\n  \r123\n\n") == ["123"]


def test_a_line_with_garbage_is_dropped_whole_with_its_reason():
    reasons: list[str] = []
    assembler = CodeAssembler(on_reject=reasons.append)
    assert assembler.feed(b"4006\x00381333931\r\n012345678905\r\n") == ["012345678905"]
    assert len(reasons) == 1
    assert "0x00" in reasons[0]
    assert assembler.feed(b"\xff\xfe\r\n") == []
    assert "0xFF" in reasons[1]


def test_an_over_long_line_is_dropped_up_to_its_terminator():
    reasons: list[str] = []
    assembler = CodeAssembler(max_length=16, on_reject=reasons.append)
    assert assembler.feed(b"1" * 16 + b"\r") == ["1" * 16]
    assert assembler.feed(b"2" * 10) == []
    assert assembler.feed(b"2" * 30) == []
    assert assembler.feed(b"\r\n123\r\n") == ["123"]
    assert reasons == ["code longer than 16 characters, dropped"]


def wait_until(condition) -> None:
    """For what the scanner offers no event for: a bounded poll."""
    deadline = time.monotonic() + WAIT_S
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


class Pty:
    """A scanner at the far end of a real tty pair, reached through a stable symlink the way
    /dev/serial/by-id/ names a USB scanner."""

    def __init__(self, link: Path):
        self.link = link
        self.master: int | None = None
        self.slave: int | None = None

    def plug(self) -> None:
        self.master, self.slave = os.openpty()
        tty.setraw(self.master)
        tmp = self.link.with_suffix(".tmp")
        os.symlink(os.ttyname(self.slave), tmp)
        os.replace(tmp, self.link)

    def unplug(self) -> None:
        for fd in (self.master, self.slave):
            if fd is not None:
                os.close(fd)
        self.master = self.slave = None

    def send(self, data: bytes) -> None:
        os.write(self.master, data)


@pytest.fixture
def pty(tmp_path):
    device = Pty(tmp_path / "scanner")
    device.plug()
    yield device
    device.unplug()


class Till:
    """What the till hands the scanner: queues for codes and status changes."""

    def __init__(self):
        self.codes: queue.Queue[str] = queue.Queue()
        self.statuses: queue.Queue[str] = queue.Queue()

    def next_code(self) -> str:
        return self.codes.get(timeout=WAIT_S)

    def wait_status(self, prefix: str) -> str:
        while True:
            status = self.statuses.get(timeout=WAIT_S)
            if status.startswith(prefix):
                return status


@pytest.fixture
def till():
    return Till()


@pytest.fixture
def scanner(pty, till):
    scanner = Scanner(
        str(pty.link), till.codes.put, on_status=till.statuses.put, retry_s=(0.05, 0.2)
    )
    scanner.start()
    till.wait_status("ready")  # opening the port flushes it: only send once it is open
    yield scanner
    scanner.stop()


def test_codes_arrive_through_a_pty_with_each_terminator(pty, till, scanner):
    pty.send(b"4006381333931\r012345678905\n6000000000000001\r\n")
    assert [till.next_code() for _ in range(3)] == [
        "4006381333931",
        "012345678905",
        "6000000000000001",
    ]


def test_split_writes_and_garbage_through_a_pty(pty, till, scanner):
    pty.send(b"40063")
    pty.send(b"81333931\r")
    pty.send(b"\n\x1b[A\x07junk\r\n0123456")
    pty.send(b"78905\r\n")
    assert till.next_code() == "4006381333931"
    assert till.next_code() == "012345678905"
    assert till.codes.empty()


def test_the_scanner_survives_being_unplugged_and_plugged_back(pty, till, scanner):
    pty.send(b"4006381333931\r\n")
    assert till.next_code() == "4006381333931"

    pty.send(b"01234")  # unplugged halfway through a code
    wait_until(lambda: scanner.assembler.pending == b"01234")
    pty.unplug()
    assert till.wait_status("scanner unplugged")
    assert till.wait_status("no scanner")  # it keeps trying while the device is gone

    pty.plug()
    till.wait_status("ready")
    pty.send(b"5678905\r\n6000000000000001\r")
    # The half code from before the unplug is not glued onto the first code after it.
    assert till.next_code() == "5678905"
    assert till.next_code() == "6000000000000001"
    assert scanner.status == "ready"


def test_stop_is_prompt_and_closes_the_port(pty, till, scanner):
    scanner.stop()
    assert scanner.status == "stopped"
    pty.send(b"4006381333931\r\n")
    with pytest.raises(queue.Empty):
        till.codes.get(timeout=0.3)


def test_a_missing_device_is_reported_and_retried(tmp_path, till):
    pty = Pty(tmp_path / "later")
    scanner = Scanner(
        str(pty.link), till.codes.put, on_status=till.statuses.put, retry_s=(0.05, 0.1)
    )
    scanner.start()
    try:
        assert "later" in till.wait_status("no scanner")
        pty.plug()
        till.wait_status("ready")
        pty.send(b"012345678905\r")
        assert till.next_code() == "012345678905"
    finally:
        scanner.stop()
        pty.unplug()


def test_sim_scanner_sends_typed_lines_to_the_till(tmp_path, till):
    link = tmp_path / "sim-scanner"
    typed: queue.Queue[str | None] = queue.Queue()
    out = io.StringIO()
    printed = threading.Event()

    class Stdin:
        def __iter__(self):
            printed.set()
            while (line := typed.get(timeout=WAIT_S)) is not None:
                yield line

    sim = threading.Thread(
        target=sim_scanner, args=(str(link),), kwargs={"lines": Stdin(), "out": out}
    )
    sim.start()
    try:
        assert printed.wait(WAIT_S)
        assert str(link) in out.getvalue()
        scanner = Scanner(str(link), till.codes.put, on_status=till.statuses.put)
        scanner.start()
        try:
            till.wait_status("ready")
            typed.put("4006381333931\n")
            typed.put("\n")
            typed.put("6000000000000001\n")
            assert till.next_code() == "4006381333931"
            assert till.next_code() == "6000000000000001"
        finally:
            scanner.stop()
    finally:
        typed.put(None)
        sim.join(WAIT_S)
    assert not link.exists()


def test_a_network_scanner_url_survives_its_connection_dropping(till):
    """``socket://`` is a pyserial URL too (a scanner behind a serial-to-Ethernet box)."""
    server = socket.create_server(("127.0.0.1", 0))
    scanner = Scanner(
        f"socket://127.0.0.1:{server.getsockname()[1]}",
        till.codes.put,
        on_status=till.statuses.put,
        retry_s=(0.05, 0.2),
    )
    scanner.start()
    try:
        conn, _ = server.accept()
        till.wait_status("ready")
        conn.sendall(b"4006381333931\r\n")
        assert till.next_code() == "4006381333931"
        conn.close()  # the box loses power
        till.wait_status("scanner unplugged")
        conn, _ = server.accept()  # ... and comes back
        with conn:
            till.wait_status("ready")
            conn.sendall(b"012345678905\r")
            assert till.next_code() == "012345678905"
    finally:
        scanner.stop()
        server.close()

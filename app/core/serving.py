"""What the production server answers by itself: a request gunicorn refuses before the app
sees it (bytes a header may not hold, a request line or headers over its limits) gets the API's
one error shape, not gunicorn's HTML page, so clients parse every error the same way."""

from __future__ import annotations

import json
import time

from gevent import get_hub
from gevent.socket import wait
from gunicorn import util
from psycopg import errors

#: Stable codes for the statuses gunicorn answers by itself.
CODES = {
    400: "bad_request",
    403: "forbidden",
    414: "uri_too_long",
    417: "expectation_failed",
    431: "request_header_fields_too_large",
    500: "internal_error",
    501: "not_implemented",
}


def write_error(sock, status_int: int, reason: str, mesg: str) -> None:
    """gunicorn's ``util.write_error``, answering in JSON."""
    if status_int >= 500 and not mesg:
        mesg = "Something went wrong on our side."
    error = {"code": CODES.get(status_int, "http_error"), "details": {}, "message": mesg or reason}
    body = json.dumps({"error": error}, separators=(",", ":")).encode()
    head = (
        f"HTTP/1.1 {status_int} {reason}\r\nConnection: close\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    util.write_nonblock(sock, head.encode("latin-1") + body)


def answer_refusals_in_json() -> None:
    """Make this worker's own refusals (``Worker.handle_error``) answer in JSON."""
    util.write_error = write_error


class _WaitedTooLong(Exception):
    pass


def wait_in_gevent_loop(gen, fileno: int, interval: float = 0.0, timeout: float | None = None):
    """psycopg's wait function for a gevent worker: each wait for the connection's socket is
    one watcher in gevent's own loop. psycopg's choice under gevent, its ``wait_poll`` on
    gevent's emulation of ``select.poll``, made a poll object, and registered and started its
    watchers, for each of the several waits of every statement.

    Parameters as psycopg's ``waiting.wait``; ``interval`` (a wake-up to look for Ctrl-C) has
    nothing to do in a worker. The socket is said to be ready for what was waited for:
    libpq's reads and writes never block, so a wait for both that only one ended costs at
    most a read that finds nothing."""
    deadline = None if timeout is None else time.monotonic() + timeout
    try:
        waiting_for = next(gen)
        loop = get_hub().loop
        while True:
            # libev's READ (1) and WRITE (2) are psycopg's Wait.R and Wait.W.
            watcher = loop.io(fileno, waiting_for)
            try:
                if deadline is None:
                    wait(watcher)
                else:
                    wait(watcher, max(0.0, deadline - time.monotonic()), _WaitedTooLong)
            except _WaitedTooLong:
                raise errors._WaitTimeout("wait timeout expired") from None
            finally:
                watcher.close()
            waiting_for = gen.send(waiting_for)
    except StopIteration as done:
        return done.value


def use_gevent_waits() -> None:
    """Make this (gevent) worker's psycopg connections wait in gevent's loop."""
    import psycopg.waiting

    psycopg.waiting.wait = wait_in_gevent_loop

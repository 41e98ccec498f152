"""What the production server answers by itself: a request gunicorn refuses before the app
sees it (bytes a header may not hold, a request line or headers over its limits) gets the API's
one error shape, not gunicorn's HTML page, so clients parse every error the same way."""

from __future__ import annotations

import json

from gunicorn import util

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

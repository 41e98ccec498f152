"""What one request may be: a body of at most ``MAX_CONTENT_LENGTH`` bytes (413), and JSON
nested at most ``MAX_JSON_DEPTH`` deep with numbers of at most ``MAX_JSON_NUMBER_DIGITS``
digits (400), all refused before anything parses the body.

Python's JSON parser recurses once per level of nesting: a body of 5,000 opening brackets
(10 KB) would otherwise exhaust the interpreter's stack on every JSON endpoint, login
included. And it refuses to read an integer of more than 4,300 digits with a ValueError that
is not a JSON error. Omnicard's own requests nest four levels at most, and its numbers are ids
and amounts of at most 19 digits.
"""

from __future__ import annotations

import re
from array import array
from itertools import accumulate

from flask import Flask, current_app, request
from werkzeug.exceptions import RequestEntityTooLarge

from app.core.errors import DomainError

#: The deepest a request's JSON may nest (``{"a": [1]}`` is two).
MAX_JSON_DEPTH = 32
#: The most digits in a row a number in a request's JSON may have.
MAX_JSON_NUMBER_DIGITS = 100

#: A JSON string, escapes included (brackets inside one do not nest anything).
_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_A_BRACKET = re.compile(rb"[^\[\]{}]+")
_LONG_NUMBER = re.compile(rb"[0-9]{%d}" % (MAX_JSON_NUMBER_DIGITS + 1))
#: Opening brackets count +1 and closing ones -1, as signed bytes.
_STEPS = bytes.maketrans(b"[{]}", b"\x01\x01\xff\xff")


class JsonTooDeep(DomainError):
    code = "json_too_deep"
    http_status = 400
    message = f"The request's JSON nests deeper than {MAX_JSON_DEPTH} levels."


class JsonNumberTooLong(DomainError):
    code = "json_number_too_long"
    http_status = 400
    message = f"A number in the request's JSON has more than {MAX_JSON_NUMBER_DIGITS} digits."


class PayloadTooLarge(DomainError):
    code = "payload_too_large"
    http_status = 413
    message = "The request body is too large."


def json_depth(body: bytes) -> int:
    """How deep ``body`` nests, counting its brackets outside strings, without parsing it
    (linear, no recursion). For malformed JSON, the most brackets open at any point."""
    return _depth(_JSON_STRING.sub(b"", body))


def _depth(outside_strings: bytes) -> int:
    steps = array("b", _NOT_A_BRACKET.sub(b"", outside_strings).translate(_STEPS))
    return max(accumulate(steps), default=0)


def check_request_body() -> None:
    """Raises PayloadTooLarge, JsonTooDeep, JsonNumberTooLong."""
    most = current_app.config["MAX_CONTENT_LENGTH"]
    if request.content_length is not None and most is not None and request.content_length > most:
        raise PayloadTooLarge(max_bytes=most)
    if not request.is_json:
        return  # no one parses it as JSON (webargs and Flask go by the content type too)
    try:
        body = request.get_data(cache=True)
    except RequestEntityTooLarge:
        raise PayloadTooLarge(max_bytes=most) from None
    if most is not None and request.content_length is None and len(body) >= most:
        # A body streamed without a length (chunked) is read up to the limit and silently
        # cut there by Werkzeug, which would leave half a request to parse.
        raise PayloadTooLarge(max_bytes=most)
    outside_strings = _JSON_STRING.sub(b"", body)
    if _depth(outside_strings) > MAX_JSON_DEPTH:
        raise JsonTooDeep(max_depth=MAX_JSON_DEPTH)
    if _LONG_NUMBER.search(outside_strings):
        raise JsonNumberTooLong(max_digits=MAX_JSON_NUMBER_DIGITS)


def init_app(app: Flask) -> None:
    app.before_request(check_request_body)

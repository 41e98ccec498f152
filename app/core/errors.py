"""Domain errors and the one JSON error shape every endpoint answers with.

``{"error": {"code": "insufficient_funds", "message": "...", "details": {...}}}`` with an HTTP
status. Codes are stable strings that clients switch on; messages are for people.
"""

from __future__ import annotations

import logging
from typing import Any

import marshmallow as ma
from flask import Flask, jsonify
from werkzeug.exceptions import HTTPException

log = logging.getLogger(__name__)


class DomainError(Exception):
    """A rule of the business said no. Subclasses set ``code`` and ``http_status``."""

    code = "domain_error"
    http_status = 400
    message = "The request cannot be carried out."

    def __init__(self, message: str | None = None, **details: Any) -> None:
        super().__init__(message or self.message)
        self.message = message or self.message
        self.details = details


class NotFound(DomainError):
    code = "not_found"
    http_status = 404
    message = "No such resource."


class Conflict(DomainError):
    code = "conflict"
    http_status = 409


class ValidationFailed(DomainError):
    code = "validation_error"
    http_status = 422
    message = "The request has invalid fields."


class MalformedJson(DomainError):
    """A body that is not JSON at all; raised for us by webargs, answered in our shape."""

    code = "malformed_json"
    http_status = 400
    message = "The request body is not valid JSON."


def error_body(code: str, message: str, details: dict | None = None) -> dict:
    return {"error": {"code": code, "message": message, "details": details or {}}}


def _http_code(exc: HTTPException) -> tuple[str, str, dict]:
    """Stable codes for what Flask and webargs raise before a view runs."""
    data = getattr(exc, "data", None) or {}
    messages = data.get("messages")
    if exc.code == 400 and messages == {"json": ["Invalid JSON body."]}:
        return MalformedJson.code, MalformedJson.message, {}
    if exc.code == 422 and messages is not None:
        return "validation_error", "The request has invalid fields.", {"fields": messages}
    codes = {
        400: "bad_request",
        401: "unauthenticated",
        403: "forbidden",
        404: "not_found",
        405: "method_not_allowed",
        409: "conflict",
        413: "payload_too_large",
        415: "unsupported_media_type",
        429: "rate_limited",
    }
    code = codes.get(exc.code or 500, "http_error")
    return code, data.get("message") or exc.description or exc.name, {}


def handle_http_exception(exc: HTTPException):
    if (exc.code or 500) >= 500:
        return handle_unexpected(exc)
    code, message, details = _http_code(exc)
    response = jsonify(error_body(code, message, details))
    response.status_code = exc.code
    headers = (getattr(exc, "data", None) or {}).get("headers") or {}
    response.headers.update(headers)
    return response


def handle_domain_error(exc: DomainError):
    response = jsonify(error_body(exc.code, exc.message, exc.details))
    response.status_code = exc.http_status
    if "retry_after_s" in exc.details:
        response.headers["Retry-After"] = str(exc.details["retry_after_s"])
    return response


def handle_unexpected(exc: BaseException):
    log.exception("unexpected error", exc_info=exc)
    response = jsonify(error_body("internal_error", "Something went wrong on our side."))
    response.status_code = 500
    return response


def init_app(app: Flask) -> None:
    app.register_error_handler(DomainError, handle_domain_error)
    app.register_error_handler(HTTPException, handle_http_exception)
    if not app.testing:
        app.register_error_handler(Exception, handle_unexpected)


class ErrorDetailSchema(ma.Schema):
    code = ma.fields.String(required=True, metadata={"description": "Stable error code."})
    message = ma.fields.String(required=True)
    details = ma.fields.Dict()


class ErrorSchema(ma.Schema):
    """The one error shape of the API."""

    error = ma.fields.Nested(ErrorDetailSchema, required=True)

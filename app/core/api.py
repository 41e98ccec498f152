"""The REST API: flask-smorest with Omnicard's error shape and offline interactive docs."""

from __future__ import annotations

from http import HTTPStatus
from pathlib import Path

import flask_smorest
import swagger_ui_bundle
from flask import Flask, send_from_directory
from flask_smorest.utils import prepare_response
from werkzeug.routing import IntegerConverter

from app.core import errors
from app.core.errors import DomainError, ErrorSchema
from app.core.limits import MAX_JSON_DEPTH, MAX_JSON_NUMBER_DIGITS
from app.core.schemas import MAX_ID

STATIC_DIR = Path(__file__).parent / "static"
#: What the shared error answers say, for the statuses every endpoint can give.
SHARED_ERRORS = {
    400: "Bad Request: `malformed_json` (the body is not JSON), `json_too_deep` (nested more "
    f"than {MAX_JSON_DEPTH} levels), `json_number_too_long` (a number of more than "
    f"{MAX_JSON_NUMBER_DIGITS} digits), `bad_request`",
    413: "Content Too Large: `payload_too_large` (over `OMNICARD_MAX_REQUEST_BYTES`, 256 KiB "
    "by default)",
    422: "Unprocessable Entity: `validation_error`; `details.fields` names each bad field",
    503: "Service Unavailable: `database_unavailable` (nothing was changed: retry), "
    "`outcome_unknown` (the database went away while saving: retry with the same "
    "Idempotency-Key, or look before doing it again)",
}


class Api(flask_smorest.Api):
    ERROR_SCHEMA = ErrorSchema

    def _register_error_handlers(self):
        # Our handlers (app.core.errors) answer every error in the one shape.
        pass

    def _register_responses(self):
        # flask-smorest's shared responses, with our stable codes in their descriptions.
        for status in HTTPStatus:
            response = {"description": SHARED_ERRORS.get(status, status.phrase)}
            if not (100 <= status < 200) and status not in (204, 304):
                response["schema"] = self.ERROR_SCHEMA
            prepare_response(response, self.spec, self.DEFAULT_RESPONSE_CONTENT_TYPE)
            self.spec.components.response(status.name, response, lazy=True)
        shared = "; ".join(f"{status} {SHARED_ERRORS[status]}" for status in (400, 413, 503))
        response = {
            "description": f"Any other error, in the same shape. Any endpoint may answer {shared}",
            "schema": ErrorSchema,
        }
        prepare_response(response, self.spec, self.DEFAULT_RESPONSE_CONTENT_TYPE)
        self.spec.components.response("DEFAULT_ERROR", response, lazy=True)


class Blueprint(flask_smorest.Blueprint):
    def arguments(self, schema, *, location="json", **kwargs):
        """flask-smorest's ``arguments``; a JSON body documents its ``malformed_json`` too.

        A schema class is made into its one instance here, once: given the class, webargs
        would make a new instance for every request (and that one its nested schemas)."""
        if isinstance(schema, type):
            schema = schema()
        parse = super().arguments(schema, location=location, **kwargs)
        if location != "json":
            return parse
        return lambda func: self.errors(errors.MalformedJson)(parse(func))

    def errors(self, *error_classes: type[DomainError]):
        """Document the domain errors a view can answer, one entry per HTTP status listing
        every code; several ``errors`` (and ``requires``, ``idempotent``) add up."""

        def decorator(func):
            known = list(getattr(func, "_domain_errors", ()))
            known += [cls for cls in error_classes if cls not in known]
            # Any body can fail validation: a 422 always lists that code first.
            by_status: dict[int, list[str]] = {422: ["`validation_error`"]}
            if not any(cls.http_status == 422 for cls in known):
                del by_status[422]
            for cls in known:
                if cls.code == "validation_error":
                    continue
                by_status.setdefault(cls.http_status, []).append(f"`{cls.code}`")
            for status, codes in sorted(by_status.items()):
                phrase = HTTPStatus(status).phrase
                func = self.alt_response(
                    status, schema=ErrorSchema, description=f"{phrase}: {', '.join(codes)}"
                )(func)
                documented = func._apidoc["response"]["responses"]
                documented[status] = documented[status][-1:]  # the merged entry only
            func._domain_errors = known
            return func

        return decorator

    def idempotent(self, *, resumable: bool = False):
        """Require an ``Idempotency-Key`` (see ``app.core.idempotency``), documented."""
        from app.auth.principal import current_principal
        from app.core.idempotency import (
            KEY_PATTERN,
            MAX_KEY_LENGTH,
            IdempotencyKeyInvalid,
            IdempotencyKeyMissing,
            IdempotencyKeyReused,
            RequestInProgress,
            idempotent,
        )

        header = {
            "in": "header",
            "name": "Idempotency-Key",
            "required": True,
            "schema": {
                "type": "string",
                "minLength": 1,
                "maxLength": MAX_KEY_LENGTH,
                "pattern": KEY_PATTERN,
            },
            "description": "Unique per intended change, 1-255 visible ASCII characters (`!` "
            "to `~`: no spaces, no control characters; a UUID will do): a retry with the same "
            "key and body returns the first answer, byte for byte, and changes nothing more.",
        }

        def decorator(func):
            func = self.errors(
                IdempotencyKeyMissing,
                IdempotencyKeyInvalid,
                IdempotencyKeyReused,
                RequestInProgress,
            )(func)
            func = self.doc(parameters=[header])(func)
            return idempotent(lambda: current_principal().key, resumable=resumable)(func)

        return decorator

    def requires(self, *kinds: str, role: str | None = None, device_kind: str | None = None):
        """Who may call the view (see ``app.auth.principal.requires``), documented in the
        OpenAPI document with the bearer scheme and the 401/403 answers."""
        from app.auth.errors import Forbidden, Unauthenticated
        from app.auth.principal import requires

        def decorator(func):
            func = self.errors(Unauthenticated, Forbidden)(func)
            func = self.doc(security=[{"bearerAuth": []}])(func)
            return requires(*kinds, role=role, device_kind=device_kind)(func)

        return decorator


class IdConverter(IntegerConverter):
    """``<id:card_id>``: a 64-bit id in a path; anything else is simply not found."""

    def __init__(self, url_map, *args, **kwargs):
        super().__init__(url_map, min=1, max=MAX_ID)


def init_app(app: Flask) -> Api:
    app.config.setdefault("API_TITLE", "Omnicard API")
    app.config.setdefault("API_VERSION", "v1")
    app.config.setdefault("OPENAPI_VERSION", "3.0.3")
    app.config.setdefault("OPENAPI_URL_PREFIX", "/")
    app.config.setdefault("OPENAPI_JSON_PATH", "openapi.json")
    app.config.setdefault("OPENAPI_SWAGGER_UI_PATH", "docs")
    app.config.setdefault("OPENAPI_SWAGGER_UI_URL", "/docs/static/")
    app.config.setdefault(
        "API_SPEC_OPTIONS",
        {
            "info": {
                "description": "One ledger, every channel: card balances, Stars, sales and "
                "top-ups for the app, the website, the POS and the kiosks. Errors always "
                'have the shape `{"error": {"code", "message", "details"}}`.'
            }
        },
    )
    app.url_map.converters["id"] = IdConverter
    api = Api(app)
    api.register_converter(IdConverter, lambda _: {"type": "integer", "format": "int64"})
    api.spec.components.security_scheme(
        "bearerAuth",
        {
            "type": "http",
            "scheme": "bearer",
            "description": "A login token, a device secret, or a cashier session token.",
        },
    )

    @app.route("/docs/static/<path:filename>")
    def swagger_ui_static(filename: str):
        return send_from_directory(swagger_ui_bundle.swagger_ui_path, filename)

    @app.route("/docs/start.js")
    def docs_start_script():
        """Starts Swagger UI (app/templates/swagger_ui.html has no inline script)."""
        return send_from_directory(STATIC_DIR, "docs-start.js")

    errors.init_app(app)
    app.extensions["omnicard.api"] = api
    return api

"""The REST API: flask-smorest with Omnicard's error shape and offline interactive docs."""

from __future__ import annotations

from http import HTTPStatus

import flask_smorest
import swagger_ui_bundle
from flask import Flask, send_from_directory

from app.core import errors
from app.core.errors import DomainError, ErrorSchema


class Api(flask_smorest.Api):
    ERROR_SCHEMA = ErrorSchema

    def _register_error_handlers(self):
        # Our handlers (app.core.errors) answer every error in the one shape.
        pass


class Blueprint(flask_smorest.Blueprint):
    def errors(self, *error_classes: type[DomainError]):
        """Document the domain errors a view can answer, grouped by HTTP status."""
        by_status: dict[int, list[type[DomainError]]] = {}
        for cls in error_classes:
            by_status.setdefault(cls.http_status, []).append(cls)

        def decorator(func):
            for status, classes in sorted(by_status.items()):
                codes = ", ".join(f"`{c.code}`" for c in classes)
                phrase = HTTPStatus(status).phrase
                func = self.alt_response(
                    status, schema=ErrorSchema, description=f"{phrase}: {codes}"
                )(func)
            return func

        return decorator


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
    api = Api(app)

    @app.route("/docs/static/<path:filename>")
    def swagger_ui_static(filename: str):
        return send_from_directory(swagger_ui_bundle.swagger_ui_path, filename)

    errors.init_app(app)
    app.extensions["omnicard.api"] = api
    return api

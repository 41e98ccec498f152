"""The headers every answer carries: what a browser may do with it (security headers), and
which other web origins may read it (CORS).

- API answers (``/v1/...``) are per caller and some carry tokens: ``Cache-Control:
  no-store`` keeps them out of every cache, unless a view says otherwise (the event stream
  keeps ``no-cache``). Nothing Omnicard serves is to be sniffed as another type or framed.
- Pages (the interactive docs at ``/docs``, and the shopper pages to come) get a
  Content-Security-Policy that allows only the project's own scripts, styles, images and
  requests; JSON gets one that allows nothing at all.
- CORS: none unless ``OMNICARD_CORS_ORIGINS`` names origins (``https://app.example``,
  comma-separated, exact). Those may call the API from their pages with a Bearer token:
  preflights are answered here, and answers say ``Access-Control-Allow-Origin`` for them
  only. No cookies cross origins (``Access-Control-Allow-Credentials`` is never sent): the
  API's callers authenticate with the Authorization header.
"""

from __future__ import annotations

from flask import Flask, Response, current_app, request

#: For pages: the project's own assets only, nothing inline. Swagger UI (``/docs``) runs
#: from its bundle's files and app/core/static/docs-start.js (checked in headless Chromium,
#: every operation expanded: no violation).
PAGE_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; "
    "img-src 'self' data:; font-src 'self'; connect-src 'self'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
#: For everything else (JSON, images, scripts): nothing runs in it, nothing frames it.
OTHER_CSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"

CORS_METHODS = "GET, POST, PUT, PATCH, DELETE"
CORS_REQUEST_HEADERS = (
    "Authorization, Content-Type, Idempotency-Key, Last-Event-ID, X-Omnicard-Channel"
)
CORS_EXPOSED_HEADERS = "Retry-After, Idempotent-Replayed"
CORS_MAX_AGE_S = 600


def allowed_origin() -> str | None:
    """The request's Origin, if configuration lets it read the API's answers."""
    origin = request.headers.get("Origin")
    if origin and origin in current_app.config["CORS_ORIGINS"]:
        return origin
    return None


def answer_preflight() -> Response | None:
    """A CORS preflight from an allowed origin, answered before any view runs (a preflight
    carries no token, so the views would refuse it). Others go on to Flask's own OPTIONS
    answer, with no CORS headers: the browser then keeps the request from being sent."""
    if request.method != "OPTIONS" or "Access-Control-Request-Method" not in request.headers:
        return None
    origin = allowed_origin()
    if origin is None:
        return None
    response = current_app.response_class(status=204)
    response.headers["Access-Control-Allow-Methods"] = CORS_METHODS
    response.headers["Access-Control-Allow-Headers"] = CORS_REQUEST_HEADERS
    response.headers["Access-Control-Max-Age"] = str(CORS_MAX_AGE_S)
    return response


def add_headers(response: Response) -> Response:
    h = response.headers
    h.setdefault("X-Content-Type-Options", "nosniff")
    h.setdefault("X-Frame-Options", "DENY")
    h.setdefault("Referrer-Policy", "no-referrer")
    h.setdefault(
        "Content-Security-Policy", PAGE_CSP if response.mimetype == "text/html" else OTHER_CSP
    )
    if request.path.startswith("/v1/") and "Cache-Control" not in h:
        h["Cache-Control"] = "no-store"
    origin = allowed_origin()
    if origin is not None:
        h["Access-Control-Allow-Origin"] = origin
        h["Access-Control-Expose-Headers"] = CORS_EXPOSED_HEADERS
    if current_app.config["CORS_ORIGINS"]:
        h.add("Vary", "Origin")
    return response


def init_app(app: Flask) -> None:
    app.before_request(answer_preflight)
    app.after_request(add_headers)

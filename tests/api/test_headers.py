"""What every answer tells a browser, through real HTTP: API answers are never cached, sniffed
or framed; pages run only the project's own scripts; other web origins read the API only
when configuration names them (CORS)."""

from __future__ import annotations

import re

import pytest

from app.core import config
from app.core.headers import add_headers

ALLOWED = "https://app.omnicard.example"


def assert_never_cached_sniffed_or_framed(response) -> None:
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["X-Frame-Options"] == "DENY"
    csp = response.headers["Content-Security-Policy"]
    assert "default-src 'none'" in csp
    assert "frame-ancestors 'none'" in csp


def test_an_authenticated_json_answer_is_never_cached_sniffed_or_framed(api, world):
    token, _ = world.shopper()

    response = api.get("/v1/me", token=token)

    assert response.status_code == 200
    assert_never_cached_sniffed_or_framed(response)


def test_a_login_answer_with_its_token_is_never_cached(api, world):
    response = api.post(
        "/v1/auth/signup",
        json={"email": "cache@example.test", "password": "a long password", "name": "C"},
        key=None,
    )

    assert response.status_code == 201
    assert_never_cached_sniffed_or_framed(response)


def test_an_error_answer_carries_the_same_headers(api):
    response = api.get("/v1/me")

    assert response.status_code == 401
    assert_never_cached_sniffed_or_framed(response)


def test_a_view_that_sets_its_own_caching_keeps_it(app):
    """The event stream says ``Cache-Control: no-cache``, which suits a stream."""
    with app.test_request_context("/v1/events"):
        response = app.response_class("", mimetype="text/event-stream")
        response.headers["Cache-Control"] = "no-cache"

        add_headers(response)

    assert response.headers["Cache-Control"] == "no-cache"
    assert response.headers["X-Content-Type-Options"] == "nosniff"


def test_the_docs_page_runs_only_the_projects_own_scripts_and_cannot_be_framed(client):
    response = client.get("/docs")

    assert response.status_code == 200
    assert response.mimetype == "text/html"
    csp = dict(
        part.strip().split(" ", 1)
        for part in response.headers["Content-Security-Policy"].split(";")
    )
    assert csp["default-src"] == "'none'"
    assert csp["script-src"] == "'self'"
    assert csp["style-src"] == "'self'"
    assert csp["frame-ancestors"] == "'none'"
    assert "unsafe" not in response.headers["Content-Security-Policy"]
    assert response.headers["X-Frame-Options"] == "DENY"
    page = response.get_data(as_text=True)
    scripts = re.findall(r"<script([^>]*)>(.*?)</script>", page, re.S)
    assert scripts, page
    for attributes, body in scripts:
        assert 'src="/' in attributes and body.strip() == "", "an inline script would be blocked"
        src = re.search(r'src="([^"]+)"', attributes)[1]
        with client.get(src) as served:
            assert served.status_code == 200, src
            assert served.mimetype in ("text/javascript", "application/javascript"), src


def preflight(client, origin, path="/v1/sales", method="POST"):
    return client.options(
        path,
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": method,
            "Access-Control-Request-Headers": "authorization, content-type, idempotency-key",
        },
    )


def test_by_default_no_other_origin_may_read_the_api(client, api, world):
    token, _ = world.shopper()

    refused = preflight(client, ALLOWED)
    answer = api.get("/v1/me", token=token, headers={"Origin": ALLOWED})

    assert "Access-Control-Allow-Origin" not in refused.headers
    assert "Access-Control-Allow-Origin" not in answer.headers
    assert answer.status_code == 200


@pytest.fixture
def cors(app, monkeypatch):
    monkeypatch.setitem(app.config, "CORS_ORIGINS", [ALLOWED])


def test_a_configured_origin_gets_its_preflight_answered(client, cors):
    response = preflight(client, ALLOWED)

    assert response.status_code == 204
    assert response.headers["Access-Control-Allow-Origin"] == ALLOWED
    assert "POST" in response.headers["Access-Control-Allow-Methods"]
    allowed = {
        h.strip().lower() for h in response.headers["Access-Control-Allow-Headers"].split(",")
    }
    assert {"authorization", "content-type", "idempotency-key", "last-event-id"} <= allowed
    assert "Origin" in response.headers.get_all("Vary")
    assert "Access-Control-Allow-Credentials" not in response.headers


def test_a_configured_origin_reads_answers_and_their_retry_and_replay_headers(api, world, cors):
    token, _ = world.shopper()

    response = api.get("/v1/me", token=token, headers={"Origin": ALLOWED})

    assert response.status_code == 200
    assert response.headers["Access-Control-Allow-Origin"] == ALLOWED
    exposed = response.headers["Access-Control-Expose-Headers"]
    assert "Retry-After" in exposed and "Idempotent-Replayed" in exposed
    assert "Origin" in response.headers.get_all("Vary")


def test_an_origin_not_configured_is_still_refused(client, api, world, cors):
    token, _ = world.shopper()

    refused = preflight(client, "https://evil.example")
    answer = api.get("/v1/me", token=token, headers={"Origin": "https://evil.example"})

    assert "Access-Control-Allow-Origin" not in refused.headers
    assert "Access-Control-Allow-Origin" not in answer.headers


def test_cors_origins_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("OMNICARD_CORS_ORIGINS", f" {ALLOWED}, https://shop.example ,")

    assert config.from_environment()["CORS_ORIGINS"] == [ALLOWED, "https://shop.example"]
    monkeypatch.delenv("OMNICARD_CORS_ORIGINS")
    assert config.from_environment()["CORS_ORIGINS"] == []

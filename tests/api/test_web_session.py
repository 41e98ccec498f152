"""The website's session cookie as the API meets it: the same shopper, the same rules, and no
change without the page's CSRF token."""

from __future__ import annotations

import re

import pytest

from app import create_app
from app.auth import browser
from tests.conftest import TEST_CONFIG


def csrf_of(page_html: str) -> str:
    return re.search(r'<meta name="csrf-token" content="([^"]+)">', page_html).group(1)


def sign_up_on_the_website(api, email="web@example.test", name="Ada Lovelace"):
    """Sign up as the page does: (the home page's CSRF token, the shopper's first card id)."""
    token = csrf_of(api.client.get("/signup").text)
    r = api.post(
        "/signup",
        json={"email": email, "password": "a long password", "name": name},
        headers={"X-CSRF-Token": token},
        key=None,
    )
    assert r.status_code == 201, r.json
    home = api.client.get("/")
    assert home.status_code == 200
    me = api.get("/v1/me")
    assert me.status_code == 200, me.json
    return csrf_of(home.text), me.json["cards"][0]["id"]


def cookie(client, name):
    return client.get_cookie(name)


def test_signing_up_on_the_website_sets_an_httponly_samesite_cookie_the_api_takes(api):
    sign_up_on_the_website(api)
    session_cookie = cookie(api.client, browser.SESSION_COOKIE)
    assert session_cookie is not None and session_cookie.value.startswith("oct_")
    assert session_cookie.http_only and session_cookie.same_site == "Lax"
    me = api.get("/v1/me")
    assert me.json["name"] == "Ada Lovelace"


def test_outside_development_the_cookies_are_secure(database_url):
    app = create_app(dict(TEST_CONFIG, DATABASE_URL=database_url, SECURE_COOKIES=True))
    client = app.test_client()
    page = client.get("/login", base_url="https://shop.example")
    set_cookie = page.headers["Set-Cookie"]
    assert set_cookie.startswith(f"{browser.CSRF_COOKIE}=")
    assert "Secure" in set_cookie and "HttpOnly" in set_cookie and "SameSite=Strict" in set_cookie


def test_a_change_with_the_cookie_but_without_the_pages_token_is_refused_and_changes_nothing(
    api, world
):
    csrf, card_id = sign_up_on_the_website(api)
    body = {"amount": {"amount": 1000, "currency": "USD"}, "payment_token": "tok_visa"}
    one_off = csrf[:-1] + ("1" if csrf[-1] == "0" else "0")  # the page's token, one digit off
    for headers in ({}, {"X-CSRF-Token": "not-the-token"}, {"X-CSRF-Token": one_off}):
        r = api.post(f"/v1/cards/{card_id}/top-ups", json=body, headers=headers)
        assert r.status_code == 403 and r.json["error"]["code"] == "csrf_failed", r.json
    r = api.post("/v1/me/pay-codes", json={}, headers={})
    assert r.status_code == 403 and r.json["error"]["code"] == "csrf_failed"
    assert api.get(f"/v1/cards/{card_id}").json["balance"]["amount"] == 0


def test_a_cross_site_request_is_refused_even_with_the_token(api):
    csrf, card_id = sign_up_on_the_website(api)
    r = api.post(
        "/v1/me/pay-codes",
        json={},
        headers={"X-CSRF-Token": csrf, "Sec-Fetch-Site": "cross-site"},
    )
    assert r.status_code == 403 and r.json["error"]["code"] == "csrf_failed"


def test_with_the_pages_token_the_cookie_tops_up_and_the_books_say_web(api):
    csrf, card_id = sign_up_on_the_website(api)
    body = {"amount": {"amount": 1000, "currency": "USD"}, "payment_token": "tok_visa"}
    r = api.post(f"/v1/cards/{card_id}/top-ups", json=body, headers={"X-CSRF-Token": csrf})
    assert r.status_code == 201, r.json
    activity = api.get(f"/v1/cards/{card_id}/activity").json["items"]
    assert activity[0]["channel"] == "web"
    assert api.get(f"/v1/cards/{card_id}").json["balance"]["amount"] == 1000


def test_a_bearer_token_needs_no_csrf_token_and_wins_over_the_cookie(api, world):
    sign_up_on_the_website(api)
    token, me = world.shopper(name="Grace")
    r = api.post("/v1/me/pay-codes", token=token, json={})
    assert r.status_code == 201 and r.json["card_id"] == me["cards"][0]["id"]
    assert api.get("/v1/me", token=token).json["name"] == "Grace"


def test_a_staff_login_in_the_cookie_is_no_session(api, world):
    admin = world.admin_token()
    api.client.set_cookie(browser.SESSION_COOKIE, admin)
    assert api.get("/v1/me").status_code == 401
    assert api.client.get("/").status_code == 302


def test_logging_in_needs_the_login_pages_token(api, world):
    world.shopper(name="Ada")  # shopper1@example.test, "a long password"
    api.client.get("/login")
    r = api.post(
        "/session", json={"email": "shopper1@example.test", "password": "a long password"}, key=None
    )
    assert r.status_code == 403 and r.json["error"]["code"] == "csrf_failed"
    assert cookie(api.client, browser.SESSION_COOKIE) is None
    token = csrf_of(api.client.get("/login").text)
    r = api.post(
        "/session",
        json={"email": "shopper1@example.test", "password": "a long password", "next": "/pay"},
        headers={"X-CSRF-Token": token},
        key=None,
    )
    assert r.status_code == 200 and r.json["redirect"] == "/pay"
    assert api.get("/v1/me").json["name"] == "Ada"


def test_a_wrong_password_sets_no_cookie(api, world):
    world.shopper()
    token = csrf_of(api.client.get("/login").text)
    r = api.post(
        "/session",
        json={"email": "shopper1@example.test", "password": "not the password"},
        headers={"X-CSRF-Token": token},
        key=None,
        refusal_writes=True,  # the failed guess is counted
    )
    assert r.status_code == 401 and r.json["error"]["code"] == "invalid_credentials"
    assert cookie(api.client, browser.SESSION_COOKIE) is None


def test_logging_out_ends_the_login_at_once(api):
    csrf, _ = sign_up_on_the_website(api)
    old = cookie(api.client, browser.SESSION_COOKIE).value
    r = api.post("/logout", headers={"X-CSRF-Token": csrf}, key=None)
    assert r.status_code == 200 and r.json["redirect"] == "/login"
    assert cookie(api.client, browser.SESSION_COOKIE) is None
    assert api.get("/v1/me", token=old).status_code == 401


def test_logging_out_without_the_pages_token_is_refused(api):
    sign_up_on_the_website(api)
    r = api.post("/logout", key=None)
    assert r.status_code == 403
    assert api.get("/v1/me").status_code == 200


@pytest.mark.parametrize(
    "target, lands",
    [
        ("/pay", "/pay"),
        ("//evil.example/x", "/"),
        ("https://evil.example/", "/"),
        ("/\\evil.example", "/"),
        ("", "/"),
    ],
)
def test_after_switching_language_the_shopper_stays_on_this_site(client, target, lands):
    r = client.get(f"/lang/es?next={target}")
    assert r.status_code == 302 and r.headers["Location"] == lands


def test_the_language_comes_from_the_choice_then_the_browser(client):
    assert '<html lang="en">' in client.get("/login").text
    spanish = client.get("/login", headers={"Accept-Language": "es-ES,es;q=0.9,en;q=0.5"})
    assert '<html lang="es">' in spanish.text and "Iniciar sesión" in spanish.text
    client.get("/lang/en?next=/login")
    chosen = client.get("/login", headers={"Accept-Language": "es-ES"})
    assert '<html lang="en">' in chosen.text

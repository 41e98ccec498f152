"""Signing up, logging in and out on the website; the session cookie and the CSRF token that
guards it; the page's language; and the accessibility of the pages every shopper meets."""

from __future__ import annotations

import uuid

import httpx
from playwright.sync_api import expect

from app.core.db import session
from tests.snapshot import snapshot
from tests.web.browser import HOME, check_accessibility, log_in

SESSION_COOKIE = "omnicard_session"


def cookie(context, name: str) -> dict | None:
    return next((c for c in context.cookies() if c["name"] == name), None)


def test_signing_up_lands_on_home_with_the_new_card_at_zero_and_no_stars_yet(page, server):
    email = f"{uuid.uuid4().hex[:12]}@example.test"
    page.goto("/signup")
    page.get_by_label("Name").fill("Grace Hopper")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill("a long password")
    page.get_by_role("button", name="Create account").click()

    page.wait_for_url(HOME)
    expect(page.locator("#greeting")).to_have_text("Hello, Grace")
    cards = page.locator("#cards > li")
    expect(cards).to_have_count(1)
    expect(cards.first.locator(".card-balance")).to_have_text("$0.00")
    expect(page.locator("#stars-count")).to_have_text("0")
    expect(page.locator(".stars")).to_contain_text("Stars")
    expect(page.locator("#tier")).to_have_text("Green level")
    # The account is a real one: the API takes its email and password.
    login = httpx.post(f"{server.url}/v1/auth/login", timeout=10,
                       json={"email": email, "password": "a long password"})  # fmt: skip
    assert login.status_code == 200, login.text


def test_logging_out_ends_the_login_and_logging_in_again_shows_the_cards(
    context, page, shopper, server
):
    ada = shopper(load_minor=1250)
    log_in(page, ada.email, ada.password)
    expect(page.locator("#cards .card-balance")).to_have_text("$12.50")
    token = cookie(context, SESSION_COOKIE)["value"]

    page.get_by_role("button", name="Log out").click()

    page.wait_for_url("**/login")
    assert cookie(context, SESSION_COOKIE) is None
    # The login itself is revoked, not only forgotten by this browser.
    me = httpx.get(f"{server.url}/v1/me", headers={"Authorization": f"Bearer {token}"})
    assert me.status_code == 401
    page.goto("/")
    page.wait_for_url("**/login?next=/")

    log_in(page, ada.email, ada.password)
    expect(page.locator("#cards .card-balance")).to_have_text("$12.50")


def test_a_wrong_password_shows_a_clear_error_and_sets_no_session_cookie(context, page, shopper):
    ada = shopper()
    page.goto("/login")
    page.get_by_label("Email").fill(ada.email)
    page.get_by_label("Password").fill("not the password")
    page.get_by_role("button", name="Log in").click()

    alert = page.locator("#login-form [role=alert]")
    expect(alert).to_have_text("Wrong email or password.")
    expect(alert).to_be_focused()
    assert page.url.endswith("/login")
    assert cookie(context, SESSION_COOKIE) is None


def test_the_session_cookie_is_httponly_and_samesite(context, page, shopper):
    ada = shopper()
    log_in(page, ada.email, ada.password)

    session_cookie = cookie(context, SESSION_COOKIE)
    assert session_cookie["httpOnly"] is True
    assert session_cookie["sameSite"] == "Lax"
    assert session_cookie["path"] == "/"
    assert SESSION_COOKIE not in page.evaluate("document.cookie")


#: A POST from the page's own script, with the browser's cookies and only ``headers`` added.
FETCH = """async ([path, body, headers]) => {
    const r = await fetch(path, {
        method: "POST", credentials: "same-origin", body: JSON.stringify(body),
        headers: Object.assign({"Content-Type": "application/json",
                                "Idempotency-Key": crypto.randomUUID()}, headers)});
    return {status: r.status, body: await r.json()};
}"""


def test_a_change_with_the_cookie_but_without_the_pages_csrf_token_is_refused_and_changes_nothing(
    app, page, shopper
):
    ada = shopper(load_minor=2000)
    log_in(page, ada.email, ada.password)
    top_up = [
        f"/v1/cards/{ada.card_id}/top-ups",
        {"amount": {"amount": 1000, "currency": "USD"}, "payment_token": "tok_visa"},
    ]
    pay_code = ["/v1/me/pay-codes", {"card_id": ada.card_id}]
    token = page.locator("meta[name=csrf-token]").get_attribute("content")

    with app.app_context():
        before = snapshot(session())
    refusals = [
        page.evaluate(FETCH, [*top_up, {}]),
        page.evaluate(FETCH, [*pay_code, {}]),
        page.evaluate(FETCH, [*pay_code, {"X-CSRF-Token": "0" * 64}]),
    ]
    with app.app_context():
        after = snapshot(session())

    for refused in refusals:
        assert refused["status"] == 403, refused
        assert refused["body"]["error"]["code"] == "csrf_failed"
    assert after == before
    # With the page's token the same requests go through.
    assert page.evaluate(FETCH, [*pay_code, {"X-CSRF-Token": token}])["status"] == 201
    assert page.evaluate(FETCH, [*top_up, {"X-CSRF-Token": token}])["status"] == 201
    page.reload()
    expect(page.locator("#cards .card-balance")).to_have_text("$30.00")


def test_the_language_switch_shows_the_site_in_spanish(page, shopper):
    page.goto("/login")
    expect(page.locator("h1")).to_have_text("Log in")

    page.get_by_role("link", name="Español").click()

    expect(page.locator("html")).to_have_attribute("lang", "es")
    expect(page.locator("h1")).to_have_text("Iniciar sesión")
    ada = shopper(load_minor=1250)
    page.get_by_label("Correo electrónico").fill(ada.email)
    page.get_by_label("Contraseña").fill(ada.password)
    page.get_by_role("button", name="Iniciar sesión").click()
    page.wait_for_url(HOME)
    expect(page.locator("#cards-title")).to_have_text("Tarjetas")
    expect(page.locator("#cards .card-balance")).to_have_text("12,50\xa0US$")


def test_a_browser_that_asks_for_spanish_gets_spanish_and_one_that_asks_for_english_english(
    new_context,
):
    spanish = new_context(locale="es-ES").new_page()
    english = new_context(locale="en-US").new_page()

    spanish.goto("/signup")
    english.goto("/signup")

    expect(spanish.locator("html")).to_have_attribute("lang", "es")
    expect(spanish.locator("h1")).to_have_text("Crea tu cuenta")
    expect(english.locator("html")).to_have_attribute("lang", "en")
    expect(english.locator("h1")).to_have_text("Create your account")


def test_login_signup_and_home_pass_the_accessibility_check(new_context, shopper):
    for locale in ("en-US", "es-ES"):
        page = new_context(locale=locale).new_page()
        for path in ("/login", "/signup"):
            page.goto(path)
            check_accessibility(page)
        page.locator("#signup-form button[type=submit]").click()  # the fields' errors shown
        expect(page.locator("#name-error")).not_to_be_empty()
        check_accessibility(page)
        ada = shopper(load_minor=500)
        log_in(page, ada.email, ada.password)
        check_accessibility(page)

"""Topping up and paying in store, in a real browser against the live server: the sandbox
gateway's test cards (approved, declined, answered late and settled by the page's retry with
the same key), and the pay code a till scans, paid with through the API as a till would,
the balance under it moving live. Both pages pass the accessibility check, in English and
Spanish, at a phone's width and a desktop's."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect
from sqlalchemy import select

from app.core.db import session
from app.payments.models import TopUp
from tests.web.browser import check_accessibility, log_in

PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 900}


def signed_in(new_context, person, *, locale="en-US", viewport=PHONE) -> Page:
    return log_in(new_context(locale=locale, viewport=viewport), person.email, person.password)


def top_ups_of(app, card_id) -> list[tuple[str, str, int]]:
    """The card's top-ups as the database holds them: (channel, status, amount)."""
    with app.app_context():
        rows = session().execute(
            select(TopUp.channel, TopUp.status, TopUp.amount_minor)
            .where(TopUp.card_id == card_id)
            .order_by(TopUp.id)
        )
        return [tuple(r) for r in rows]


def open_top_up(page: Page, card_id: int, balance_text: str) -> None:
    page.goto(f"/cards/{card_id}/top-up")
    expect(page.locator("#card-balance")).to_have_text(balance_text)


def choose(page: Page, *, amount: str, test_card: str) -> None:
    """A quick amount by its label ("$25.00"), or any other typed into the field."""
    quick = page.get_by_role("radio", name=amount, exact=True)
    if quick.count():
        quick.check()
    else:
        page.get_by_role("radio", name="Other amount").check()
        page.get_by_label("Other amount", exact=True).last.fill(amount)
    page.get_by_label("Test card", exact=True).select_option(test_card)


# -- top-ups ---------------------------------------------------------------------------------


def test_an_approved_top_up_shows_the_new_balance(app, new_context, shopper, world):
    ada = shopper(load_minor=1_000)
    page = signed_in(new_context, ada)
    open_top_up(page, ada.card_id, "$10.00")

    choose(page, amount="$25.00", test_card="tok_visa")
    page.get_by_role("button", name="Top up $25.00").click()

    outcome = page.locator("#outcome")
    expect(outcome).to_have_attribute("data-state", "done")
    expect(outcome).to_contain_text("$25.00 added")
    expect(outcome).to_contain_text("$35.00")
    expect(page.locator("#card-balance")).to_have_text("$35.00")
    assert world.balance(ada.card_id) == 3_500
    assert top_ups_of(app, ada.card_id)[-1] == ("web", "succeeded", 2_500)


def test_a_declined_card_says_so_and_the_balance_is_unchanged(app, new_context, shopper, world):
    ada = shopper(load_minor=1_000)
    page = signed_in(new_context, ada)
    open_top_up(page, ada.card_id, "$10.00")

    choose(page, amount="$50.00", test_card="tok_chargeDeclined")
    page.get_by_role("button", name="Top up $50.00").click()

    alert = page.locator("#topup-form [role=alert]")
    expect(alert).to_be_visible()
    expect(alert).to_contain_text("declined")
    expect(alert).to_contain_text("Nothing was charged")
    expect(alert).to_contain_text("$10.00")
    expect(alert).to_be_focused()
    expect(page.locator("#outcome")).to_be_hidden()
    expect(page.locator("#card-balance")).to_have_text("$10.00")
    assert world.balance(ada.card_id) == 1_000
    assert top_ups_of(app, ada.card_id)[-1] == ("web", "declined", 5_000)
    check_accessibility(page)


def test_a_late_bank_shows_waiting_then_the_settled_balance_and_loads_once(
    app, new_context, shopper, world
):
    ada = shopper(load_minor=1_000)
    page = signed_in(new_context, ada)
    open_top_up(page, ada.card_id, "$10.00")

    choose(page, amount="12.34", test_card="tok_timeout")
    page.get_by_role("button", name="Top up $12.34").click()

    outcome = page.locator("#outcome")
    expect(outcome).to_have_attribute("data-state", "pending")
    expect(outcome).to_contain_text("Waiting for the bank")
    expect(outcome).to_have_attribute("data-state", "done")
    expect(outcome).to_contain_text("$22.34")
    expect(page.locator("#card-balance")).to_have_text("$22.34")
    assert world.balance(ada.card_id) == 2_234
    web_top_ups = [t for t in top_ups_of(app, ada.card_id) if t[0] == "web"]
    assert web_top_ups == [("web", "succeeded", 1_234)]
    world.verify_ledger()


def test_a_double_click_charges_once(app, new_context, shopper, world):
    ada = shopper()
    page = signed_in(new_context, ada)
    open_top_up(page, ada.card_id, "$0.00")

    choose(page, amount="$10.00", test_card="tok_visa")
    page.get_by_role("button", name="Top up $10.00").dblclick()

    expect(page.locator("#outcome")).to_have_attribute("data-state", "done")
    expect(page.locator("#card-balance")).to_have_text("$10.00")
    assert top_ups_of(app, ada.card_id) == [("web", "succeeded", 1_000)]


def test_an_amount_outside_the_limits_is_refused_before_anything_is_sent(app, new_context, shopper):
    ada = shopper()
    page = signed_in(new_context, ada)
    open_top_up(page, ada.card_id, "$0.00")
    expect(page.locator("#amount-limits")).to_have_text("From $5.00 to $250.00 at a time.")

    choose(page, amount="4.99", test_card="tok_visa")
    page.get_by_role("button", name="Top up $4.99").click()

    expect(page.locator("#custom-error")).to_have_text("Choose an amount from $5.00 to $250.00.")
    expect(page.get_by_label("Other amount", exact=True).last).to_have_attribute(
        "aria-invalid", "true"
    )
    assert top_ups_of(app, ada.card_id) == []


def test_a_top_up_by_keyboard_alone(app, new_context, shopper, world):
    ada = shopper()
    page = signed_in(new_context, ada)
    open_top_up(page, ada.card_id, "$0.00")

    page.get_by_role("radio", name="$25.00").focus()
    page.keyboard.press("ArrowRight")
    expect(page.get_by_role("radio", name="$50.00")).to_be_checked()
    page.keyboard.press("Tab")
    expect(page.get_by_label("Test card", exact=True)).to_be_focused()
    page.keyboard.press("Tab")
    expect(page.get_by_role("button", name="Top up $50.00")).to_be_focused()
    page.keyboard.press("Enter")

    expect(page.locator("#outcome")).to_have_attribute("data-state", "done")
    expect(page.locator("#outcome")).to_be_focused()
    assert world.balance(ada.card_id) == 5_000


def test_another_shoppers_card_shows_only_that_it_is_not_found(new_context, shopper):
    ada, grace = shopper(load_minor=1_000), shopper(name="Grace", load_minor=4_200)
    page = signed_in(new_context, ada)
    page.goto(f"/cards/{grace.card_id}/top-up")

    expect(page.locator("#card-problem")).to_have_text("We cannot find this card among yours.")
    expect(page.locator("#topup-form")).to_be_hidden()
    expect(page.locator("main")).not_to_contain_text("42.00")


# -- the pay code ----------------------------------------------------------------------------


def shown_code(page: Page) -> str:
    codes = page.locator("#codes")
    expect(codes).to_have_attribute("data-code", re.compile(r"^\d{12}$"))
    digits = page.locator("#code-digits").inner_text().replace(" ", "")
    assert digits == codes.get_attribute("data-code")
    return digits


def test_the_pay_code_pays_at_a_till_and_the_balance_under_it_updates_live(
    new_context, shopper, world, till
):
    ada = shopper(load_minor=2_000)
    page = signed_in(new_context, ada)
    page.goto("/pay")

    code = shown_code(page)
    expect(page.get_by_role("img", name=re.compile("QR code of your pay code"))).to_be_visible()
    expect(page.get_by_role("img", name=re.compile("Barcode of your pay code"))).to_be_visible()
    expect(page.locator("#balance")).to_have_text("$20.00")
    assert code not in page.url

    def sell(pay_code):
        return world.http("POST", "/v1/sales", till.token, {
            "customer": {"pay_code": pay_code},
            "lines": [{"sku": world.skus["latte"], "quantity": 1}],
            "tenders": [{"type": "card_balance", "amount": {"amount": 445, "currency": "USD"}}],
        })  # fmt: skip

    paid = sell(code)
    assert paid.status_code == 201, paid.text
    assert paid.json()["card_id"] == ada.card_id

    expect(page.locator("#balance")).to_have_text("$15.55")
    expect(page.locator("#pay-notice")).to_contain_text("Paid $4.45")
    expect(page.locator("#codes")).not_to_have_attribute("data-code", code)
    assert shown_code(page) != code
    again = sell(code)
    assert again.status_code == 422
    assert again.json()["error"]["code"] == "pay_code_invalid"
    assert world.balance(ada.card_id) == 1_555


def test_a_code_for_another_of_the_shoppers_cards(new_context, shopper, world, till):
    ada = shopper(load_minor=1_000)
    batch = world.call("POST", "/v1/admin/card-batches", world.admin, {"size": 1, "note": "t"})
    assert batch.status_code == 201, batch.json
    physical = batch.json["cards"][0]
    sold = world.call("POST", "/v1/pos/gift-cards", till.token, {
        "card": {"card_number": physical["number"]},
        "amount": {"amount": 700, "currency": "USD"}, "tender": "cash"})  # fmt: skip
    assert sold.status_code == 201, sold.json
    registered = world.call("POST", "/v1/me/cards", ada.token, {
        "number": physical["number"], "security_code": physical["security_code"]})  # fmt: skip
    assert registered.status_code == 201, registered.json
    page = signed_in(new_context, ada)
    page.goto("/pay")
    expect(page.locator("#codes")).to_have_attribute("data-card-id", str(ada.card_id))

    last4 = physical["number"][-4:]
    page.get_by_label("Pay with").select_option(label=f"Card ···· {last4}")

    expect(page.locator("#codes")).to_have_attribute("data-card-id", str(physical["id"]))
    expect(page.locator("#balance")).to_have_text("$7.00")
    shown_code(page)


def test_a_top_up_elsewhere_moves_the_balance_under_the_code(new_context, shopper, world):
    ada = shopper(load_minor=1_000)
    page = signed_in(new_context, ada)
    page.goto("/pay")
    shown_code(page)
    expect(page.locator("#balance")).to_have_text("$10.00")

    world.top_up(ada.token, ada.card_id, 500, via_server=True)

    expect(page.locator("#balance")).to_have_text("$15.00")


def test_offline_the_last_code_shows_until_it_expires_then_no_new_one_is_promised(
    new_context, shopper
):
    ada = shopper(load_minor=1_000)
    page = signed_in(new_context, ada)
    page.goto("/pay")
    code = shown_code(page)

    page.context.set_offline(True)
    page.get_by_role("button", name="New code now").click()
    expect(page.locator("#pay-notice")).to_contain_text("You are offline. This code still works")
    assert shown_code(page) == code

    # The remembered code runs out while still offline.
    page.evaluate(
        """() => {
          const key = "omnicard:pay_code";
          const kept = JSON.parse(localStorage.getItem(key));
          kept.value.expires_local = Date.now() - 1000;
          localStorage.setItem(key, JSON.stringify(kept));
        }"""
    )
    page.get_by_role("button", name="New code now").click()
    expect(page.locator("#pay-problem")).to_contain_text("cannot be made offline")
    expect(page.locator("#codes")).not_to_have_attribute("data-code", code)
    expect(page.locator("#qr")).to_be_hidden()
    expect(page.locator("#code-digits")).to_have_text("")

    page.context.set_offline(False)
    page.evaluate("window.dispatchEvent(new Event('online'))")
    new = shown_code(page)
    assert new != code
    expect(page.locator("#pay-problem")).to_be_hidden()


def test_the_countdown_is_shown_but_not_announced(new_context, shopper):
    ada = shopper(load_minor=1_000)
    page = signed_in(new_context, ada)
    page.goto("/pay")
    shown_code(page)

    countdown = page.locator("#countdown")
    expect(countdown).to_have_text(re.compile(r"^New code in \d+ s$"))
    assert countdown.get_attribute("aria-hidden") == "true"
    announcing = "[aria-live], [role=status], [role=alert]"
    assert countdown.evaluate(f"el => el.closest('{announcing}')") is None
    expect(page.locator("#expiry-for-readers")).to_contain_text("This code is valid until")


# -- accessibility, in both languages, at both widths ----------------------------------------


@pytest.mark.parametrize("viewport", [PHONE, DESKTOP], ids=["phone", "desktop"])
@pytest.mark.parametrize("locale", ["en-US", "es-ES"])
def test_both_pages_pass_the_accessibility_check(new_context, shopper, locale, viewport):
    ada = shopper(load_minor=1_000)
    page = signed_in(new_context, ada, locale=locale, viewport=viewport)
    lang = locale[:2]

    page.goto(f"/cards/{ada.card_id}/top-up")
    expect(page.locator("html")).to_have_attribute("lang", lang)
    expect(page.locator("#card-balance")).to_have_text(re.compile(r"10[.,]00"))
    check_accessibility(page)
    assert page.evaluate("document.documentElement.scrollWidth") <= viewport["width"]

    page.goto("/pay")
    shown_code(page)
    expect(page.locator("#balance")).to_have_text(re.compile(r"10[.,]00"))
    check_accessibility(page)
    assert page.evaluate("document.documentElement.scrollWidth") <= viewport["width"]
    if lang == "es":
        expect(page.locator("h1")).to_have_text("Pagar en tienda")


def countdown_seconds(page: Page) -> int:
    text = page.locator("#countdown").inner_text()
    match = re.fullmatch(r"New code in (\d+) s", text)
    assert match, text
    return int(match.group(1))


def test_a_new_code_replaces_the_old_before_it_expires(new_context, shopper):
    ada = shopper(load_minor=1_000)
    page = new_context(viewport=PHONE).new_page()
    page.clock.install()
    log_in(page, ada.email, ada.password)
    page.goto("/pay")
    first = shown_code(page)
    page.clock.pause_at(page.evaluate("Date.now()") / 1000 + 0.5)  # time moves when told
    assert 45 <= countdown_seconds(page) <= 50

    page.clock.fast_forward(38_000)
    assert 7 <= countdown_seconds(page) <= 12
    assert shown_code(page) == first

    page.clock.fast_forward(12_000)  # 50 s in: 10 s or less before the first code expires
    expect(page.locator("#codes")).not_to_have_attribute("data-code", first)
    assert shown_code(page) != first
    assert 45 <= countdown_seconds(page) <= 50

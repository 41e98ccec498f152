"""The card pages in a real browser: adding a physical card, a card's live balance and
history, moving money between one's cards, reporting a card lost, and their accessibility in
English and Spanish."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from app.core.db import session
from app.stores.models import Store
from tests.web.browser import check_accessibility, log_in


def gift_card(world, till, load_minor: int = 2500) -> dict:
    """A physical card from a new batch, sold at the till for ``load_minor``: its id, number
    and security code, as a shopper holding it would know them."""
    batch = world.call("POST", "/v1/admin/card-batches", world.admin, {"size": 1}, key=False)
    assert batch.status_code == 201, batch.json
    [card] = batch.json["cards"]
    sold = world.http("POST", "/v1/pos/gift-cards", till.token, {
        "card": {"card_number": card["number"]},
        "amount": {"amount": load_minor, "currency": "USD"}, "tender": "cash",
    })  # fmt: skip
    assert sold.status_code == 201, sold.text
    return card


def register(world, shopper, card: dict) -> None:
    r = world.http("POST", "/v1/me/cards", shopper.token,
                   {"number": card["number"], "security_code": card["security_code"]})  # fmt: skip
    assert r.status_code == 201, r.text


def card_page(page, card_id: int):
    page.goto(f"/cards/{card_id}")
    expect(page.locator("#history")).to_have_attribute("aria-busy", "false")
    return page


def history_lines(page):
    return page.locator("#history > li")


def test_a_shopper_adds_a_physical_card_and_sees_its_balance(page, shopper, world, till):
    ada = shopper()
    card = gift_card(world, till, 2500)
    log_in(page, ada.email, ada.password)
    page.goto("/cards/add")

    wrong = f"{(int(card['security_code']) + 1) % 10**8:08d}"
    page.get_by_label("Card number").fill(" ".join(re.findall("....", card["number"])))
    page.get_by_label("Security code").fill(wrong)
    page.get_by_role("button", name="Add card").click()
    alert = page.locator("#add-form [role=alert]")
    expect(alert).to_contain_text("do not match a card you can add")
    expect(alert).to_be_focused()

    page.get_by_label("Security code").fill(card["security_code"])
    page.get_by_role("button", name="Add card").click()

    page.wait_for_url(re.compile(rf"/cards/{card['id']}\?added=1$"))
    expect(page.locator("#card-balance")).to_have_text("$25.00")
    expect(page.locator("#card-name")).to_contain_text(card["number"][-4:])
    expect(page.locator("#card-notice")).to_have_text("Card added to your account.")
    expect(history_lines(page)).to_have_count(1)
    expect(history_lines(page).first).to_contain_text("Top-up")


def test_a_card_not_sold_yet_is_refused_with_a_clear_message(page, shopper, world):
    ada = shopper()
    batch = world.call("POST", "/v1/admin/card-batches", world.admin, {"size": 1}, key=False)
    [card] = batch.json["cards"]
    log_in(page, ada.email, ada.password)
    page.goto("/cards/add")

    page.get_by_label("Card number").fill(card["number"])
    page.get_by_label("Security code").fill(card["security_code"])
    page.get_by_role("button", name="Add card").click()

    expect(page.locator("#add-form [role=alert]")).to_contain_text("not been activated yet")
    assert page.url.endswith("/cards/add")


def test_after_too_many_wrong_codes_even_the_right_one_waits(page, shopper, world, till):
    ada = shopper()
    card = gift_card(world, till, 500)
    wrong = f"{(int(card['security_code']) + 1) % 10**8:08d}"
    for _ in range(5):
        r = world.http("POST", "/v1/me/cards", ada.token,
                       {"number": card["number"], "security_code": wrong})  # fmt: skip
        assert r.status_code == 422, r.text
    log_in(page, ada.email, ada.password)
    page.goto("/cards/add")

    page.get_by_label("Card number").fill(card["number"])
    page.get_by_label("Security code").fill(card["security_code"])
    page.get_by_role("button", name="Add card").click()

    expect(page.locator("#add-form [role=alert]")).to_have_text(
        "Too many failed attempts. Wait a while and try again."
    )
    assert page.url.endswith("/cards/add")


def test_reporting_a_card_lost_shows_the_new_card_with_the_balance(page, shopper):
    ada = shopper(load_minor=1500)
    log_in(page, ada.email, ada.password)
    card_page(page, ada.card_id)
    expect(page.locator("#card-balance")).to_have_text("$15.00")

    start = page.get_by_role("button", name="Report this card lost")
    start.focus()
    page.keyboard.press("Enter")
    confirm = page.get_by_role("group", name="Block this card?")
    expect(confirm).to_be_visible()
    expect(confirm).to_contain_text("$15.00")
    expect(page.locator("#lost-confirm-title")).to_be_focused()
    page.keyboard.press("Escape")
    expect(confirm).to_be_hidden()
    expect(start).to_be_focused()

    start.click()
    page.get_by_role("button", name="Yes, block it and move the balance").click()

    page.wait_for_url(re.compile(rf"/cards/(?!{ada.card_id}\b)\d+\?replaces={ada.number[-4:]}$"))
    expect(page.locator("#card-balance")).to_have_text("$15.00")
    expect(page.locator("#card-notice")).to_contain_text(f"Card ···· {ada.number[-4:]} is blocked")
    expect(history_lines(page).first).to_contain_text("Balance from a card reported lost")
    expect(history_lines(page).first).to_contain_text("+$15.00 in")
    expect(history_lines(page).first).to_contain_text("Website")

    card_page(page, ada.card_id)
    expect(page.locator("#card-balance")).to_have_text("$0.00")
    expect(page.locator("#card-status")).to_contain_text("Blocked")
    expect(page.locator("#card-actions")).to_be_hidden()
    expect(page.get_by_role("link", name="Go to the new card")).to_be_visible()


def test_a_transfer_in_one_browser_shows_live_on_the_same_shoppers_home_in_another(
    new_context, shopper, world, till
):
    ada = shopper(load_minor=2000)
    gift = gift_card(world, till, 500)
    register(world, ada, gift)
    phone = log_in(new_context(), ada.email, ada.password)
    laptop = log_in(new_context(), ada.email, ada.password)
    gift_on_phone = phone.locator(f'li[data-card-id="{gift["id"]}"] [data-field="balance"]')
    expect(gift_on_phone).to_have_text("$5.00")

    card_page(laptop, ada.card_id)
    laptop.get_by_label("To card").select_option(str(gift["id"]))
    laptop.get_by_label("Amount", exact=True).fill("7.25")
    laptop.get_by_role("button", name="Move money").click()
    expect(laptop.locator("#card-balance")).to_have_text("$12.75")
    expect(history_lines(laptop).first).to_contain_text("Transfer to another card")
    expect(history_lines(laptop).first).to_contain_text("−$7.25 out")

    expect(gift_on_phone).to_have_text("$12.25")
    mine_on_phone = phone.locator(f'li[data-card-id="{ada.card_id}"] [data-field="balance"]')
    expect(mine_on_phone).to_have_text("$12.75")


def test_a_transfer_of_more_than_the_balance_is_refused_in_the_form(page, shopper, world, till):
    ada = shopper(load_minor=1000)
    gift = gift_card(world, till, 500)
    register(world, ada, gift)
    log_in(page, ada.email, ada.password)
    card_page(page, ada.card_id)

    page.get_by_label("Amount", exact=True).fill("10.01")
    page.get_by_role("button", name="Move money").click()

    alert = page.locator("#transfer-form [role=alert]")
    expect(alert).to_have_text("There is not enough money on this card for that amount.")
    expect(alert).to_be_focused()
    expect(page.locator("#card-balance")).to_have_text("$10.00")

    page.get_by_label("Amount", exact=True).fill("ten")
    page.get_by_role("button", name="Move money").click()
    expect(page.locator("#transfer_amount-error")).to_have_text("Enter an amount such as 12.50.")
    expect(page.get_by_label("Amount", exact=True)).to_have_attribute("aria-invalid", "true")


def test_a_sale_at_the_till_changes_the_open_card_page_without_a_reload(
    app, page, shopper, world, till
):
    ada = shopper(load_minor=2000)
    with app.app_context():
        store_name = session().get(Store, world.store_id).name
    log_in(page, ada.email, ada.password)
    card_page(page, ada.card_id)
    expect(page.locator("#card-balance")).to_have_text("$20.00")
    expect(history_lines(page)).to_have_count(1)
    page.evaluate("window.notReloaded = true")

    till.sell(ada, "latte")

    expect(page.locator("#card-balance")).to_have_text("$15.55")
    expect(history_lines(page)).to_have_count(2)
    newest = history_lines(page).first
    expect(newest).to_contain_text("Purchase")
    expect(newest).to_contain_text("−$4.45 out")
    expect(newest).to_contain_text(f"In store · {store_name}")
    expect(newest.locator(".entry-amount")).to_have_class(re.compile(r"\bout\b"))
    assert page.evaluate("window.notReloaded") is True


def test_history_comes_a_page_at_a_time_and_more_is_added_by_keyboard(page, shopper, world):
    ada = shopper()
    for n in range(22):
        world.top_up(ada.token, ada.card_id, 500 + n)
    log_in(page, ada.email, ada.password)
    card_page(page, ada.card_id)

    expect(history_lines(page)).to_have_count(10)
    expect(history_lines(page).first).to_contain_text("+$5.21 in")
    more = page.get_by_role("button", name="Show more history")
    more.focus()
    page.keyboard.press("Enter")
    expect(history_lines(page)).to_have_count(20)
    expect(more).to_be_focused()
    page.keyboard.press("Enter")

    expect(history_lines(page)).to_have_count(22)
    expect(history_lines(page).last).to_contain_text("+$5.00 in")
    expect(more).to_be_hidden()
    expect(history_lines(page).nth(20)).to_be_focused()
    expect(page.locator("#status")).to_have_text("2 more entries shown.")
    amounts = history_lines(page).locator(".entry-amount").all_inner_texts()
    assert amounts == [f"+$5.{n:02d} in" for n in range(21, -1, -1)]


def test_auto_reload_is_set_and_turned_off(page, shopper):
    ada = shopper(load_minor=1000)
    log_in(page, ada.email, ada.password)
    card_page(page, ada.card_id)
    expect(page.locator("#reload-state")).to_contain_text("Off.")

    page.get_by_label("When the balance drops below").fill("10")
    page.get_by_label("Add this amount").fill("1")
    page.get_by_role("button", name="Save auto-reload").click()
    expect(page.locator("#reload_amount-error")).to_have_text(
        "Choose an amount between $5.00 and $250.00."
    )

    page.get_by_label("Add this amount").fill("25")
    expect(page.get_by_label("Pay with")).to_have_value("tok_visa")
    page.get_by_role("button", name="Save auto-reload").click()
    expect(page.locator("#reload-state")).to_have_text(
        "On: when the balance drops below $10.00, $25.00 is added."
    )

    page.reload()
    expect(page.locator("#reload-state")).to_contain_text("$25.00 is added")
    page.get_by_role("button", name="Turn auto-reload off").click()
    expect(page.locator("#reload-state")).to_contain_text("Off.")
    expect(page.locator("#reload-state")).to_be_focused()


def test_another_shoppers_card_page_shows_nothing_of_it(page, shopper):
    ada, bob = shopper(), shopper("Bob", load_minor=4200)
    log_in(page, ada.email, ada.password)

    response = page.goto(f"/cards/{bob.card_id}")

    assert response.status == 404
    expect(page.locator("h1")).to_have_text("Card not found")
    expect(page.locator("main")).not_to_contain_text(bob.number[-4:])
    expect(page.locator("main")).not_to_contain_text("42")


@pytest.mark.parametrize("locale", ["en-US", "es-ES"])
def test_the_card_pages_pass_the_accessibility_check(new_context, shopper, till, locale):
    ada = shopper(load_minor=2000)
    till.sell(ada, "latte")
    page = log_in(new_context(locale=locale), ada.email, ada.password)

    card_page(page, ada.card_id)
    expect(history_lines(page)).to_have_count(2)
    check_accessibility(page)
    page.locator("#lost-start").click()
    expect(page.locator("#lost-confirm")).to_be_visible()
    page.locator("#reload-form button[type=submit]").click()
    expect(page.locator("#reload-form [role=alert]")).to_be_visible()
    check_accessibility(page)

    page.goto("/cards/add")
    page.locator("#add-form button[type=submit]").click()
    expect(page.locator("#add-form [role=alert]")).to_be_visible()
    check_accessibility(page)
    expected = "es" if locale.startswith("es") else "en"
    assert page.locator("html").get_attribute("lang") == expected


@pytest.mark.parametrize("width", [390, 1280])
def test_the_card_page_fits_a_phone_and_a_desktop(new_context, shopper, width):
    ada = shopper(load_minor=1000)
    page = log_in(new_context(viewport={"width": width, "height": 900}), ada.email, ada.password)

    card_page(page, ada.card_id)

    assert page.evaluate("document.documentElement.scrollWidth") <= width
    expect(page.get_by_role("button", name="Report this card lost")).to_be_visible()

"""The browser harness itself: the receipt's page that a sale's QR code opens, a sale at the
till reaching an open page live, and the accessibility check failing where it must."""

from playwright.sync_api import expect

from tests.web.browser import accessibility_violations, check_accessibility, log_in


def test_a_sale_at_the_till_has_a_receipt_page_that_passes_the_accessibility_check(
    page, shopper, till
):
    ada = shopper(load_minor=2000)
    sale = till.sell(ada, "latte", 2)

    page.goto(f"/r/{sale['receipt']['id']}")

    expect(page.locator("body")).to_contain_text(sale["number"])
    expect(page.locator("body")).to_contain_text("8.90")
    check_accessibility(page)


def test_the_accessibility_check_finds_serious_violations(page):
    page.set_content(
        '<html lang="en"><head><title>t</title></head><body><main>'
        '<img src="data:image/gif;base64,R0lGODlhAQABAAAAACw=">'
        '<p style="color:#777;background:#888">hard to read</p>'
        '<input type="text"></main></body></html>'
    )

    found = {v["id"] for v in accessibility_violations(page)}

    assert {"image-alt", "color-contrast", "label"} <= found


def test_a_sale_at_the_till_reaches_the_shoppers_open_home_page_live(page, shopper, till):
    ada = shopper(load_minor=2000)
    log_in(page, ada.email, ada.password)
    expect(page.locator("#cards .card-balance")).to_have_text("$20.00")
    expect(page.locator("#stars-count")).to_have_text("0")

    sale = till.sell(ada, "mug")

    expect(page.locator("#cards .card-balance")).to_have_text("$7.50")
    expect(page.locator("#stars-count")).to_have_text(str(sale["stars_earned"]))
    assert sale["stars_earned"] > 0

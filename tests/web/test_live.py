"""A page's live stream after its connection dropped: it comes back by itself and shows what
happened while it was away, without a reload."""

from __future__ import annotations

from playwright.sync_api import expect

from tests.live import ServerProcess
from tests.web.browser import TIMEOUT_MS, log_in


def test_after_the_server_was_away_the_home_page_shows_what_happened_meanwhile(
    browser, database_url, world, shopper
):
    away = ServerProcess(database_url)  # a server of this test's own, to stop and start
    away.start()
    context = browser.new_context(base_url=away.url)
    context.set_default_timeout(TIMEOUT_MS)
    try:
        ada = shopper(load_minor=2000)
        page = log_in(context, ada.email, ada.password)
        balance = page.locator("#cards .card-balance")
        expect(balance).to_have_text("$20.00")
        page.evaluate("window.notReloaded = true")

        away.stop()
        # Meanwhile a top-up lands through another server (the test's own app): its event
        # was never sent on the page's stream.
        world.top_up(ada.token, ada.card_id, 1500)
        away.start()  # the same port

        expect(balance).to_have_text("$35.00", timeout=20_000)
        expect(page.locator("#offline-banner")).to_be_hidden()
        assert page.evaluate("window.notReloaded") is True
    finally:
        context.close()
        away.stop()

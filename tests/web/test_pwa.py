"""The product page and the installable app in a real browser: the price as the shopper's
language writes it, the stores, the 404 page, all passing the accessibility check; the
service worker installs, and with the network gone the home page still opens, showing the
last-known balance under the offline banner."""

from __future__ import annotations

import re

from playwright.sync_api import expect

from tests.web.browser import check_accessibility, log_in

PHONE = {"width": 390, "height": 844}

# Run by page.evaluate, through the browser's debugging protocol: the page's CSP (no eval)
# does not stop them, where Playwright's wait_for_function would be stopped by it.
UNTIL_CONTROLLED = """async () => {
  const timeout = new Promise((resolve) => setTimeout(() => resolve(false), 15000));
  const controlled = (async () => {
    await navigator.serviceWorker.ready;
    if (!navigator.serviceWorker.controller) {
      await new Promise((resolve) =>
        navigator.serviceWorker.addEventListener("controllerchange", resolve, { once: true }));
    }
    return true;
  })();
  if (await Promise.race([controlled, timeout])) return "in control";
  // Not in control within 15 s: say where the worker got to, for whoever reads the failure.
  const registration = await navigator.serviceWorker.getRegistration();
  const state = (worker) => (worker ? worker.state : "none");
  return registration
    ? `not in control: installing ${state(registration.installing)}, waiting `
      + `${state(registration.waiting)}, active ${state(registration.active)}, controller `
      + `${state(navigator.serviceWorker.controller)}`
    : "not in control: no registration";
}"""
UNTIL_HOME_IS_KEPT = """async () => {
  const deadline = Date.now() + 10000;
  while (Date.now() < deadline) {
    for (const name of await caches.keys()) {
      if (name.includes("-pages-") && await (await caches.open(name)).match("/")) return true;
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  return false;
}"""
KEPT_URLS = """async () => {
  const all = [];
  for (const name of await caches.keys()) {
    for (const request of await (await caches.open(name)).keys()) all.push([name, request.url]);
  }
  return all;
}"""


def origin(page) -> str:
    return re.match(r"^https?://[^/]+", page.url).group(0)


def sell_it_at_the_worlds_store(world, short: str, in_stock: bool = True) -> None:
    r = world.call(
        "PUT", f"/v1/products/{world.product_ids[short]}/stores", world.admin,
        {"items": [{"store_id": world.store_id, "in_stock": in_stock}]}, key=False,
    )  # fmt: skip
    assert r.status_code == 200, r.json


def test_a_phone_in_spanish_shows_the_product_with_its_price_and_stores(new_context, world):
    sell_it_at_the_worlds_store(world, "mug", in_stock=False)
    page = new_context(locale="es-ES", viewport=PHONE).new_page()

    page.goto(f"/p/{world.skus['mug']}")

    expect(page.locator("html")).to_have_attribute("lang", "es")
    expect(page.locator("h1")).to_have_text(re.compile("Mug"))
    # 1250 cents, as Spanish writes dollars: "12,50 US$".
    expect(page.locator("#price")).to_have_text(re.compile(r"^12,50\s*US\$$"))
    expect(page.locator(".where")).to_contain_text("Dónde comprarlo")
    expect(page.locator(".store")).to_contain_text("Agotado")
    picture = page.locator(".product-picture")
    expect(picture).to_be_visible()
    assert page.evaluate("document.querySelector('.product-picture').naturalWidth") > 0
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    check_accessibility(page)


def test_the_desktop_product_page_in_english_passes_the_accessibility_check(page, world):
    sell_it_at_the_worlds_store(world, "latte")
    page.set_viewport_size({"width": 1280, "height": 800})

    page.goto(f"/p/{world.skus['latte']}")

    expect(page.locator("#price")).to_have_text("$4.45")
    expect(page.locator(".store")).to_contain_text("In stock")
    check_accessibility(page)


def test_an_unknown_product_shows_the_404_page_in_the_shoppers_language(new_context):
    page = new_context(locale="es-ES", viewport=PHONE).new_page()

    response = page.goto("/p/NO-SUCH-THING")

    assert response.status == 404
    expect(page.locator("h1")).to_have_text("No encontramos ese producto")
    expect(page.get_by_role("link", name="Ir a la página de inicio")).to_be_visible()
    check_accessibility(page)


def test_the_service_worker_installs_and_offline_home_shows_the_last_known_balance(
    context, shopper
):
    ada = shopper(name="Ada", load_minor=2_500)
    page = log_in(context, ada.email, ada.password)
    expect(page.locator(".card-balance").first).to_have_text("$25.00")

    # Installed, in control of the page, and the page kept for offline use.
    assert page.evaluate(UNTIL_CONTROLLED) == "in control"
    assert page.evaluate(UNTIL_HOME_IS_KEPT), "the home page was not kept for offline use"
    shell = {url for name, url in page.evaluate(KEPT_URLS) if "-static-" in name}
    for name in ("core.js", "app.css", "home.js", "icons/icon-192.png"):
        assert f"{origin(page)}/static/web/{name}" in shell

    context.set_offline(True)
    page.reload()

    expect(page.locator("#offline-banner")).to_be_visible()
    expect(page.locator("#offline-banner")).to_contain_text("You are offline")
    expect(page.locator(".card-balance").first).to_have_text("$25.00")
    check_accessibility(page)


def test_a_page_loaded_past_the_worker_asks_it_to_take_control(context, shopper):
    """A hard reload bypasses the service worker: the page loads with none in control, as a
    page still loading when the worker first took over does. It asks, and is taken."""
    ada = shopper(load_minor=1_000)
    page = log_in(context, ada.email, ada.password)
    assert page.evaluate(UNTIL_CONTROLLED) == "in control"
    cdp = context.new_cdp_session(page)
    with page.expect_navigation():
        cdp.send("Page.reload", {"ignoreCache": True})
    expect(page.locator("#cards")).to_have_attribute("aria-busy", "false")
    assert page.evaluate(UNTIL_CONTROLLED) == "in control"


def test_the_service_worker_keeps_no_api_answer(context, shopper):
    ada = shopper(load_minor=1_000)
    page = log_in(context, ada.email, ada.password)
    assert page.evaluate(UNTIL_CONTROLLED) == "in control"
    page.reload()
    expect(page.locator("#cards")).to_have_attribute("aria-busy", "false")

    kept = [url for _, url in page.evaluate(KEPT_URLS)]

    assert kept, "the service worker kept nothing"
    assert not [url for url in kept if "/v1/" in url]


def test_logging_out_forgets_the_pages_kept_for_offline(context, shopper):
    ada = shopper(load_minor=1_000)
    page = log_in(context, ada.email, ada.password)
    assert page.evaluate(UNTIL_CONTROLLED) == "in control"
    page.reload()
    expect(page.locator("#cards")).to_have_attribute("aria-busy", "false")

    page.locator("#logout").click()
    page.wait_for_url(re.compile(r"/login"))

    pages = [url for name, url in page.evaluate(KEPT_URLS) if "-pages-" in name]
    assert f"{origin(page)}/" not in pages

"""The staff analytics page in a real browser: staff log in on the website, see the kiosks'
taps as charts and tables, filter by store and date range, log out; it passes the
accessibility check on a phone and a desk, in English and Spanish."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from playwright.sync_api import expect

from app.auth.services import create_staff
from app.core.db import session
from app.core.settings import settings
from app.kiosk.models import KioskSession, KioskTap
from app.stores.models import Device
from tests.web.browser import check_accessibility

PHONE = {"width": 390, "height": 844}
DESK = {"width": 1280, "height": 900}
PASSWORD = "correct horse battery"


@pytest.fixture
def tapped(app, world):
    """An admin's email, and taps at the world's store: the latte three times yesterday, the
    mug once."""
    yesterday = datetime.now(UTC).replace(hour=10, minute=0, second=0, microsecond=0)
    yesterday -= timedelta(days=1)
    with app.app_context():
        s = session()
        email = f"{uuid.uuid4().hex[:8]}@staff.test"
        create_staff(s, settings(), email=email, name="Ana Admin", role="admin", password=PASSWORD)
        kiosk = Device(store_id=world.store_id, kind="kiosk", name="Kiosk",
                       secret_hash=uuid.uuid4().hex)  # fmt: skip
        s.add(kiosk)
        s.flush()
        for n, item in enumerate(["latte", "latte", "latte", "mug"]):
            when = yesterday + timedelta(minutes=n)
            kiosk_session = KioskSession(device_id=kiosk.id, store_id=world.store_id,
                                         started_at=when, last_tap_at=when)  # fmt: skip
            s.add(kiosk_session)
            s.flush()
            s.add(KioskTap(
                device_id=kiosk.id, store_id=world.store_id, tap_ref=uuid.uuid4().hex,
                tapped_at=when, received_at=when, kind="product",
                product_id=world.product_ids[item], kiosk_session_id=kiosk_session.id,
                detail="",
            ))  # fmt: skip
        s.commit()
    return email


def staff_log_in(page, email):
    page.goto("/staff/analytics")
    page.wait_for_url(re.compile(r"/staff/login\?next="))
    page.locator("#staff-login-form input[name=email]").fill(email)
    page.locator("#staff-login-form input[name=password]").fill(PASSWORD)
    page.locator("#staff-login-form button[type=submit]").click()
    page.wait_for_url(re.compile(r"/staff/analytics"))


def test_staff_log_in_see_the_taps_filter_them_and_log_out(new_context, world, tapped):
    page = new_context(viewport=DESK).new_page()
    page.goto("/staff/login")
    check_accessibility(page)
    staff_log_in(page, tapped)
    expect(page.locator("h1")).to_have_text("Kiosk tap analytics")
    top = page.locator("#chart-top")
    expect(top).to_be_visible()
    expect(top.locator("text.value").first).to_have_text("3")
    expect(page.locator("#chart-days rect.bar")).to_have_count(7)
    check_accessibility(page)

    # The world's store, and a range that ends before the taps: nothing.
    page.select_option("#store_id", str(world.store_id))
    two_weeks_ago = (datetime.now(UTC) - timedelta(days=14)).date()
    page.fill("#from", (two_weeks_ago - timedelta(days=3)).isoformat())
    page.fill("#to", two_weeks_ago.isoformat())
    page.get_by_role("button", name="Show").click()
    page.wait_for_url(re.compile(rf"store_id={world.store_id}.*to={two_weeks_ago}"))
    expect(page.locator("#chart-top")).to_contain_text("Nothing in this range.")
    expect(page.locator("#chart-days rect.bar")).to_have_count(4)

    page.get_by_role("button", name="Log out").click()
    page.wait_for_url(re.compile(r"/staff/login$"))
    page.goto("/staff/analytics")
    page.wait_for_url(re.compile(r"/staff/login\?next="))


def test_the_page_on_a_phone_in_spanish_passes_the_accessibility_check(new_context, tapped):
    page = new_context(locale="es-ES", viewport=PHONE).new_page()
    staff_log_in(page, tapped)
    expect(page.locator("html")).to_have_attribute("lang", "es")
    expect(page.locator("h1")).to_have_text("Estadísticas de toques en los quioscos")
    check_accessibility(page)
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"], f"the page scrolls sideways at {width}px"

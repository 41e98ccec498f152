"""Tap analytics on a known data set, and who may see them (``GET /v1/kiosk/analytics``,
the staff login on the website and the page ``/staff/analytics``)."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import select, update

from app.auth import browser
from app.auth.principal import Principal
from app.cards.models import Card
from app.catalog.services import set_stores
from app.core.db import write_kept_now
from app.core.settings import settings
from app.kiosk.models import KioskSession, KioskTap
from app.sales.models import Sale
from app.sales.services import make_sale

D1, D2 = date(2026, 11, 2), date(2026, 11, 3)
PASSWORD = "correct horse battery"


def at(day: date, hour: int) -> datetime:
    return datetime(day.year, day.month, day.day, hour, tzinfo=UTC)


class Known:
    """Two stores (A with the busy kiosk, B), four products, two known shoppers (X, Y)."""

    def __init__(self, app, world, db):
        self.db = db
        self.a, self.b = world.store(name="Store A"), world.store(name="Store B")
        self.kiosk = {s.id: world.device(s, "kiosk")[0] for s in (self.a, self.b)}
        self.till = {}
        for store in (self.a, self.b):
            device, _ = world.device(store, "pos")
            cashier = world.staff("cashier", store=store)
            self.till[store.id] = Principal(
                "cashier", staff_id=cashier.id, role="cashier", device_id=device.id,
                device_kind="pos", store_id=store.id,
            )  # fmt: skip
        self.p = {}
        for name in ("P1", "P2", "P3", "P4"):
            product = world.product(name=name, price=200)
            set_stores(db, product, {self.a.id: True, self.b.id: True})
            self.p[name] = product
        _, x = world.shopper("Xena")
        _, y = world.shopper("Yuri")
        self.x, self.y = x["id"], y["id"]
        with app.app_context():
            self.load()

    def card(self, customer_id):
        return self.db.scalar(select(Card.number).where(Card.customer_id == customer_id))

    def tap(self, store, name, when, customer_id=None):
        kiosk = self.kiosk[store.id]
        session = KioskSession(
            device_id=kiosk.id, store_id=store.id, customer_id=customer_id, started_at=when,
            last_tap_at=when,
        )  # fmt: skip
        self.db.add(session)
        self.db.flush()
        self.db.add(KioskTap(
            device_id=kiosk.id, store_id=store.id, tap_ref=uuid.uuid4().hex, tapped_at=when,
            received_at=when, kind="product", product_id=self.p[name].id, category=None,
            customer_id=customer_id, kiosk_session_id=session.id, detail="",
        ))  # fmt: skip
        self.db.flush()

    def sell(self, store, when, lines, customer_id=None):
        sale = make_sale(
            self.db,
            settings(),
            self.till[store.id],
            presented={"card_number": self.card(customer_id)} if customer_id else None,
            lines=[(self.p[name].sku, qty) for name, qty in lines],
            tenders=[("cash", 200 * sum(q for _, q in lines))],
        ).sale
        write_kept_now(self.db)  # its lines, read back by the analytics in this transaction
        self.db.execute(update(Sale).where(Sale.id == sale.id).values(created_at=when))

    def load(self):
        a, b = self.a, self.b
        # At A on D1: P1 three times (once by X), P2 once; on D2: P2 twice (once by X), P3
        # once (by Y). At B on D1: P3 twice. The day before the range: P4 five times at A.
        self.tap(a, "P1", at(D1, 10), self.x)
        self.tap(a, "P1", at(D1, 11))
        self.tap(a, "P1", at(D1, 12))
        self.tap(a, "P2", at(D1, 13))
        self.tap(a, "P2", at(D2, 9), self.x)
        self.tap(a, "P2", at(D2, 10))
        self.tap(a, "P3", at(D2, 12), self.y)
        self.tap(b, "P3", at(D1, 10))
        self.tap(b, "P3", at(D1, 11))
        for hour in range(5):
            self.tap(a, "P4", at(D1 - timedelta(days=1), hour + 8))
        # X bought P2 before tapping it, and P1 two days after tapping it (at B); Y buys P3
        # ten days after the tap. Someone buys five P4 and a P1 at A on D1.
        self.sell(a, at(D1, 8), [("P2", 1)], self.x)
        self.sell(b, at(D1 + timedelta(days=2), 9), [("P1", 1)], self.x)
        self.sell(b, at(D2 + timedelta(days=10), 9), [("P3", 1)], self.y)
        self.sell(a, at(D1, 15), [("P4", 5), ("P1", 1)])


@pytest.fixture
def known(app, world, db):
    return Known(app, world, db)


def ref(known, name):
    p = known.p[name]
    return {"id": p.id, "sku": p.sku, "name": name}


def get(api, token, **query):
    query = {"from": D1.isoformat(), "to": D2.isoformat(), **query}
    return api.get("/v1/kiosk/analytics", token=token, query_string=query)


def staff_token(api, staff):
    r = api.post(
        "/v1/auth/login",
        json={"email": staff.email, "password": PASSWORD, "account": "staff"},
        key=None,
    )
    assert r.status_code == 200, r.json
    return r.json["token"]


def test_the_analytics_of_one_store_match_the_known_data_exactly(api, world, known):
    r = get(api, world.admin_token(), store_id=known.a.id)
    assert r.status_code == 200, r.json
    store_a = {"id": known.a.id, "name": "Store A"}
    assert r.json == {
        "store": store_a,
        "from": "2026-11-02",
        "to": "2026-11-03",
        "days": 7,
        "taps_per_day": [{"day": "2026-11-02", "taps": 4}, {"day": "2026-11-03", "taps": 3}],
        "most_tapped": [
            {"store": store_a, "day": "2026-11-02", "products": [
                {"product": ref(known, "P1"), "taps": 3},
                {"product": ref(known, "P2"), "taps": 1},
            ]},
            {"store": store_a, "day": "2026-11-03", "products": [
                {"product": ref(known, "P2"), "taps": 2},
                {"product": ref(known, "P3"), "taps": 1},
            ]},
        ],
        "conversion": {
            "days": 7, "taps": 3, "converted": 1, "rate": 0.3333,
            "products": [
                {"product": ref(known, "P1"), "taps": 1, "converted": 1, "rate": 1.0},
                {"product": ref(known, "P2"), "taps": 1, "converted": 0, "rate": 0.0},
                {"product": ref(known, "P3"), "taps": 1, "converted": 0, "rate": 0.0},
            ],
        },
        "bought_rarely_tapped": [{"product": ref(known, "P4"), "taps": 0, "sold": 5}],
        "tapped_rarely_bought": [
            {"product": ref(known, "P3"), "taps": 1, "sold": 0},
            {"product": ref(known, "P1"), "taps": 3, "sold": 1},
            {"product": ref(known, "P2"), "taps": 3, "sold": 1},
        ],
    }  # fmt: skip


def test_a_longer_conversion_window_counts_the_later_purchase(api, world, known):
    r = get(api, world.admin_token(), store_id=known.a.id, days=14)
    assert (r.json["conversion"]["taps"], r.json["conversion"]["converted"]) == (3, 2)


def test_an_admin_sees_every_store_each_day_in_store_order(api, world, known):
    r = get(api, world.admin_token())
    assert r.status_code == 200, r.json
    assert r.json["store"] is None
    days = [
        (d["store"]["name"], d["day"], [(p["product"]["name"], p["taps"]) for p in d["products"]])
        for d in r.json["most_tapped"]
    ]
    assert days == [
        ("Store A", "2026-11-02", [("P1", 3), ("P2", 1)]),
        ("Store A", "2026-11-03", [("P2", 2), ("P3", 1)]),
        ("Store B", "2026-11-02", [("P3", 2)]),
    ]
    assert r.json["taps_per_day"] == [
        {"day": "2026-11-02", "taps": 6},
        {"day": "2026-11-03", "taps": 3},
    ]


def test_a_stores_staff_see_their_store_and_not_another(api, world, known):
    token = staff_token(api, world.staff("cashier", store=known.a, password=PASSWORD))
    mine = get(api, token)
    assert mine.status_code == 200 and mine.json["store"]["id"] == known.a.id
    assert get(api, token, store_id=known.a.id).status_code == 200
    other = get(api, token, store_id=known.b.id)
    assert other.status_code == 403 and other.json["error"]["code"] == "not_your_store"


def test_staff_of_no_store_who_are_not_admins_see_nothing(api, world, known, db):
    cashier = world.staff("cashier", store=known.a, password=PASSWORD)
    cashier.store_id = None
    db.flush()
    r = get(api, staff_token(api, cashier))
    assert r.status_code == 403 and r.json["error"]["code"] == "not_your_store"


def test_shoppers_devices_and_strangers_are_refused(api, world, known):
    shopper_token, _ = world.shopper()
    assert get(api, shopper_token).status_code == 403
    _, kiosk_secret = world.device(known.a, "kiosk")
    assert get(api, kiosk_secret).status_code == 403
    assert get(api, None).status_code == 401


@pytest.mark.parametrize(
    "query, field",
    [({"from": "2026-11-05", "to": "2026-11-01"}, "from"), ({"days": 0}, "days"),
     ({"from": "yesterday"}, "from"), ({"from": "2024-01-01", "to": "2026-01-01"}, "from")],
)  # fmt: skip
def test_bad_filters_get_a_clear_error(api, world, known, query, field):
    r = api.get("/v1/kiosk/analytics", token=world.admin_token(), query_string=query)
    assert r.status_code == 422, r.json
    assert field in str(r.json["error"]["details"])


# -- staff on the website ----------------------------------------------------------------------


def csrf_of(html: str) -> str:
    return re.search(r'<meta name="csrf-token" content="([^"]+)">', html).group(1)


def staff_logs_in_on_the_website(api, staff):
    csrf = csrf_of(api.client.get("/staff/login").text)
    r = api.post(
        "/staff/session",
        json={"email": staff.email, "password": PASSWORD},
        headers={"X-CSRF-Token": csrf},
        key=None,
    )
    assert r.status_code == 200, r.json
    assert r.json["redirect"] == "/staff/analytics"
    cookie = api.client.get_cookie(browser.SESSION_COOKIE)
    assert cookie.http_only and cookie.same_site == "Lax"
    return cookie.value


def test_staff_logged_in_on_the_website_read_the_analytics_with_the_cookie(api, world, known):
    staff_logs_in_on_the_website(api, world.staff("cashier", store=known.a, password=PASSWORD))
    r = api.get("/v1/kiosk/analytics", query_string={"from": "2026-11-02", "to": "2026-11-03"})
    assert r.status_code == 200, r.json
    assert r.json["store"]["id"] == known.a.id
    assert (
        api.get("/v1/kiosk/analytics", query_string={"store_id": known.b.id}).json["error"]["code"]
        == "not_your_store"
    )


def test_a_staff_cookie_is_never_a_shopper_nor_staff_elsewhere(api, world, known):
    admin = world.staff("admin", password=PASSWORD)
    staff_logs_in_on_the_website(api, admin)
    assert api.get("/v1/me").status_code == 401
    assert api.get("/v1/me/saved").status_code == 401
    home = api.client.get("/")
    assert home.status_code == 302 and home.headers["Location"].startswith("/login")
    # An admin's cookie is no admin token: other staff views do not take it.
    assert api.get("/v1/admin/webhooks").status_code == 401
    # With the token as a Bearer header, the same admin may.
    assert api.get("/v1/admin/webhooks", token=staff_token(api, admin)).status_code == 200


def test_the_staff_page_needs_a_staff_login(api, world, known):
    page = api.client.get("/staff/analytics")
    assert page.status_code == 302 and page.headers["Location"].startswith("/staff/login")
    token, _ = world.shopper()
    csrf = csrf_of(api.client.get("/login").text)
    # A shopper signed in on the website is no staff member either.
    api.client.set_cookie(browser.SESSION_COOKIE, token)
    assert api.client.get("/staff/analytics").status_code == 302
    assert csrf


def test_the_staff_page_shows_the_known_data(api, world, known):
    staff_logs_in_on_the_website(api, world.staff("cashier", store=known.a, password=PASSWORD))
    page = api.client.get("/staff/analytics?from=2026-11-02&to=2026-11-03")
    assert page.status_code == 200
    html = page.text
    assert 'id="chart-days"' in html and 'id="chart-top"' in html
    assert "1 of 3 taps by known shoppers" in html
    assert "Store B" not in html  # a cashier of A: no other store in the filter


def test_staff_log_out_with_the_pages_csrf_token_only_and_the_login_ends(api, world, known):
    staff_logs_in_on_the_website(api, world.staff("admin", password=PASSWORD))
    page = api.client.get("/staff/analytics")
    csrf = csrf_of(page.text)
    refused = api.post("/staff/logout", key=None)
    assert refused.status_code == 403 and refused.json["error"]["code"] == "csrf_failed"
    cross = api.post(
        "/staff/logout", key=None, headers={"X-CSRF-Token": csrf, "Sec-Fetch-Site": "cross-site"}
    )
    assert cross.status_code == 403
    token = api.client.get_cookie(browser.SESSION_COOKIE).value
    r = api.post("/staff/logout", key=None, headers={"X-CSRF-Token": csrf})
    assert r.status_code == 200 and r.json["redirect"] == "/staff/login"
    assert api.get("/v1/kiosk/analytics", token=token).status_code == 401

"""The website's pay and top-up pages through the Flask test client: the pay code endpoint a
page calls with the session cookie (``POST /pay/code``), the pictures it draws, and a code
it issued paying once at a till; the pages themselves need a login.

The browser's view of the same pages is tested in tests/web/test_pay.py.
"""

from __future__ import annotations

import base64
import re
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta

import pytest
import qrcode
import qrcode.constants
from barcode.charsets import code128
from sqlalchemy import func, select

from app.auth.browser import CSRF_HEADER, SESSION_COOKIE, csrf_for_session
from app.cards.models import PayCode
from app.core.types import utcnow
from app.web import barcodes

SVG = "{http://www.w3.org/2000/svg}"


def usd(amount):
    return {"amount": amount, "currency": "USD"}


class Browser:
    """A browser signed in to the website: the session cookie, and the page's CSRF token."""

    def __init__(self, app, db, token):
        self.client = app.test_client()
        self.client.set_cookie(SESSION_COOKIE, token)
        self.csrf = csrf_for_session(token)

    def pay_code(self, body=None, *, csrf="page", headers=None):
        sent = dict(headers or {})
        if csrf == "page":
            sent[CSRF_HEADER] = self.csrf
        elif csrf is not None:
            sent[CSRF_HEADER] = csrf
        return self.client.post("/pay/code", json={} if body is None else body, headers=sent)


@pytest.fixture
def shopper(world):
    """A signed-up shopper, their digital (primary) card loaded with 30.00 at a till, and the
    till's cashier: (token, card id, cashier token)."""
    token, me = world.shopper()
    _, _, cashier = world.till()
    card_id = me["cards"][0]["id"]
    world.load(card_id, 3_000, cashier)
    return token, card_id, cashier


@pytest.fixture
def browser(app, db, shopper):
    return Browser(app, db, shopper[0])


def pay_codes(db) -> int:
    return db.scalar(select(func.count()).select_from(PayCode))


def svg_of(data_url: str) -> ET.Element:
    prefix = "data:image/svg+xml;base64,"
    assert data_url.startswith(prefix)
    return ET.fromstring(base64.b64decode(data_url[len(prefix) :]))


def dark_runs(svg: ET.Element) -> list[tuple[int, int, int, int]]:
    """The black rectangles of a picture drawn by app.web.barcodes: (x, y, width, height)."""
    (path,) = svg.iter(f"{SVG}path")
    assert path.get("fill") == "#000"
    return [
        tuple(int(n) for n in m)
        for m in re.findall(r"M(\d+) (\d+)h(\d+)v(\d+)h-\d+z", path.get("d"))
    ]


def read_code128(svg: ET.Element) -> str:
    """The digits a scanner reads from a Code 128 barcode drawn as bars (code set C only)."""
    width = int(svg.get("viewBox").split()[2])
    modules = ["0"] * width
    for x, _y, w, _h in dark_runs(svg):
        modules[x : x + w] = ["1"] * w
    line = "".join(modules).strip("0")
    assert line.endswith(code128.STOP + "11"), "no stop pattern"
    symbols = [line[i : i + 11] for i in range(0, len(line) - 13, 11)]
    values = [code128.CODES.index(s) for s in symbols]
    start, *data, check = values
    assert start == code128.START_CODES["C"]
    assert check == (start + sum(i * v for i, v in enumerate(data, 1))) % 103, "bad checksum"
    return "".join(f"{v:02d}" for v in data)


def read_qr_modules(svg: ET.Element) -> list[list[bool]]:
    size = int(svg.get("viewBox").split()[2])
    grid = [[False] * size for _ in range(size)]
    for x, y, w, h in dark_runs(svg):
        for row in range(y, y + h):
            for col in range(x, x + w):
                grid[row][col] = True
    return grid


# -- the pictures ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "code", ["000000000000", "123456789012", "999999999999", "990000000001", "000123000456"]
)
def test_the_barcode_reads_back_as_the_pay_code(code):
    assert read_code128(ET.fromstring(barcodes.code128_svg(code))) == code


def test_the_qr_code_holds_the_pay_codes_modules_with_a_quiet_zone(app):
    code = "123456789012"
    expected = qrcode.QRCode(error_correction=qrcode.constants.ERROR_CORRECT_M, border=4)
    expected.add_data(code)
    expected.make(fit=True)
    grid = read_qr_modules(ET.fromstring(barcodes.qr_svg(code)))
    assert grid == expected.get_matrix()
    assert not any(grid[0]) and not any(row[0] for row in grid)


def test_the_pictures_are_black_on_white_and_nothing_in_them_runs():
    for svg in (barcodes.qr_svg("123456789012"), barcodes.code128_svg("123456789012")):
        root = ET.fromstring(svg)
        assert [e.tag.removeprefix(SVG) for e in root.iter()] == ["svg", "rect", "path"]
        assert root.find(f"{SVG}rect").get("fill") == "#fff"


# -- the code endpoint -----------------------------------------------------------------------


def test_the_page_gets_a_code_for_the_primary_card_with_its_balance_and_two_pictures(
    browser, shopper
):
    _, card_id, _ = shopper
    before = utcnow()
    response = browser.pay_code()
    assert response.status_code == 200, response.json
    body = response.json
    assert re.fullmatch(r"\d{12}", body["code"])
    assert body["card_id"] == card_id
    assert body["balance"] == usd(3_000)
    expires_at = datetime.fromisoformat(body["expires_at"]).astimezone(UTC)
    assert before + timedelta(seconds=30) < expires_at <= utcnow() + timedelta(seconds=60)
    assert 30 <= body["expires_in_s"] <= 60
    assert read_code128(svg_of(body["barcode"])) == body["code"]
    assert read_qr_modules(svg_of(body["qr"]))  # a picture with modules in it
    assert response.headers["Cache-Control"] == "no-store"


def test_the_page_may_name_one_of_the_shoppers_own_cards(browser, shopper):
    _, card_id, _ = shopper
    response = browser.pay_code({"card_id": card_id})
    assert response.status_code == 200, response.json
    assert response.json["card_id"] == card_id


def test_a_code_from_the_page_pays_once_at_a_till(api, world, browser, shopper):
    token, card_id, cashier = shopper
    # The till scans the barcode the page shows.
    code = read_code128(svg_of(browser.pay_code().json["barcode"]))
    product = world.product(price=450)

    def sale():
        return api.post(
            "/v1/sales",
            token=cashier,
            json={
                "customer": {"pay_code": code},
                "lines": [{"sku": product.sku, "quantity": 1}],
                "tenders": [{"type": "card_balance", "amount": usd(450)}],
            },
        )

    paid = sale()
    assert paid.status_code == 201, paid.json
    assert (paid.json["card_id"], paid.json["card_balance"]) == (card_id, usd(2_550))
    again = sale()
    assert again.status_code == 422
    assert again.json["error"]["code"] == "pay_code_invalid"
    assert api.get(f"/v1/cards/{card_id}", token=token).json["balance"] == usd(2_550)


def test_a_cookie_request_without_the_pages_csrf_token_is_refused_and_issues_nothing(db, browser):
    before = pay_codes(db)
    for csrf in (None, "", "not-the-token", csrf_for_session("oct_another-session")):
        response = browser.pay_code(csrf=csrf)
        assert response.status_code == 403, (csrf, response.json)
        assert response.json["error"]["code"] == "csrf_failed"
        assert "code" not in response.json
    assert pay_codes(db) == before


def test_a_cross_site_request_is_refused_even_with_the_token(db, browser):
    before = pay_codes(db)
    response = browser.pay_code(headers={"Sec-Fetch-Site": "cross-site"})
    assert response.status_code == 403
    assert response.json["error"]["code"] == "csrf_failed"
    assert pay_codes(db) == before


def test_another_shoppers_card_is_not_found_and_issues_nothing(db, world, browser):
    _, other = world.shopper("Grace")
    before = pay_codes(db)
    response = browser.pay_code({"card_id": other["cards"][0]["id"]})
    assert response.status_code == 404
    assert response.json["error"]["code"] == "card_not_found"
    assert "code" not in response.json
    assert pay_codes(db) == before


def test_without_a_login_there_is_no_code(app, db):
    response = app.test_client().post("/pay/code", json={})
    assert response.status_code == 401
    assert response.json["error"]["code"] == "unauthenticated"


@pytest.mark.parametrize(
    "body", [{"card_id": "1"}, {"card_id": 0}, {"card_id": 1.5}, {"card": 1}, []]
)
def test_a_bad_request_is_refused_and_issues_nothing(db, browser, body):
    before = pay_codes(db)
    response = browser.pay_code(body)
    assert response.status_code in (400, 422), response.json
    assert pay_codes(db) == before


def test_a_frozen_primary_card_gets_no_code(api, db, browser, shopper):
    token, card_id, _ = shopper
    lost = api.post(f"/v1/cards/{card_id}/report-lost", token=token)
    assert lost.status_code == 200, lost.json
    refused = browser.pay_code({"card_id": card_id})
    assert refused.status_code == 409
    assert refused.json["error"]["code"] == "card_frozen"
    # The replacement card is the one to pay with now.
    replacement = lost.json["replacement_card"]["id"]
    assert browser.pay_code({"card_id": replacement}).json["card_id"] == replacement


# -- the pages -------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/pay", "/cards/1/top-up"])
def test_the_pages_send_a_visitor_to_the_login_first(app, db, path):
    response = app.test_client().get(path)
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/login?next=")


def test_the_top_up_page_offers_the_test_cards_and_the_limits(app, browser, shopper):
    _, card_id, _ = shopper
    response = browser.client.get(f"/cards/{card_id}/top-up")
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    for token in ("tok_visa", "tok_chargeDeclined", "tok_timeout"):
        assert f'value="{token}"' in page
    data = re.search(r'<script type="application/json" id="topup-data">(.*?)</script>', page)
    assert data is not None
    cfg = app.config
    assert f'"minimum": {cfg["TOPUP_MIN_MINOR"]}' in data.group(1)
    assert f'"maximum": {cfg["TOPUP_MAX_MINOR"]}' in data.group(1)


def test_the_pay_page_carries_no_code_until_its_script_asks(browser):
    response = browser.client.get("/pay")
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    assert "data:image" not in response.get_data(as_text=True)

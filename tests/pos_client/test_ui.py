"""The cashier's terminal screen, driven as a cashier drives it: Textual's test driver renders
the real screens and presses the keys, the real Till talks to a live server process, and what
the tests read is the rendered screen itself.

With OMNICARD_POS_SCREENSHOTS set to a folder, the sale and tender screens are also saved
there as SVG (scripts/pos-screenshots turns them into docs/pos-sale.png and docs/pos-tender.png).
"""

from __future__ import annotations

import html
import os
import re
import socket
import time

import pytest

from pos_client import config as till_config
from pos_client.till import Tender, Till
from pos_client.ui import TillApp
from pos_client.ui.desk import RefundScreen
from pos_client.ui.sale import SaleScreen
from pos_client.ui.tender import TenderScreen

SIZE = (100, 32)
#: Rich draws a terminal cell 12.2 units wide in its SVG (0.61 of its 20-unit font).
CELL_W = 12.2
_TEXT = re.compile(
    r'<text class="[^"]*" x="([\d.]+)" y="[\d.]+" textLength="[\d.]+" '
    r'clip-path="url\(#[\w-]+-line-(\d+)\)">([^<]*)</text>'
)


def screen_text(app) -> str:
    """The screen as the cashier sees it, one string per terminal row, from the rendering."""
    rows: dict[int, list[str]] = {}
    for x, row, body in _TEXT.findall(app.export_screenshot()):
        line = rows.setdefault(int(row), [" "] * SIZE[0])
        column = round(float(x) / CELL_W)
        for i, char in enumerate(html.unescape(body).replace("\xa0", " ")):
            if column + i < len(line):
                line[column + i] = char
    return "\n".join("".join(rows.get(r, [])).rstrip() for r in range(max(rows, default=0) + 1))


async def settle(pilot, timeout_s: float = 15.0) -> None:
    """Until the Till's calls the keys started (some start as a screen mounts) have answered
    and the screen has redrawn."""
    deadline = time.monotonic() + timeout_s
    await pilot.pause()
    while True:
        await pilot.app.workers.wait_for_complete()
        await pilot.pause()
        if not any(getattr(screen, "busy", False) for screen in pilot.app.screen_stack):
            return
        assert time.monotonic() < deadline, "the till did not answer"


async def type_in(pilot, text: str) -> None:
    """Typed as a cashier (or a keyboard-wedge scanner) types: a key per character, Enter."""
    await pilot.press(*text, "enter")
    await settle(pilot)


async def until_matches(pilot, pattern: str, timeout_s: float = 10.0) -> str:
    """Bounded wait for the screen to redraw into a row matching ``pattern``."""
    deadline = time.monotonic() + timeout_s
    while True:
        shown = screen_text(pilot.app)
        if re.search(pattern, shown):
            return shown
        assert time.monotonic() < deadline, f"{pattern!r} never showed:\n{shown}"
        await pilot.pause(0.05)


async def until_shown(pilot, text: str, timeout_s: float = 10.0) -> str:
    """Bounded wait for something another process causes (no key is pressed meanwhile)."""
    deadline = time.monotonic() + timeout_s
    while True:
        shown = screen_text(pilot.app)
        if text in shown:
            return shown
        assert time.monotonic() < deadline, f"{text!r} never showed:\n{shown}"
        await pilot.pause(0.05)


def screenshot(app, name: str) -> None:
    folder = os.environ.get("OMNICARD_POS_SCREENSHOTS")
    if folder:
        app.save_screenshot(f"{name}.svg", folder)


def money_text(minor: int) -> str:
    return f"${minor // 100}.{minor % 100:02d}"


@pytest.fixture
def till(config_path):
    till = Till(till_config.load(config_path), hardware=False)
    till.start()
    yield till
    till.stop()


@pytest.fixture
def open_till(world, till):
    """A till with its cashier signed in and the shift open, before the screen starts."""
    till.sign_in(world.staff_code, world.pin)
    till.open_shift(10_000)
    return till


@pytest.mark.asyncio
async def test_a_sale_paid_from_the_card_with_a_top_up_from_the_phone_shown_live(world, till):
    ada = world.shopper(load_minor=2000)
    latte, mug = 445, 1250
    app = TillApp(till)
    async with app.run_test(size=SIZE) as pilot:
        assert "sign in" in screen_text(app)
        screenshot(app, "pos-sign-in")
        await type_in(pilot, world.staff_code)
        await type_in(pilot, world.pin)
        shown = screen_text(app)
        assert "Open the shift" in shown and world.pin not in shown  # the PIN stays masked

        await type_in(pilot, "100")
        assert isinstance(app.screen, SaleScreen)
        assert f"Grace · shift {till.shift['id']}" in screen_text(app)

        # Scanned as a keyboard-wedge scanner types: the digits, then Enter.
        await type_in(pilot, world.barcodes["latte"])
        await type_in(pilot, world.barcodes["mug"])
        await type_in(pilot, ada.number)
        shown = screen_text(app)
        assert re.search(r"Latte \w+ +1 +\$4\.45 +\$4\.45", shown), shown
        assert re.search(r"Mug \w+ +1 +\$12\.50 +\$12\.50", shown), shown
        assert f"TOTAL {money_text(latte + mug)}" in shown
        assert f"•••• {ada.number[-4:]}" in shown and "Balance $20.00" in shown

        # Ada tops up from her phone while she waits: no key is pressed, the panel follows.
        world.top_up(ada.token, ada.card_id, 1000, via_server=True)
        shown = await until_shown(pilot, "Balance $30.00")
        screenshot(app, "pos-sale")

        await pilot.press("f2")
        assert isinstance(app.screen, TenderScreen)
        assert f"TOTAL {money_text(latte + mug)}" in screen_text(app)
        await pilot.press("f2")  # the card balance pays what remains
        await settle(pilot)
        shown = screen_text(app)
        sale_number = till.last_receipt["number"]
        assert f"Paid {sale_number}. Receipt printed." in shown, shown
        assert f"Balance {money_text(3000 - latte - mug)}" in shown

        await pilot.press("enter")  # next sale
        await pilot.pause()
        assert isinstance(app.screen, SaleScreen)
        assert "TOTAL $0.00" in screen_text(app)

    printed = (till.config.state_dir / "receipts.bin").read_bytes()
    assert sale_number.encode() in printed
    assert world.sale_count() == 1
    assert world.owned(ada.card_id) == 3000 - latte - mug
    world.verify_ledger()


@pytest.mark.asyncio
async def test_too_low_a_balance_offers_the_balance_from_the_card_and_the_rest_in_cash(
    world, open_till
):
    bo = world.shopper(load_minor=1000, name="Bo")
    total = 445 + 1250
    app = TillApp(open_till)
    async with app.run_test(size=SIZE) as pilot:
        assert isinstance(app.screen, SaleScreen)  # signed in with a shift: straight to selling
        await type_in(pilot, world.barcodes["latte"])
        await type_in(pilot, world.barcodes["mug"])
        await type_in(pilot, bo.number)
        await pilot.press("f2", "f2")
        await settle(pilot)
        shown = screen_text(app)
        assert "Not enough on the card: its balance is $10.00." in shown, shown
        assert "F6: pay $10.00 from the card" in shown
        assert world.sale_count() == 0 and world.owned(bo.card_id) == 1000

        await pilot.press("f6")  # $10.00 from the card; the rest remains to pay
        await pilot.pause()
        assert "PAID $10.00   REMAINING $6.95" in screen_text(app)
        # The amount field holds what remains, selected: the $20 note handed over replaces it,
        # and Enter takes it as cash.
        await type_in(pilot, "20")
        shown = screen_text(app)
        assert "PAID $16.95 — CHANGE" in shown, shown
        assert app.screen.result.change_minor == 2000 - (total - 1000)
        # The shopper panel after the sale: nothing held anywhere, the Stars it earned.
        shopper = open_till.shopper
        assert (shopper.balance_minor, shopper.held_minor) == (0, 0)
        earned = app.screen.result.sale["stars_earned"]
        assert earned > 0 and shopper.stars == earned  # Bo had none before
        screenshot(app, "pos-tender")

    (sale,) = world.sales()
    assert sale[1] == total and world.owned(bo.card_id) == 0
    world.verify_ledger()


@pytest.mark.asyncio
async def test_a_refund_of_the_chosen_line_of_one_of_the_days_sales(world, open_till):
    cy = world.shopper(load_minor=3000, name="Cy")
    open_till.scan(world.barcodes["latte"])
    open_till.scan(world.barcodes["mug"])
    open_till.scan(cy.number)
    sold = open_till.pay([Tender("card_balance", None)]).sale
    assert world.owned(cy.card_id) == 3000 - 1695

    app = TillApp(open_till)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f9")
        await settle(pilot)
        assert isinstance(app.screen, RefundScreen)
        assert sold["number"] in screen_text(app)
        await pilot.press("enter")  # open the sale
        await pilot.pause()
        await pilot.press("down", "space")  # mark the mug
        await pilot.pause()
        assert re.search(r"✔ +Mug", screen_text(app)), screen_text(app)
        screenshot(app, "pos-refund")
        await pilot.press("f3")
        await settle(pilot)
        assert isinstance(app.screen, SaleScreen)
        assert f"Refunded $12.50 of {sold['number']}. Receipt printed." in screen_text(app)

    assert world.owned(cy.card_id) == 3000 - 445
    refund_number = open_till.last_receipt["number"]
    assert refund_number.startswith("R-")
    assert refund_number.encode() in (open_till.config.state_dir / "receipts.bin").read_bytes()
    world.verify_ledger()


@pytest.mark.asyncio
async def test_a_card_frozen_while_its_shopper_waits_is_refused_and_the_screen_says_so(
    world, open_till
):
    di = world.shopper(load_minor=3000, name="Di")
    app = TillApp(open_till)
    async with app.run_test(size=SIZE) as pilot:
        await type_in(pilot, world.barcodes["latte"])
        await type_in(pilot, di.number)
        lost = world.call("POST", f"/v1/cards/{di.card_id}/report-lost", di.token)
        assert lost.status_code == 200, lost.json
        await pilot.press("f2", "f2")
        await settle(pilot)
        shown = screen_text(app)
        assert "This card is FROZEN: it cannot pay. Take cash or a bank card." in shown, shown
        assert "REMAINING $4.45" in shown  # the card's tender is dropped; the sale waits
        assert isinstance(app.screen, TenderScreen) and app.screen.tenders == []
    assert world.sale_count() == 0


@pytest.mark.asyncio
async def test_a_printer_that_refuses_leaves_the_sale_made_and_the_reprint_key_says_why(
    world, tmp_path
):
    with socket.socket() as closed:  # a port nothing listens on: the printer is off
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    path = tmp_path / "pos.toml"
    path.write_text(world.config_text(tmp_path / "state", printer=f"network:127.0.0.1:{port}"))
    till = Till(till_config.load(path), hardware=False)
    till.start()
    try:
        till.sign_in(world.staff_code, world.pin)
        till.open_shift(10_000)
        app = TillApp(till)
        async with app.run_test(size=SIZE) as pilot:
            await type_in(pilot, world.barcodes["mug"])
            await pilot.press("f2")
            await type_in(pilot, "20")  # cash
            shown = screen_text(app)
            assert "Receipt NOT printed" in shown and "F10 reprints." in shown, shown
            assert "CHANGE" in shown
            await pilot.press("f10")
            await settle(pilot)
            assert "The receipt was not printed" in screen_text(app)
    finally:
        till.stop()
    assert world.sale_count() == 1


@pytest.mark.asyncio
async def test_a_top_up_in_cash_at_the_till(world, open_till):
    ed = world.shopper(load_minor=500, name="Ed")
    app = TillApp(open_till)
    async with app.run_test(size=SIZE) as pilot:
        await type_in(pilot, ed.number)
        await pilot.press("f6")
        await pilot.pause()
        assert "Balance now $5.00" in screen_text(app)
        screenshot(app, "pos-top-up")
        await pilot.press(*"15", "f3")
        await settle(pilot)
        assert isinstance(app.screen, SaleScreen)
        assert f"Loaded $15.00 onto •••• {ed.number[-4:]}." in screen_text(app)
        # What the card can pay here: its balance and this till's allowance of it.
        assert open_till.shopper.balance_minor == 2000
    assert world.owned(ed.card_id) == 2000
    world.verify_ledger()


@pytest.mark.asyncio
async def test_binding_an_nfc_tag_with_the_shoppers_pay_code(world, open_till):
    fay = world.shopper(load_minor=500, name="Fay")
    code = world.call("POST", "/v1/me/pay-codes", fay.token, {}).json["code"]
    app = TillApp(open_till)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f8")
        await type_in(pilot, "04a1b2c3d4e5f6")
        await type_in(pilot, code)
        assert "NFC card bound." in screen_text(app)
    assert open_till.identify(nfc_uid="04A1B2C3D4E5F6").card_id == fay.card_id


@pytest.mark.asyncio
async def test_closing_the_shift_shows_the_report_then_signs_out(world, open_till):
    open_till.scan(world.barcodes["latte"])
    open_till.pay([Tender("cash", None, given_minor=500)])
    app = TillApp(open_till)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f11")
        await type_in(pilot, "104.45")
        shown = screen_text(app)
        assert re.search(r"Expected cash +\$104\.45", shown), shown
        assert re.search(r"Difference +\$0\.00", shown)
        assert "Shift closed; the report is printed." in shown
        screenshot(app, "pos-close-shift")
        await pilot.press("enter")
        await pilot.pause()
        assert "sign in" in screen_text(app)
    assert open_till.cashier is None


@pytest.mark.asyncio
async def test_the_sale_screen_keeps_every_key_and_the_shift_in_sight_at_80_by_24(world, open_till):
    app = TillApp(open_till)
    async with app.run_test(size=(80, 24)) as pilot:
        await type_in(pilot, world.barcodes["latte"])
        shown = screen_text(app)
        for key in ("F2  Pay", "F4  Qty", "F9  Refund", "F11  Close shift", "F12  Sign out"):
            assert key in shown, shown
        assert f"shift {open_till.shift['id']}" in shown and "TOTAL $4.45" in shown


@pytest.mark.asyncio
async def test_a_wrong_pin_is_refused_on_the_screen_and_typed_again(world, till):
    app = TillApp(till)
    async with app.run_test(size=SIZE) as pilot:
        await type_in(pilot, world.staff_code)
        await type_in(pilot, "1111")
        shown = screen_text(app)
        assert "sign in" in shown and "Open the shift" not in shown
        assert app.screen.query_one("#pin").value == "" and app.screen.notice.has_class(
            "notice-error"
        )
        await type_in(pilot, world.pin)
        assert "Open the shift" in screen_text(app)
    assert till.cashier is not None


@pytest.mark.asyncio
async def test_a_search_picks_from_a_list_and_quantities_change_by_key(world, open_till):
    app = TillApp(open_till)
    suffix = world.skus["bagel"].split("-")[1]  # each product of this world carries it
    async with app.run_test(size=SIZE) as pilot:
        await type_in(pilot, suffix)
        shown = await until_shown(pilot, f"Mug {suffix}")  # the pick list
        assert f"Bagel {suffix}" in shown
        while app.screen.query_one("OptionList").highlighted_option.id != world.skus["bagel"]:
            await pilot.press("down")
        await pilot.press("enter")
        await settle(pilot)
        await pilot.press("f4")
        await pilot.pause()
        await type_in(pilot, "3")  # replaces the 1 shown
        await until_matches(pilot, rf"Bagel {suffix} +3 +\$3\.00 +\$9\.00")
        await pilot.press("f5")  # remove the line
        await settle(pilot)
        await until_shown(pilot, "TOTAL $0.00")
        # Digits that are no whole barcode, card or pay code are searched for (a barcode's
        # start read off a damaged label, or a SKU's number).
        await type_in(pilot, world.barcodes["latte"][:7])
        await until_matches(pilot, rf"Latte {suffix} +1 +\$4\.45")
        await pilot.press("f5")
        await settle(pilot)
    assert open_till.sale.lines == []

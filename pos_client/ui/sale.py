"""The sale: the lines, the total, the scan/search input and the shopper, live."""

from __future__ import annotations

from rich.text import Text
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import DataTable, Digits, Input, Label, OptionList, Static
from textual.widgets.option_list import Option

from pos_client.ui.base import TillDialog, TillScreen
from pos_client.ui.money import money
from pos_client.ui.widgets import ShopperPanel


def price_of(product: dict) -> int | None:
    price = product.get("price")
    return price.get("amount") if isinstance(price, dict) else product.get("price_minor")


class SaleScreen(TillScreen):
    """Everything a cashier does between two shoppers, one key each."""

    BINDINGS = [
        Binding("f2", "pay", "Pay"),
        Binding("f3", "shopper", "Shopper"),
        Binding("f4", "quantity", "Qty"),
        Binding("f5", "remove", "Remove"),
        Binding("f6", "top_up", "Top-up"),
        Binding("f7", "gift_card", "Gift card"),
        Binding("f8", "bind_nfc", "Bind NFC"),
        Binding("f9", "refund", "Refund"),
        Binding("f10", "reprint", "Reprint"),
        Binding("f11", "close_shift", "Close shift"),
        Binding("f12", "sign_out", "Sign out"),
        Binding("ctrl+n", "new_sale", "New sale", key_display="^N"),
        Binding("up", "cursor(-1)", show=False),
        Binding("down", "cursor(1)", show=False),
    ]

    #: After a product is added, the cursor goes to its line (the one the cashier may change).
    follow_last = False

    def compose(self):
        yield from self.compose_frame()
        with Horizontal(id="main"):
            with Vertical(id="left"):
                yield DataTable(id="lines", cursor_type="row", zebra_stripes=True)
                with Horizontal(id="totals"):
                    yield Static(id="total")
                    yield Digits(id="total_big")
            yield ShopperPanel(id="shopper")
        yield Input(id="scan", placeholder="Scan or type a barcode, card number, SKU or name")
        yield from self.compose_footer()

    def on_mount(self) -> None:
        table = self.query_one("#lines", DataTable)
        table.add_column("Item", key="name")
        table.add_column("Qty", key="qty")
        table.add_column("Price", key="price")
        table.add_column("Total", key="total")
        self.query_one("#shopper").border_title = "Shopper"
        self.query_one("#scan", Input).focus()
        self.refresh_from_till()

    # -- what the till says -------------------------------------------------------------------
    def refresh_from_till(self) -> None:
        super().refresh_from_till()
        till = self.till
        currency = getattr(till, "currency", "USD")
        table = self.query_one("#lines", DataTable)
        row = table.cursor_row
        table.clear()
        lines = list(till.sale.lines)
        for line in lines:
            table.add_row(
                line.name,
                Text(str(line.quantity), justify="right"),
                Text(money(line.unit_price_minor, currency), justify="right"),
                Text(money(line.unit_price_minor * line.quantity, currency), justify="right"),
            )
        if lines:
            row = len(lines) - 1 if self.follow_last else min(max(row, 0), len(lines) - 1)
            table.move_cursor(row=row)
        self.follow_last = False
        items = sum(line.quantity for line in lines)
        total = Text(f"{items} item{'s' if items != 1 else ''}   ", style="dim")
        total.append(f"TOTAL {money(till.sale.total_minor, currency)}", style="bold")
        self.query_one("#total", Static).update(total)
        # Big, for the shopper across the counter as much as for the cashier.
        self.query_one("#total_big", Digits).update(
            money(till.sale.total_minor, currency).replace(",", "")
        )
        self.query_one(ShopperPanel).show(till.shopper, currency)

    # -- the scan/search input ----------------------------------------------------------------
    def on_input_submitted(self, event: Input.Submitted) -> None:
        text = event.value.strip()
        event.input.value = ""
        if not text:
            return
        if text.isdigit() and len(text) in (8, 12, 13, 16):  # a barcode, pay code or card
            self.call(self.till.scan, text, done=self._scanned, working=f"Looking up {text}…")
        else:
            self.call(
                self.till.search,
                text,
                done=lambda found: self._found(text, found),
                working=f"Searching {text}…",
            )

    def _scanned(self, kind) -> None:
        if kind == "product":
            self._last_line()
        elif self.till.shopper is not None:
            shopper = self.till.shopper
            who = f"{shopper.first_name} " if shopper.first_name else ""
            self.say(f"Shopper: {who}•••• {shopper.last4}", "ok")

    def _found(self, text: str, products: list[dict]) -> None:
        exact = [p for p in products if str(p.get("sku", "")).lower() == text.lower()]
        if len(exact) == 1 or len(products) == 1:
            self._add((exact or products)[0]["sku"])
        elif not products:
            self.say(f"No product matches “{text}”.", "error")
        else:
            self.app.push_screen(PickProduct(products, text), self._picked)

    def _picked(self, sku: str | None) -> None:
        if sku:
            self._add(sku)

    def _add(self, sku: str) -> None:
        self.call(self.till.add, sku, done=lambda _: self._last_line())

    def _last_line(self) -> None:
        self.follow_last = True

    # -- keys -----------------------------------------------------------------------------------
    def _selected(self) -> int | None:
        table = self.query_one("#lines", DataTable)
        if not table.row_count:
            self.say("The sale has no lines yet.", "error")
            return None
        return table.cursor_row

    def action_cursor(self, step: int) -> None:
        table = self.query_one("#lines", DataTable)
        if table.row_count:
            table.move_cursor(row=min(max(table.cursor_row + step, 0), table.row_count - 1))

    def action_pay(self) -> None:
        if not self.till.sale.lines:
            self.say("Nothing to pay yet: scan a product first.", "error")
            return
        from pos_client.ui.tender import TenderScreen

        self.app.push_screen(TenderScreen())

    def action_shopper(self) -> None:
        self.app.push_screen(ShopperDialog())

    def action_quantity(self) -> None:
        index = self._selected()
        if index is None:
            return
        line = self.till.sale.lines[index]
        self.app.push_screen(
            QuantityDialog(line.name, line.quantity), lambda q: self._set_quantity(index, q)
        )

    def _set_quantity(self, index: int, quantity: int | None) -> None:
        if quantity is not None:
            self.call(self.till.set_quantity, index, quantity)

    def action_remove(self) -> None:
        index = self._selected()
        if index is not None:
            self.call(self.till.remove_line, index)

    def action_new_sale(self) -> None:
        self.call(self.till.clear_sale, done=lambda _: self.say("New sale.", "ok"))

    def action_top_up(self) -> None:
        from pos_client.ui.desk import TopUpDialog

        if self.till.shopper is None:
            self.say("Identify the card to top up first (tap, scan or F3).", "error")
            return
        self.app.push_screen(TopUpDialog())

    def action_gift_card(self) -> None:
        from pos_client.ui.desk import GiftCardDialog

        self.app.push_screen(GiftCardDialog())

    def action_bind_nfc(self) -> None:
        from pos_client.ui.desk import BindNfcDialog

        self.app.push_screen(BindNfcDialog())

    def action_refund(self) -> None:
        from pos_client.ui.desk import RefundScreen

        self.app.push_screen(RefundScreen())

    def action_reprint(self) -> None:
        if getattr(self.till, "last_receipt", None) is None:
            self.say("No receipt to reprint yet: F9 lists the day's sales.", "error")
            return
        self.call(
            self.till.reprint,
            done=lambda _: self.say("Receipt reprinted.", "ok"),
            working="Printing…",
        )

    def action_close_shift(self) -> None:
        from pos_client.ui.desk import CloseShiftScreen

        if self.till.sale.lines:
            self.say("Finish or clear (^N) the sale before closing the shift.", "error")
            return
        self.app.push_screen(CloseShiftScreen())

    def action_sign_out(self) -> None:
        self.call(self.till.sign_out, done=lambda _: self.app.show_sign_in())


class PickProduct(TillDialog):
    """The products a search found; Enter adds the highlighted one."""

    def __init__(self, products: list[dict], text: str) -> None:
        super().__init__()
        self.products = products
        self.text = text

    def compose(self):
        with Vertical(classes="dialog"):
            yield Static(f"Products matching “{self.text}”", classes="title")
            yield OptionList(
                *(
                    Option(
                        f"{p.get('name', p['sku'])}  {money(price_of(p))}  [{p['sku']}]",
                        id=p["sku"],
                    )
                    for p in self.products[:50]
                )
            )
            yield from self.compose_footer()

    def on_mount(self) -> None:
        self.query_one(OptionList).focus()

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(event.option.id)


class QuantityDialog(TillDialog):
    def __init__(self, name: str, quantity: int) -> None:
        super().__init__()
        self.item = name
        self.quantity = quantity

    def compose(self):
        with Vertical(classes="dialog"):
            yield Static(f"Quantity of {self.item}", classes="title")
            yield Input(str(self.quantity), id="quantity", type="integer")
            yield Label("0 removes the line.", classes="hint")
            yield from self.compose_footer()

    def on_mount(self) -> None:
        field = self.query_one("#quantity", Input)
        field.focus()
        field.select_all()  # the new quantity replaces the old one as it is typed

    def on_input_submitted(self, event: Input.Submitted) -> None:
        try:
            quantity = int(event.value)
        except ValueError:
            quantity = -1
        if not 0 <= quantity <= 999:
            self.say("A quantity from 0 to 999.", "error")
            return
        self.dismiss(quantity)


class ShopperDialog(TillDialog):
    """Type the card number (16 digits) or pay code (12 digits) the shopper shows; F5 forgets
    the shopper of this sale."""

    BINDINGS = [*TillDialog.BINDINGS, Binding("f5", "forget", "Forget shopper")]

    def compose(self):
        with Vertical(classes="dialog"):
            yield Static("Shopper's card", classes="title")
            yield Input(id="card", placeholder="card number or pay code", type="integer")
            yield from self.compose_footer()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        digits = event.value.replace(" ", "")
        if len(digits) == 16:
            self.call(self.till.identify, card_number=digits, done=self._identified)
        elif len(digits) == 12:
            self.call(self.till.identify, pay_code=digits, done=self._identified)
        else:
            self.say("A card number has 16 digits, a pay code 12.", "error")

    def _identified(self, _shopper) -> None:
        self.dismiss(True)

    def action_forget(self) -> None:
        self.call(self.till.forget_shopper, done=lambda _: self.dismiss(True))

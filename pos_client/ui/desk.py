"""The till's other jobs: top-ups, gift cards, binding NFC, refunds, closing the shift."""

from __future__ import annotations

from rich.text import Text
from textual.binding import Binding
from textual.containers import Vertical
from textual.widgets import DataTable, Input, Label, Static

from pos_client.ui.base import TillDialog, TillScreen
from pos_client.ui.money import money, parse_money
from pos_client.ui.start import amount_of
from pos_client.ui.tender import TENDER_NAMES


class _AmountAndTender(TillDialog):
    """An amount, then F3 (cash) or F4 (bank card) takes it."""

    BINDINGS = [
        *TillDialog.BINDINGS,
        Binding("f3", "take('cash')", "Cash"),
        Binding("f4", "take('bank_card')", "Bank card"),
    ]

    def amount(self) -> int | None:
        amount = parse_money(self.query_one("#amount", Input).value)
        if not amount:
            self.say("Type the amount first, e.g. 20.", "error")
            return None
        return amount

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.say("Press F3 if the shopper pays cash, F4 for a bank card.", "info")


class TopUpDialog(_AmountAndTender):
    def compose(self):
        shopper = self.till.shopper
        with Vertical(classes="dialog"):
            yield Static(
                f"Top up {shopper.first_name or 'card'} •••• {shopper.last4}", classes="title"
            )
            yield Label(f"Balance now {money(shopper.balance_minor)}")
            yield Input(id="amount", placeholder="amount to load")
            yield from self.compose_footer()

    def action_take(self, tender: str) -> None:
        amount = self.amount()
        if amount:
            self.call(self.till.top_up, amount, tender, done=self._done, working="Loading…")

    def _done(self, top_up: dict) -> None:
        # The shopper panel shows the balance as it follows; this says what was done.
        loaded = money(amount_of(top_up.get("amount")))
        self.app.notice_next(f"Loaded {loaded} onto •••• {self.till.shopper.last4}.")
        self.dismiss(True)


class GiftCardDialog(_AmountAndTender):
    """Sell a gift card from the batch: its number (or tap it), the amount, the tender."""

    def compose(self):
        with Vertical(classes="dialog"):
            yield Static("Sell a gift card", classes="title")
            yield Label("Card number (16 digits) or NFC UID")
            yield Input(id="card", placeholder="scan or type")
            yield Label("Amount")
            yield Input(id="amount", placeholder="amount to load")
            yield from self.compose_footer()

    def refresh_from_till(self) -> None:
        """A gift card scanned or tapped while this is open is looked up by the Till (as
        "inactive": not sold yet); its number or UID fills the card field."""
        super().refresh_from_till()
        shopper = self.till.shopper
        field = self.query_one("#card", Input)
        if shopper is not None and shopper.status == "inactive" and not field.value:
            field.value = next(iter(shopper.presented.values()), "")
            self.query_one("#amount", Input).focus()

    def action_take(self, tender: str) -> None:
        card = self.query_one("#card", Input).value.replace(" ", "")
        amount = self.amount()
        if not amount:
            return
        if card.isdigit() and len(card) == 16:
            which = {"card_number": card}
        elif card and all(c in "0123456789abcdefABCDEF" for c in card):
            which = {"nfc_uid": card.upper()}
        else:
            self.say("Scan or type the gift card's 16-digit number.", "error")
            return
        self.call(
            self.till.sell_gift_card,
            amount,
            tender,
            **which,
            done=self._done,
            working="Selling the gift card…",
        )

    def _done(self, sold) -> None:
        card = (sold or {}).get("card", {})
        self.app.notice_next(f"Gift card •••• {card.get('last4', '')} sold and loaded.")
        self.dismiss(True)


class BindNfcDialog(TillDialog):
    """Bind a new NFC card or wristband to a card the shopper proves they hold."""

    def compose(self):
        with Vertical(classes="dialog"):
            yield Static("Bind an NFC card", classes="title")
            yield Label("NFC UID (tap it, or type it)")
            yield Input(id="uid")
            yield Label("Card number and security code, or a pay code")
            yield Input(id="card", placeholder="16-digit card number or 12-digit pay code")
            yield Input(id="code", placeholder="security code", password=True)
            yield from self.compose_footer()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id != "code" and not (
            event.input.id == "card" and len(event.value.replace(" ", "")) == 12
        ):
            self.focus_next()
            return
        uid = self.query_one("#uid", Input).value.strip().upper()
        card = self.query_one("#card", Input).value.replace(" ", "")
        code = self.query_one("#code", Input).value.strip()
        if not uid:
            self.say("Tap the NFC card or type its UID.", "error")
        elif len(card) == 12:
            self.call(self.till.bind_nfc, uid, pay_code=card, done=self._done)
        elif len(card) == 16 and code:
            self.call(
                self.till.bind_nfc, uid, card_number=card, security_code=code, done=self._done
            )
        else:
            self.say("The card's 16 digits and security code, or a 12-digit pay code.", "error")

    def _done(self, _bound) -> None:
        self.app.notice_next("NFC card bound.")
        self.dismiss(True)


class RefundScreen(TillScreen):
    """The day's sales, newest first; Enter opens one, then F2 refunds it whole, or Space marks
    lines and F3 refunds those."""

    BINDINGS = [
        Binding("f2", "refund_all", "Refund whole sale"),
        Binding("f3", "refund_marked", "Refund marked lines"),
        Binding("space", "mark", "Mark line", key_display="Space"),
        Binding("f10", "reprint", "Reprint"),
        Binding("escape", "back", "Back", key_display="Esc"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.sales: list[dict] = []
        self.sale: dict | None = None
        self.marked: set[int] = set()

    def compose(self):
        yield from self.compose_frame()
        with Vertical(id="main"):
            yield Static("Today's sales — Enter opens one", id="heading", classes="title")
            yield DataTable(id="sales", cursor_type="row", zebra_stripes=True)
            yield DataTable(id="sale_lines", cursor_type="row", zebra_stripes=True)
        yield from self.compose_footer()

    def on_mount(self) -> None:
        sales = self.query_one("#sales", DataTable)
        for label in ("Sale", "Time", "Total", "Tenders", "Refunded"):
            sales.add_column(label)
        lines = self.query_one("#sale_lines", DataTable)
        for label in ("", "Item", "Qty", "Refunded", "Line total"):
            lines.add_column(label)
        lines.display = False
        sales.focus()
        self.refresh_from_till()
        self.call(self.till.sales_of_day, done=self._listed, working="Loading today's sales…")

    def _listed(self, page: dict) -> None:
        self.sales = list(page.get("items", []))
        table = self.query_one("#sales", DataTable)
        table.clear()
        for sale in self.sales:
            total = amount_of(sale.get("total"))
            tenders = ", ".join(t.get("type", "") for t in sale.get("tenders", []))
            refunded = sum(line.get("refunded_quantity", 0) or 0 for line in sale.get("lines", []))
            table.add_row(
                sale.get("number") or str(sale.get("id")),
                str(sale.get("created_at", ""))[11:16],
                Text(money(total), justify="right"),
                tenders,
                "yes" if refunded else "",
            )
        if not self.sales:
            self.say("No sales today.", "info")

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        if event.data_table.id == "sales" and self.sales:
            self._open(self.sales[event.cursor_row])

    def _open(self, sale: dict) -> None:
        self.sale = sale
        self.marked = set()
        self.query_one("#heading", Static).update(
            f"Sale {sale.get('number') or sale.get('id')} — Space marks lines, F2 refunds all, "
            "F3 the marked"
        )
        self.query_one("#sales", DataTable).display = False
        lines = self.query_one("#sale_lines", DataTable)
        lines.display = True
        self._show_lines()
        lines.focus()

    def _show_lines(self) -> None:
        table = self.query_one("#sale_lines", DataTable)
        row = table.cursor_row
        table.clear()
        for i, line in enumerate(self.sale.get("lines", [])):
            table.add_row(
                "✔" if i in self.marked else "",
                line.get("name") or line.get("sku"),
                str(line.get("quantity")),
                str(line.get("refunded_quantity", 0) or ""),
                Text(money(amount_of(line.get("line_total"))), justify="right"),
            )
        if table.row_count:
            table.move_cursor(row=min(max(row, 0), table.row_count - 1))

    def action_mark(self) -> None:
        if self.sale is None:
            return
        row = self.query_one("#sale_lines", DataTable).cursor_row
        self.marked ^= {row}
        self._show_lines()

    def action_refund_all(self) -> None:
        if self.sale is None:
            self.say("Open a sale first (Enter).", "error")
            return
        self.call(
            self.till.refund, self.sale["id"], None, done=self._refunded, working="Refunding…"
        )

    def action_refund_marked(self) -> None:
        if self.sale is None or not self.marked:
            self.say("Mark the lines to refund with Space first.", "error")
            return
        lines = self.sale.get("lines", [])
        chosen = [
            (lines[i]["sku"], lines[i]["quantity"] - (lines[i].get("refunded_quantity") or 0))
            for i in sorted(self.marked)
        ]
        chosen = [(sku, left) for sku, left in chosen if left > 0]
        if not chosen:
            self.say("Those lines are refunded already.", "error")
            return
        self.call(
            self.till.refund, self.sale["id"], chosen, done=self._refunded, working="Refunding…"
        )

    def _refunded(self, refund: dict) -> None:
        said = f"Refunded {money(amount_of(refund.get('amount')))} of {self.sale.get('number')}."
        if refund.get("printer_error"):
            self.app.notice_next(
                f"{said} Receipt NOT printed ({refund['printer_error']}): F10 reprints.", "error"
            )
        else:
            self.app.notice_next(f"{said} Receipt printed.", "ok")
        self.dismiss()

    def action_reprint(self) -> None:
        if self.sale is None:
            self.say("Open a sale first (Enter).", "error")
            return
        receipt = (self.sale.get("receipt") or {}).get("id")
        self.call(self.till.reprint, receipt, done=lambda _: self.say("Reprinted.", "ok"))

    def action_back(self) -> None:
        if self.busy:
            return
        if self.sale is None:
            self.dismiss()
            return
        self.sale = None
        self.query_one("#heading", Static).update("Today's sales — Enter opens one")
        self.query_one("#sale_lines", DataTable).display = False
        sales = self.query_one("#sales", DataTable)
        sales.display = True
        sales.focus()


class CloseShiftScreen(TillScreen):
    """Count the drawer; the report shows here and prints; Enter signs out."""

    BINDINGS = [
        Binding("escape", "back", "Back", key_display="Esc"),
        Binding("enter", "back", "Sign out", show=False),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.report: dict | None = None

    def compose(self):
        yield from self.compose_frame()
        with Vertical(classes="form"):
            yield Static("Close the shift", classes="title")
            yield Label("Cash counted in the drawer", id="prompt")
            yield Input(id="counted", placeholder="e.g. 212.40")
            yield Static(id="report")
        yield from self.compose_footer()

    def on_mount(self) -> None:
        self.query_one("#counted", Input).focus()
        self.refresh_from_till()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if self.report is not None:
            self.app.show_sign_in()
            return
        counted = parse_money(event.value)
        if counted is None:
            self.say("Type the cash counted, e.g. 212.40.", "error")
            return
        self.call(self.till.close_shift, counted, done=self._shift_closed, working="Closing…")

    def _shift_closed(self, shift: dict) -> None:
        self.report = shift.get("report") or shift
        self.query_one("#report", Static).update(report_text(self.report))
        self.query_one("#prompt", Label).update("Shift closed. Enter signs out.")
        # Nothing more to type: Enter (or Esc) now signs out, as the screen says.
        self.query_one("#counted", Input).display = False
        self.set_focus(None)
        if shift.get("printer_error"):
            self.say(
                f"Shift closed. Report NOT printed ({shift['printer_error']}). Enter signs out.",
                "error",
            )
        else:
            self.say("Shift closed; the report is printed. Enter signs out.", "ok")

    def action_back(self) -> None:
        if self.report is not None:
            self.app.show_sign_in()
        elif not self.busy:
            self.dismiss()


def report_text(report: dict) -> Text:
    text = Text()

    def row(label: str, value, style: str = "") -> None:
        text.append(f"{label:<22}{value}\n", style)

    row("Float", money(amount_of(report.get("float"))))
    for label, key in (("Sales", "sales"), ("Refunds", "refunds"), ("Top-ups", "top_ups")):
        part = report.get(key) or {}
        row(label, f"{money(amount_of(part.get('total')))}  ({part.get('count', 0)})")
        for tender, amount in (part.get("by_tender") or {}).items():
            if amount_of(amount):
                row(f"  {TENDER_NAMES.get(tender, tender)}", money(amount_of(amount)), "dim")
    row("Expected cash", money(amount_of(report.get("expected_cash"))), "bold")
    row("Counted cash", money(amount_of(report.get("counted_cash"))), "bold")
    difference = amount_of(report.get("difference")) or 0
    row("Difference", money(difference), "bold red" if difference else "bold green")
    return text

"""Taking the money: split tenders until nothing remains, then the sale goes to the server.

The amount field always holds what remains to pay, so the common case is one key: F2 for the
card balance, F3 for cash (type what the shopper handed over first), F4 for a bank card. The
sale is sent as soon as the tenders cover the total; the change then shows big."""

from __future__ import annotations

from rich.text import Text
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import DataTable, Digits, Input, Label, Static

from pos_client.ui.base import TillScreen, describe
from pos_client.ui.money import money, parse_money
from pos_client.ui.widgets import ShopperPanel

TENDER_NAMES = {"card_balance": "Card balance", "cash": "Cash", "bank_card": "Bank card"}


def digits(minor: int, currency: str) -> str:
    return money(minor, currency).replace(",", "")


class TenderScreen(TillScreen):
    BINDINGS = [
        Binding("f2", "tender('card_balance')", "Card balance"),
        Binding("f3", "tender('cash')", "Cash"),
        Binding("f4", "tender('bank_card')", "Bank card"),
        Binding("f5", "drop_tender", "Undo tender"),
        Binding("f6", "split", "Pay balance, rest other", show=False),
        Binding("f10", "reprint", "Reprint"),
        Binding("escape", "back", "Back to sale", key_display="Esc"),
        Binding("enter", "next_sale", "Next sale", show=False),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.tenders: list = []
        self.result = None

    def compose(self):
        yield from self.compose_frame()
        with Horizontal(id="main"):
            with Vertical(id="left"):
                yield Static(id="due", classes="title")
                yield Digits(id="big")
                yield DataTable(id="tenders", cursor_type="none")
                yield Label(
                    "Amount (Enter = cash given, or F2/F3/F4 for this amount)", id="amount_label"
                )
                yield Input(id="amount")
            yield ShopperPanel(id="shopper")
        yield from self.compose_footer()

    def on_mount(self) -> None:
        table = self.query_one("#tenders", DataTable)
        table.add_column("Tender", key="type")
        table.add_column("Amount", key="amount")
        table.add_column("Given", key="given")
        self.query_one("#shopper").border_title = "Shopper"
        self._reset_amount()
        self.refresh_from_till()

    @property
    def currency(self) -> str:
        return getattr(self.till, "currency", "USD")

    @property
    def total(self) -> int:
        if self.result is not None:
            return self._paid()
        return self.till.sale.total_minor

    def _paid(self) -> int:
        return sum(t.amount_minor for t in self.tenders)

    @property
    def remaining(self) -> int:
        return max(self.total - self._paid(), 0)

    def _reset_amount(self) -> None:
        field = self.query_one("#amount", Input)
        field.value = f"{self.remaining / 100:.2f}" if self.remaining else ""
        field.focus()
        # Selected, so what the cashier types (the note handed over) replaces it.
        field.select_all()

    def refresh_from_till(self) -> None:
        super().refresh_from_till()
        self.query_one(ShopperPanel).show(self.till.shopper, self.currency)
        table = self.query_one("#tenders", DataTable)
        table.clear()
        for t in self.tenders:
            table.add_row(
                TENDER_NAMES.get(t.type, t.type),
                Text(money(t.amount_minor, self.currency), justify="right"),
                Text(money(t.given_minor, self.currency) if t.given_minor else "", justify="right"),
            )
        due = self.query_one("#due", Static)
        big = self.query_one("#big", Digits)
        if self.result is not None:
            change = self.result.change_minor or 0
            due.update(
                Text(f"PAID {money(self.total, self.currency)} — CHANGE", style="bold green")
            )
            big.update(digits(change, self.currency))
            big.set_classes("change")
        else:
            due.update(
                Text(
                    f"TOTAL {money(self.total, self.currency)}   "
                    f"PAID {money(self._paid(), self.currency)}   "
                    f"REMAINING {money(self.remaining, self.currency)}",
                    style="bold",
                )
            )
            big.update(digits(self.remaining, self.currency))
            big.set_classes("remaining")

    # -- tenders --------------------------------------------------------------------------------
    def on_input_submitted(self, event: Input.Submitted) -> None:
        if self.result is not None:
            self.action_next_sale()
        else:
            self.action_tender("cash")

    def action_tender(self, kind: str) -> None:
        if self.result is not None or self.busy:
            return
        from pos_client.till import Tender

        typed = parse_money(self.query_one("#amount", Input).value)
        if typed is None or typed <= 0:
            self.say("Type an amount, e.g. 20 or 12.50.", "error")
            return
        if kind == "card_balance" and self.till.shopper is None:
            self.say("No card identified: tap, scan or type it on the sale screen (F3).", "error")
            return
        remaining = self.remaining
        if kind == "cash" and typed > remaining:
            self.tenders.append(Tender("cash", remaining, given_minor=typed))
        else:
            self.tenders.append(Tender(kind, min(typed, remaining)))
        self._after_tenders_changed()

    def _after_tenders_changed(self) -> None:
        self.refresh_from_till()
        self._reset_amount()
        if self.remaining == 0:
            self.call(
                self.till.pay,
                list(self.tenders),
                done=self._paid_ok,
                failed=self._refused,
                working="Paying…",
            )

    def action_drop_tender(self) -> None:
        if self.tenders and self.result is None and not self.busy:
            self.tenders.pop()
            self.refresh_from_till()
            self._reset_amount()
            self.notice.clear()

    def action_split(self) -> None:
        """After a refusal for too low a balance: take what the card holds, leave the rest."""
        balance = getattr(self.till.shopper, "balance_minor", 0) or 0
        if self.result is not None or balance <= 0:
            return
        from pos_client.till import Tender

        self.tenders = [t for t in self.tenders if t.type != "card_balance"]
        self.tenders.append(Tender("card_balance", min(balance, self.remaining)))
        self._after_tenders_changed()
        self.say(
            f"{money(balance, self.currency)} from the card. Take the rest: F3 cash, F4 bank card.",
            "info",
        )

    def _refused(self, exc: BaseException) -> None:
        code = getattr(exc, "code", None)
        if type(exc).__name__ == "OfflineQueued":
            self.say(describe(exc), "warning")
            return
        if code == "insufficient_funds":
            self.tenders = [t for t in self.tenders if t.type != "card_balance"]
            self.refresh_from_till()
            self._reset_amount()
            balance = (exc.details.get("balance") or {}).get("amount")
            if balance is None:
                balance = getattr(self.till.shopper, "balance_minor", None)
            self.say(
                f"Not enough on the card: its balance is {money(balance, self.currency)}. "
                f"F6: pay {money(balance, self.currency)} from the card and the rest by "
                "cash or bank card.",
                "error",
            )
            return
        if code in ("card_frozen", "account_frozen"):
            self.tenders = [t for t in self.tenders if t.type != "card_balance"]
            self.refresh_from_till()
            self._reset_amount()
            self.say("This card is FROZEN: it cannot pay. Take cash or a bank card.", "error")
            return
        self.tenders.pop()
        self.refresh_from_till()
        self._reset_amount()
        self.say(f"Not paid: {describe(exc)}", "error")

    def _paid_ok(self, result) -> None:
        self.result = result
        self.query_one("#amount_label", Label).update("Enter: next sale")
        self.query_one("#amount", Input).value = ""
        sale = result.sale or {}
        number = sale.get("number") or (result.receipt or {}).get("number") or ""
        parts = [f"Paid {number}.".replace(" .", ".")]
        kind = "ok"
        if result.offline:
            parts.append("OFFLINE: queued, it goes to the server when the till is back online.")
            kind = "warning"
        if result.printer_error:
            parts.append(f"Receipt NOT printed ({result.printer_error}): F10 reprints.")
            kind = "error"
        elif result.printed:
            parts.append("Receipt printed.")
        self.say(" ".join(parts), kind)

    def action_reprint(self) -> None:
        if self.result is None:
            self.say("Nothing paid yet to reprint.", "error")
            return
        self.call(
            self.till.reprint,
            done=lambda _: self.say("Receipt reprinted.", "ok"),
            working="Printing…",
        )

    def action_back(self) -> None:
        if self.busy:
            return
        # Nothing was sent yet: the tenders typed so far are simply dropped.
        self.dismiss()

    def action_next_sale(self) -> None:
        if self.result is not None and not self.busy:
            self.dismiss()

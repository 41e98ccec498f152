"""Signing in and opening the shift: the till sells nothing before both."""

from __future__ import annotations

from textual.binding import Binding
from textual.containers import Vertical
from textual.widgets import Input, Label, Static

from pos_client.ui.base import TillScreen
from pos_client.ui.money import money, parse_money


class SignInScreen(TillScreen):
    """Staff code, then PIN (masked); Enter in the PIN signs in."""

    BINDINGS = [Binding("ctrl+q", "app.quit", "Quit", key_display="^Q")]

    def compose(self):
        yield from self.compose_frame()
        with Vertical(classes="form"):
            yield Static("Omnicard till — sign in", classes="title")
            yield Label("Staff code")
            yield Input(id="staff_code", placeholder="staff code")
            yield Label("PIN")
            yield Input(id="pin", password=True, placeholder="PIN")
        yield from self.compose_footer()

    def on_mount(self) -> None:
        self.query_one("#staff_code", Input).focus()
        self.refresh_from_till()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        code = self.query_one("#staff_code", Input)
        pin = self.query_one("#pin", Input)
        if event.input is code:
            pin.focus()
            return
        if not code.value.strip() or not pin.value:
            self.say("Type your staff code and PIN.", "error")
            code.focus()
            return
        self.call(
            self.till.sign_in,
            code.value.strip(),
            pin.value,
            done=self._signed_in,
            failed=self._refused,
            working="Signing in…",
        )

    def _refused(self, exc) -> None:
        pin = self.query_one("#pin", Input)
        pin.value = ""
        pin.focus()
        self._failed(exc)

    def _signed_in(self, _staff) -> None:
        self.query_one("#pin", Input).value = ""
        self.app.after_sign_in()


class OpenShiftScreen(TillScreen):
    """The drawer's float, counted before the first sale of the shift."""

    BINDINGS = [Binding("f12", "sign_out", "Sign out")]

    def compose(self):
        yield from self.compose_frame()
        with Vertical(classes="form"):
            yield Static("Open the shift", classes="title")
            yield Label("Float in the drawer")
            yield Input(id="float", placeholder="e.g. 150.00")
        yield from self.compose_footer()

    def on_mount(self) -> None:
        self.query_one("#float", Input).focus()
        self.refresh_from_till()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        amount = parse_money(event.value)
        if amount is None:
            self.say("Type the float as an amount, e.g. 150 or 150.00.", "error")
            return
        self.call(self.till.open_shift, amount, done=self._opened, working="Opening the shift…")

    def _opened(self, shift) -> None:
        self.app.notice_next(f"Shift opened with {money(amount_of(shift.get('float')))} float.")
        self.app.show_sale()

    def action_sign_out(self) -> None:
        self.call(self.till.sign_out, done=lambda _: self.app.show_sign_in())


def amount_of(value) -> int | None:
    """The minor units of a money body, or of a bare integer."""
    if isinstance(value, dict):
        return value.get("amount")
    return value

"""The till's terminal screen: ``TillApp(till).run()``.

The Till does all the work (HTTP, the outbox, the hardware); the screens only show its state
and call it. Its blocking calls run in Textual thread workers; what it reports from its own
threads (the event stream, a tap, a scan, the replay loop) arrives as a message."""

from __future__ import annotations

from pathlib import Path

from textual.app import App
from textual.message import Message

from pos_client.ui.base import TillCalls
from pos_client.ui.desk import CloseShiftScreen
from pos_client.ui.start import OpenShiftScreen, SignInScreen


class TillChanged(Message):
    """The Till's state changed (``what`` names the part, e.g. ``"shopper"``)."""

    def __init__(self, what: str | None) -> None:
        super().__init__()
        self.what = what


class TillApp(App):
    CSS_PATH = Path(__file__).with_name("till.tcss")
    TITLE = "Omnicard till"
    ENABLE_COMMAND_PALETTE = False

    def __init__(self, till) -> None:
        super().__init__()
        self.till = till
        self._notice: tuple[str, str] | None = None
        till.on_change = self.till_changed

    def till_changed(self, what: str | None = None) -> None:
        """The Till's callback, from any thread. ``post_message`` is thread-safe and, unlike
        ``call_from_thread``, never blocks the Till's thread (an event follower or a hardware
        loop must not wait on the screen, least of all while the app shuts down)."""
        self.post_message(TillChanged(what))

    def on_till_changed(self, message: TillChanged) -> None:
        for screen in self.screen_stack:
            if isinstance(screen, TillCalls) and screen.is_mounted:
                screen.redraw()
        current = self.screen
        if message.what == "error" and self.till.last_error is not None:
            # A tap or scan the Till could not use (it happened on a hardware thread).
            if isinstance(current, TillCalls):
                current.say(self.till.last_error.message, "error")
        elif message.what == "cashier" and not getattr(current, "busy", False):
            self.check_session()

    def check_session(self) -> None:
        """Back to sign-in when the session ended under the cashier (expired or revoked); the
        shift report, when that ended it, stays until the cashier has read it."""
        if self.till.cashier is None and not isinstance(
            self.screen, SignInScreen | CloseShiftScreen
        ):
            self.notice_next("Signed out: sign in again.", "warning")
            self.show_sign_in()

    def on_mount(self) -> None:
        if self.till.cashier is None:
            self.push_screen(SignInScreen())
        else:
            self.after_sign_in()

    # -- where the cashier goes next -----------------------------------------------------------
    def _go(self, screen) -> None:
        while len(self.screen_stack) > 1:
            self.pop_screen()
        self.push_screen(screen)

    def after_sign_in(self) -> None:
        if self.till.shift is None:
            self._go(OpenShiftScreen())
        else:
            self.show_sale()

    def show_sale(self) -> None:
        from pos_client.ui.sale import SaleScreen

        self._go(SaleScreen())

    def show_sign_in(self) -> None:
        if not isinstance(self.screen, SignInScreen):
            self._go(SignInScreen())

    def notice_next(self, message: str, kind: str = "ok") -> None:
        """Say ``message`` on the screen the cashier lands on next."""
        self._notice = (message, kind)

    def take_notice(self) -> tuple[str, str] | None:
        notice, self._notice = self._notice, None
        return notice

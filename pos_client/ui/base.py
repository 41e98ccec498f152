"""What every till screen does the same way: run the Till's blocking calls off the UI thread,
say what happened on the notice line, and redraw from the Till's state when it changes."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

from textual import work
from textual.binding import Binding
from textual.css.query import NoMatches
from textual.screen import ModalScreen, Screen

from pos_client.ui.widgets import KeyBar, Notice, StatusBar


def describe(exc: BaseException) -> str:
    """The cashier's sentence for a refusal or failure of the Till."""
    message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    if type(exc).__name__ == "OfflineQueued":
        return f"Offline: queued, it will go through when the till is back online. {message}"
    return message


class TillCalls:
    """A screen mixin: ``call(fn, ..., done=, failed=)`` runs ``fn`` in a thread worker and hands
    its result (or exception) back on the UI thread. One call at a time per screen, so a second
    press of a key while the first is still at the server does nothing."""

    busy = False

    @property
    def till(self):
        return self.app.till

    def call(
        self,
        fn: Callable[..., Any],
        *args: Any,
        done: Callable[[Any], None] | None = None,
        failed: Callable[[BaseException], None] | None = None,
        working: str = "Working…",
        **kwargs: Any,
    ) -> bool:
        if self.busy:
            return False
        self.busy = True
        self.say(working, "busy")
        self._call_in_thread(fn, args, kwargs, done, failed)
        return True

    @work(thread=True, exit_on_error=False, group="till")
    def _call_in_thread(self, fn, args, kwargs, done, failed) -> None:
        try:
            result = fn(*args, **kwargs)
        except Exception as exc:  # every failure reaches the cashier, none kills the app
            self.app.call_from_thread(self._finish, failed or self._failed, exc)
        else:
            self.app.call_from_thread(self._finish, done, result)

    def _finish(self, then, value) -> None:
        self.busy = False
        self.notice.clear()
        if then is not None:
            then(value)
        if self.is_current:
            self.redraw()
        self.app.check_session()

    def _failed(self, exc: BaseException) -> None:
        self.say(describe(exc), "error")

    @property
    def notice(self) -> Notice:
        return self.query_one(Notice)

    def say(self, message: str, kind: str = "info") -> None:
        self.notice.say(message, kind)

    def redraw(self) -> None:
        """``refresh_from_till``, unless the screen is still being put together or taken
        down (a change reported from another thread can land then): it redraws when shown."""
        with contextlib.suppress(NoMatches):
            self.refresh_from_till()

    def refresh_from_till(self) -> None:
        """Redraw what shows the Till's state; screens add their own parts."""
        for bar in self.query(StatusBar):
            bar.show(self.till)


class TillScreen(TillCalls, Screen):
    """A full screen with the status line on top and the keys at the bottom."""

    def compose_frame(self):
        yield StatusBar(id="status")

    def compose_footer(self):
        yield Notice(id="notice")
        yield KeyBar(id="keys")

    def on_screen_resume(self) -> None:
        self.refresh_from_till()
        pending = self.app.take_notice()
        if pending:
            self.say(*pending)


class TillDialog(TillCalls, ModalScreen):
    """A dialog over a screen: Escape closes it."""

    BINDINGS = [Binding("escape", "dismiss_dialog", "Back", key_display="Esc")]

    def compose_footer(self):
        yield Notice(id="notice")
        yield KeyBar(id="keys")

    def action_dismiss_dialog(self) -> None:
        if not self.busy:
            self.dismiss(None)

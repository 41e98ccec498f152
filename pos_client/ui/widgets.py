"""The pieces every till screen shares: the status line, the key bar, the notice line and the
shopper panel. Each reads the Till's state when told that it changed; none of them calls it."""

from __future__ import annotations

from rich.text import Text
from textual.widget import Widget
from textual.widgets import Static

from pos_client.ui.money import money

#: How the shopper was recognised, in the cashier's words.
VIA = {"nfc": "NFC", "tap": "NFC", "nfc_uid": "NFC", "pay_code": "pay code", "code": "pay code"}


def _device(label: str, status: str | None) -> Text:
    status = status or "none"
    text = Text(f"{label} ", style="dim")
    if status in ("ready", "ok", "online"):
        text.append("ok", style="green")
    elif status == "none":  # not fitted to this till: nothing for the cashier to fix
        text.append("none", style="dim")
    else:
        text.append(status[:14], style="bold yellow")
    return text


class StatusBar(Static):
    """One line: online or offline, the replay queue, the devices, who is signed in."""

    def show(self, till) -> None:
        line = Text()
        if getattr(till, "online", True):
            line.append("● online", style="bold green")
        else:
            line.append("● OFFLINE", style="bold white on red")
        queue = getattr(till, "queue_length", 0) or 0
        line.append(f"  queue {queue}", style="bold yellow" if queue else "dim")
        cashier = getattr(till, "cashier", None)
        if cashier:
            name = cashier.get("first_name") or (cashier.get("name") or "").split(" ")[0]
            line.append(f"  {name}", "bold")
        shift = getattr(till, "shift", None)
        if shift:
            line.append(f" · shift {shift.get('id')}", style="dim")
        for label, attr in (
            ("printer", "printer_status"),
            ("reader", "reader_status"),
            ("scanner", "scanner_status"),
        ):
            line.append("  ")
            line.append_text(_device(label, getattr(till, attr, None)))
        self.update(line)


class KeyBar(Widget):
    """The screen's keys, wrapped between keys over as many lines as the width needs (a footer
    that scrolls sideways hides half of them at 80 columns)."""

    DEFAULT_CSS = "KeyBar { height: auto; }"

    def keys(self) -> list[Text]:
        shown = []
        for binding in self.screen.BINDINGS:
            if not binding.show or not binding.description:
                continue
            key = binding.key_display or binding.key.split(",")[0].upper()
            item = Text()
            item.append(f" {key} ", style="bold reverse")
            item.append(f" {binding.description}")
            shown.append(item)
        return shown

    def render(self) -> Text:
        width = max(self.size.width, 20)
        lines = [Text()]
        for item in self.keys():
            if lines[-1] and len(lines[-1]) + 1 + len(item) > width:
                lines.append(Text())
            if lines[-1]:
                lines[-1].append(" ")
            lines[-1].append_text(item)
        return Text("\n").join(lines)

    def get_content_height(self, container, viewport, width: int) -> int:
        return len(self.render().split("\n"))


class Notice(Static):
    """The last thing the till has to tell the cashier: what went wrong and what to do."""

    def say(self, message: str, kind: str = "info") -> None:
        self.set_classes(f"notice-{kind}")
        self.update(message)

    def clear(self) -> None:
        self.set_classes("")
        self.update("")


class ShopperPanel(Static):
    """Who is paying: first name, balance, Stars and what offline allowances hold."""

    def show(self, shopper, currency: str = "USD") -> None:
        if shopper is None:
            self.update(Text("No shopper\n\nTap, scan or type a card number.", style="dim"))
            return
        text = Text()
        last4 = getattr(shopper, "last4", None)
        name = getattr(shopper, "first_name", None)
        text.append(f"{name or 'Card'}\n", style="bold")
        via = getattr(shopper, "identified_by", None) or "card"
        text.append(f"•••• {last4}  " if last4 else "", style="dim")
        text.append(f"via {VIA.get(str(via), 'card')}\n\n", style="dim")
        balance = getattr(shopper, "balance_minor", None)
        text.append("Balance ")
        if balance is None:
            text.append("unknown (offline)\n", "bold yellow")
        else:
            text.append(f"{money(balance, currency)}\n", "bold green")
        stars = getattr(shopper, "stars", None)
        text.append(f"Stars   {stars if stars is not None else '—'}\n")
        # The balance is what the card can pay here, this till's offline allowance included;
        # what allowances at other tills hold is out of reach here.
        mine = getattr(shopper, "allowance_left_minor", 0) or 0
        elsewhere = (getattr(shopper, "held_minor", 0) or 0) - mine
        if elsewhere > 0:
            text.append(f"Held at other tills {money(elsewhere, currency)}\n", style="yellow")
        if getattr(shopper, "offline", False):
            left = getattr(shopper, "allowance_left_minor", None) or 0
            text.append(f"Offline: card pays up to {money(left, currency)}\n", "bold yellow")
        status = getattr(shopper, "status", "active")
        if status and status != "active":
            text.append(f"\n{status.upper()}", style="bold white on red")
        self.update(text)

"""The till's receipt printer (python-escpos): receipts, shift reports, top-up slips.

One layout per document, built as plain :class:`Line` and :class:`Qr` items from the API's
dicts; the same items become ESC/POS bytes for the printer, plain text for the screen and
the simulated printer, and a picture for the docs.

A print never half-happens silently and never hangs the till. The whole document is built
into an escpos ``Dummy`` buffer first; only then is the printer opened, asked for its paper
status where the connection can answer (network and serial: a DLE EOT query), sent the bytes
in one write, and asked again, all within one deadline. Anything that goes wrong raises
:class:`PrinterUnavailable` with a reason the cashier can act on; the caller still holds the
receipt dict and can reprint it. If the connection dies during the write, the printer may
already have printed the start of the receipt: that part has no cut (the cut is the last
command), and the reason says to reprint.

Money is formatted for currencies with two decimals (USD as ``$4.45``, others as
``4.45 EUR``); a currency with another exponent (JPY) would print wrongly.
"""

from __future__ import annotations

import contextlib
import os
import socket
import textwrap
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import serial
from escpos.constants import RT_MASK_LOWPAPER, RT_MASK_NOPAPER, RT_STATUS_PAPER
from escpos.escpos import Escpos
from escpos.exceptions import Error as EscposError
from escpos.printer import Dummy, File, Network, Serial, Usb

DEFAULT_PROFILE = "TM-T88V"
#: Budget for a whole print, connect to last byte: the cashier waits at most this long.
DEFAULT_TIMEOUT_S = 3.0
#: Dots per QR module: about 3 cm wide on a 180 dpi printer, easy for a phone.
QR_MODULE_DOTS = 6

TENDER_NAMES = {"card_balance": "Card balance", "cash": "Cash", "bank_card": "Bank card"}


class PrinterUnavailable(Exception):
    """The printer cannot print now (off, unplugged, refusing, out of paper, not answering).

    Nothing is lost: the caller keeps the document and can print it again.
    """

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


# --- layout: plain items, shared by paper, screen and picture --------------------------


@dataclass(frozen=True)
class Line:
    text: str = ""
    bold: bool = False
    center: bool = False
    #: Double height: as many characters to the line, so the layout's columns still hold.
    tall: bool = False


@dataclass(frozen=True)
class Qr:
    data: str


Item = Line | Qr


def format_money(money: dict) -> str:
    """``{"amount": 445, "currency": "USD"}`` → ``$4.45``. Two-decimal currencies only."""
    amount, currency = money["amount"], money["currency"]
    units, cents = divmod(abs(amount), 100)
    sign = "-" if amount < 0 else ""
    number = f"{units:,}.{cents:02d}"
    return f"{sign}${number}" if currency == "USD" else f"{sign}{number} {currency}"


def format_time(value: str | None) -> str:
    """An API timestamp as the till prints it (UTC: the API's day boundaries are UTC too)."""
    if not value:
        return ""
    moment = datetime.fromisoformat(value)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def columns(left: str, right: str, width: int, **style) -> list[Line]:
    """``left`` and ``right`` on one line, ``right`` flush with the edge; a long ``left``
    wraps, and ``right`` goes on the last line of it, or below when that line is full."""
    room = width - len(right) - 1
    wrapped = textwrap.wrap(left, width) or [""]
    lines = [Line(text, **style) for text in wrapped[:-1]]
    last = wrapped[-1]
    if len(last) > room:
        lines.append(Line(last, **style))
        last = ""
    lines.append(Line(last + right.rjust(width - len(last)), **style))
    return lines


def _centered(text: str, width: int, **style) -> list[Line]:
    return [Line(part, center=True, **style) for part in textwrap.wrap(text, width)]


def _rule(width: int) -> Line:
    return Line("-" * width)


def _header(store: dict | None, till: str | None, cashier: str | None, width: int) -> list[Item]:
    items: list[Item] = []
    if store:
        items += _centered(store.get("name") or "", width, bold=True, tall=True)
        items += _centered(store.get("address") or "", width)
        items.append(Line())
    if till or cashier:
        items += columns(f"Till: {till or '-'}", f"Cashier: {cashier or '-'}", width)
    return items


def receipt_layout(receipt: dict, width: int) -> list[Item]:
    """A sale or refund receipt (the shape of ``GET /v1/receipts/{id}``)."""
    refund = receipt.get("kind") == "refund"
    items = _header(receipt.get("store"), receipt.get("till"), receipt.get("cashier"), width)
    items += columns("REFUND" if refund else "SALE", receipt.get("number") or "", width, bold=True)
    if refund and receipt.get("sale_number"):
        items += columns("Refund of sale", receipt["sale_number"], width)
    items.append(Line(format_time(receipt.get("created_at"))))
    items.append(_rule(width))
    for line in receipt["lines"]:
        items += columns(line["name"], format_money(line["line_total"]), width)
        if line["quantity"] != 1:
            items.append(Line(f"  {line['quantity']} x {format_money(line['unit_price'])}"))
    items.append(_rule(width))
    total = format_money(receipt["total"])
    items += columns("REFUNDED" if refund else "TOTAL", total, width, bold=True, tall=True)
    for tender in receipt["tenders"]:
        name = TENDER_NAMES.get(tender["type"], tender["type"])
        items += columns(
            f"To {name.lower()}" if refund else name, format_money(tender["amount"]), width
        )
    if receipt.get("cash_given"):
        items += columns("Cash given", format_money(receipt["cash_given"]), width)
    if receipt.get("change"):
        items += columns("Change", format_money(receipt["change"]), width, bold=True)
    card, stars = receipt.get("card"), receipt.get("stars")
    if card or stars:
        items.append(_rule(width))
    if card:
        items += columns("Card", f"****{card['last4']}", width)
        items += columns("Balance after", format_money(card["balance_after"]), width)
    if stars:
        earned = stars["earned"]
        label = "Stars taken back" if earned < 0 else "Stars earned"
        items += columns(label, f"{abs(earned)}" if earned < 0 else f"+{earned}", width)
        items += columns("Stars balance", str(stars["balance"]), width)
    items.append(_rule(width))
    url = receipt.get("url")
    if receipt.get("offline"):
        items += _centered(
            "OFFLINE - receipt link to follow" if not url else "Made offline", width, bold=True
        )
    if url:
        items += _centered("Your receipt online:", width)
        items.append(Qr(url))
    items += _centered("Thank you!", width)
    return items


def shift_report_layout(shift: dict, width: int) -> list[Item]:
    """A closed shift's report (``shift["report"]`` of ``POST /v1/pos/shifts/{id}/close``)."""
    report = shift.get("report")
    if not report:
        raise ValueError("this shift has no report: it is still open")
    items = _header(report.get("store"), report.get("till"), report.get("cashier"), width)
    items += _centered("SHIFT REPORT", width, bold=True, tall=True)
    items += columns("Opened", format_time(report["opened_at"]), width)
    items += columns("Closed", format_time(report["closed_at"]), width)
    items.append(_rule(width))
    items += columns("Float", format_money(report["float"]), width)
    for title, key in (("Sales", "sales"), ("Refunds", "refunds"), ("Top-ups", "top_ups")):
        part = report[key]
        items += columns(
            f"{title} ({part['count']})", format_money(part["total"]), width, bold=True
        )
        for tender, amount in part["by_tender"].items():
            items += columns(f"  {TENDER_NAMES.get(tender, tender)}", format_money(amount), width)
    items.append(_rule(width))
    items += columns("Expected cash", format_money(report["expected_cash"]), width)
    items += columns("Counted cash", format_money(report["counted_cash"]), width)
    items += columns("Difference", format_money(report["difference"]), width, bold=True)
    return items


def slip_layout(slip: dict, width: int) -> list[Item]:
    """A top-up or gift card sale slip.

    ``slip``: ``{"kind": "top_up" | "gift_card", "top_up": <the API's top-up body>,
    "last4": "1234", "tender": "cash" | "bank_card", "store": {"name", "address"} | None,
    "till": str | None, "cashier": str | None}``.
    """
    top_up = slip["top_up"]
    items = _header(slip.get("store"), slip.get("till"), slip.get("cashier"), width)
    title = "GIFT CARD SOLD" if slip.get("kind") == "gift_card" else "CARD TOP-UP"
    items += columns(title, f"#{top_up['id']}", width, bold=True)
    items.append(Line(format_time(top_up.get("created_at"))))
    items.append(_rule(width))
    items += columns("Card", f"****{slip['last4']}", width)
    items += columns("Loaded", format_money(top_up["amount"]), width, bold=True, tall=True)
    if slip.get("tender"):
        items += columns("Paid by", TENDER_NAMES.get(slip["tender"], slip["tender"]), width)
    if top_up.get("status") and top_up["status"] != "succeeded":
        items += columns("Status", top_up["status"].upper(), width, bold=True)
    if top_up.get("card_balance"):
        items += columns("New balance", format_money(top_up["card_balance"]), width)
    items.append(_rule(width))
    items += _centered("Keep this slip with your card", width)
    return items


def layout_text(items: list[Item], width: int) -> str:
    out = []
    for item in items:
        if isinstance(item, Qr):
            out.append(f"[QR] {item.data}")
        else:
            out.append(item.text.center(width).rstrip() if item.center else item.text)
    return "\n".join(out) + "\n"


def layout_escpos(items: list[Item], profile: str = DEFAULT_PROFILE) -> bytes:
    """The exact bytes for the printer: the whole document, ending with a cut."""
    printer = Dummy(profile=profile)
    for item in items:
        if isinstance(item, Qr):
            # ESC a centres a native QR on Epson printers; escpos' own centring is raster-only.
            printer.set_with_default(align="center")
            printer.qr(item.data, native=True, size=QR_MODULE_DOTS)
            printer.ln()
        else:
            printer.set_with_default(
                align="center" if item.center else "left",
                bold=item.bold,
                double_height=item.tall,
            )
            printer.textln(item.text)
    printer.set_with_default()
    printer.cut()
    return printer.output


def profile_columns(profile: str) -> int:
    return Dummy(profile=profile).profile.get_columns("a")


def receipt_text(receipt: dict, width: int = 42) -> str:
    """The receipt as plain text, line for line as printed (the screen, the sim printer)."""
    return layout_text(receipt_layout(receipt, width), width)


# --- the printer ----------------------------------------------------------------------


class _Network(Network):
    """escpos 3.1's Network leaves its socket open when the connection fails (a
    ResourceWarning per attempt at a till whose printer is off): close it."""

    def open(self, raise_not_found: bool = True) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect((self.host, self.port))
        except OSError as exc:
            sock.close()
            self.device = None
            raise PrinterUnavailable(
                f"no printer at network:{self.host}:{self.port}: {_why(exc)}"
            ) from exc
        self.device = sock


class _AppendFile(File):
    """escpos' File truncates; the sim printer's file is a roll: each document appends."""

    def open(self, raise_not_found: bool = True) -> None:
        try:
            self.device = open(self.devfile, "ab")  # noqa: SIM115 - closed by close()
        except OSError as exc:
            self.device = None
            raise PrinterUnavailable(f"cannot open {self.devfile}: {exc.strerror}") from exc


def open_printer(target: str, profile: str = DEFAULT_PROFILE, *, timeout_s: float = 2.0) -> Escpos:
    """An opened escpos printer for a config target (``network:HOST:PORT``,
    ``serial:DEVICE``, ``usb:VID:PID`` in hex, ``file:PATH``).

    Raises :class:`PrinterUnavailable` when it cannot be reached, ``ValueError`` for a target
    that is not one of these.
    """
    kind, _, where = target.partition(":")
    if kind == "network":
        host, _, port = where.rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"printer target {target!r}: expected network:HOST:PORT")
        printer: Escpos = _Network(host, int(port), timeout=timeout_s, profile=profile)
    elif kind == "serial" and where:
        printer = Serial(devfile=where, timeout=timeout_s, profile=profile)
    elif kind == "usb":
        try:
            vendor, product = (int(part, 16) for part in where.split(":"))
        except ValueError:
            raise ValueError(f"printer target {target!r}: expected usb:VID:PID (hex)") from None
        printer = Usb(vendor, product, timeout=int(timeout_s * 1000), profile=profile)
    elif kind == "file" and where:
        printer = _AppendFile(devfile=where, profile=profile)
    else:
        raise ValueError(f"printer target {target!r}: expected network:, serial:, usb: or file:")
    try:
        printer.open()
    except PrinterUnavailable:
        raise
    except (EscposError, OSError, ValueError, serial.SerialException) as exc:
        # USB without libusb raises pyusb's NoBackendError, a ValueError.
        raise PrinterUnavailable(f"no printer at {target}: {_why(exc)}") from exc
    if isinstance(printer, Serial):
        printer.device.write_timeout = timeout_s
    return printer


class ReceiptPrinter:
    """The till's printer. Each print opens the target, sends one whole document, closes.

    Raises :class:`PrinterUnavailable` within ``timeout_s`` when it cannot print. ``status``
    is "ready", "paper low", or why the last print failed. For ``file:`` targets (the
    simulated printer) each document is also appended as text to ``PATH.txt``.
    ``check_status=False`` is for printers that cannot answer a status query (a one-way
    serial link); without it such a printer is reported as not answering.
    """

    def __init__(
        self,
        target: str,
        profile: str = DEFAULT_PROFILE,
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        check_status: bool = True,
    ):
        self.target = target
        self.profile = profile
        self.width = profile_columns(profile)  # also rejects an unknown profile now
        self.timeout_s = timeout_s
        self.check_status = check_status
        self.status = "not used yet"
        self.last_text: str | None = None
        self._lock = threading.Lock()

    def print_receipt(self, receipt: dict) -> None:
        self._print(receipt_layout(receipt, self.width))

    def print_shift_report(self, shift: dict) -> None:
        self._print(shift_report_layout(shift, self.width))

    def print_slip(self, slip: dict) -> None:
        """A top-up or gift card sale slip (see :func:`slip_layout` for its shape)."""
        self._print(slip_layout(slip, self.width))

    def print_gift_card(self, slip: dict) -> None:
        self.print_slip({**slip, "kind": "gift_card"})

    def print_top_up(self, slip: dict) -> None:
        self.print_slip({**slip, "kind": "top_up"})

    def check(self) -> str:
        """Ask the printer whether it could print now, without printing; answers ``status``."""
        with self._lock:
            try:
                self._send(b"")
            except PrinterUnavailable as exc:
                self.status = exc.reason
        return self.status

    def _print(self, items: list[Item]) -> None:
        data = layout_escpos(items, self.profile)
        text = layout_text(items, self.width)
        with self._lock:
            try:
                self._send(data)
            except PrinterUnavailable as exc:
                self.status = exc.reason
                raise
            self.last_text = text
            if self.target.startswith("file:"):
                with open(self.target.removeprefix("file:") + ".txt", "a", encoding="utf-8") as f:
                    f.write(text + "\n")

    def _send(self, data: bytes) -> None:
        deadline = time.monotonic() + self.timeout_s
        printer = open_printer(self.target, self.profile, timeout_s=self.timeout_s)
        queries = self.check_status and isinstance(printer, Network | Serial)
        try:
            paper = _paper(printer, deadline) if queries else "ok"
            if paper == "out":
                raise PrinterUnavailable("out of paper")
            if data:
                _set_timeout(printer, deadline)
                try:
                    printer._raw(data)
                except (OSError, serial.SerialException) as exc:
                    raise PrinterUnavailable(_cut_short(exc)) from exc
                if queries:
                    # The answer comes after the printer has taken in every byte before it.
                    paper = _paper(printer, deadline, sent=True)
                    if paper == "out":
                        raise PrinterUnavailable(
                            "ran out of paper while printing: reprint after loading paper"
                        )
            self.status = "paper low" if paper == "low" else "ready"
        except PrinterUnavailable:
            if isinstance(printer, Serial):
                # Closing a tty waits for its output to drain, which a printer that stopped
                # reading never does: drop what is left instead (the receipt is reprinted).
                with contextlib.suppress(OSError, serial.SerialException):
                    printer.device.reset_output_buffer()
            raise
        finally:
            with contextlib.suppress(OSError, serial.SerialException):
                printer.close()


def _remaining(deadline: float) -> float:
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise PrinterUnavailable("the printer did not answer in time")
    return remaining


def _set_timeout(printer: Escpos, deadline: float) -> None:
    remaining = _remaining(deadline)
    if isinstance(printer, Network):
        printer.device.settimeout(remaining)
    elif isinstance(printer, Serial):
        printer.device.timeout = remaining
        printer.device.write_timeout = remaining


def _paper(printer: Escpos, deadline: float, *, sent: bool = False) -> str:
    """Ask the printer (DLE EOT 4) about its paper: "ok", "low" or "out"."""
    _set_timeout(printer, deadline)
    try:
        if isinstance(printer, Serial):
            printer.device.reset_input_buffer()  # an old answer is not this one
        printer._raw(RT_STATUS_PAPER)
        if isinstance(printer, Network):
            answer = printer.device.recv(1)
            if not answer:
                raise PrinterUnavailable(
                    _cut_short(None) if sent else "the printer closed the connection"
                )
        else:
            answer = printer.device.read(1)
    except TimeoutError as exc:
        raise PrinterUnavailable(
            _cut_short(exc) if sent else "the printer does not answer (off, or busy?)"
        ) from exc
    except (OSError, serial.SerialException) as exc:
        raise PrinterUnavailable(_cut_short(exc) if sent else f"printer: {_why(exc)}") from exc
    if not answer:
        raise PrinterUnavailable("the printer does not answer (off, or unplugged?)")
    status = answer[0]
    if status & RT_MASK_NOPAPER == RT_MASK_NOPAPER:
        return "out"
    if status & RT_MASK_LOWPAPER == RT_MASK_LOWPAPER:
        return "low"
    return "ok"


def _cut_short(exc: BaseException | None) -> str:
    why = f" ({_why(exc)})" if exc is not None else ""
    return (
        f"the printer connection failed while printing{why}: part of the receipt may have "
        "printed, without a cut; reprint it"
    )


def _why(exc: BaseException) -> str:
    text = str(exc).strip()
    return " ".join(text.split()) if text else type(exc).__name__


# --- a picture of the printed receipt, for the docs -----------------------------------

_FONT_DIR = Path("/usr/share/fonts/truetype/dejavu")


def render_receipt_png(
    receipt: dict, path: str | os.PathLike, *, profile: str = DEFAULT_PROFILE
) -> None:
    """Draw the receipt as the printer prints it (same layout, paper width in dots)."""
    import qrcode
    from PIL import Image, ImageDraw, ImageFont

    width = profile_columns(profile)
    paper_px = Dummy(profile=profile).profile.profile_data["media"]["width"]["pixels"]
    margin = 16
    size = 10
    fonts = {}
    for bold, name in ((False, "DejaVuSansMono.ttf"), (True, "DejaVuSansMono-Bold.ttf")):
        try:
            fonts[bold] = ImageFont.truetype(str(_FONT_DIR / name), size)
        except OSError:
            fonts[bold] = ImageFont.load_default(size)
    # The largest size at which a full line fits across the paper.
    while fonts[False].getlength("M" * width) < paper_px - 2 * margin:
        size += 1
        for bold in fonts:
            fonts[bold] = fonts[bold].font_variant(size=size)
    size -= 1
    fonts = {bold: font.font_variant(size=size) for bold, font in fonts.items()}
    line_px = int(size * 1.35)

    parts: list[Image.Image] = []
    for item in receipt_layout(receipt, width):
        if isinstance(item, Qr):
            code = qrcode.QRCode(border=2, box_size=QR_MODULE_DOTS)
            code.add_data(item.data)
            parts.append(code.make_image().get_image().convert("L"))
            continue
        text = item.text.center(width) if item.center else item.text
        strip = Image.new("L", (paper_px - 2 * margin, line_px), 255)
        ImageDraw.Draw(strip).text((0, 0), text, font=fonts[item.bold], fill=0)
        if item.tall:
            strip = strip.resize((strip.width, strip.height * 2))
        parts.append(strip)

    height = sum(part.height for part in parts) + 2 * margin
    paper = Image.new("L", (paper_px, height), 255)
    y = margin
    for part in parts:
        x = (paper_px - part.width) // 2 if part.width < paper_px - 2 * margin else margin
        paper.paste(part, (x, y))
        y += part.height
    paper.save(path)

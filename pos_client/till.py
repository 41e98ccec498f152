"""The till: the one controller the terminal screen and the subcommands both drive.

It holds the cashier's session and shift, the sale being rung up, the shopper presented, and
the till's link with the API: online or not, and how many requests wait in the outbox. Its
actions are plain blocking calls (the screen runs them off its event loop); what changes from
other threads (the event stream, the NFC reader and scanner, the replayer) is announced
through `on_change(what)`, with `what` one of "shopper", "sale", "online", "queue",
"printer", "reader", "scanner", "cashier", "shift", "receipt", "error".

Refusals raise `TillError(code, message, details)` with what the cashier can do about them.
A request that went to the outbox to be replayed (the API unreachable, or its outcome not
known) raises `OfflineQueued`, except a sale queued offline, which is a `SaleResult` with
`offline=True` and a local receipt: the shopper has paid and leaves with it.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime

from pos_client.api import Api, ApiError, Unreachable
from pos_client.config import Config
from pos_client.outbox import AllowanceExhausted, Entry, Outbox

TENDER_TYPES = ("card_balance", "cash", "bank_card")
#: A code or word the catalog does not know reads the catalog again (a product added since),
#: at most this often (a cashier's typos do not each read the whole catalog).
CATALOG_MISS_REFRESH_S = 5.0
UNKNOWN_OUTCOME = "not confirmed: queued, will retry with the same key, do not charge again"


class TillError(Exception):
    """A refusal the cashier can act on (the API's, or the till's own)."""

    def __init__(self, code: str, message: str, details: dict | None = None, status: int = 0):
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details or {}
        self.status = status

    def body(self) -> dict:
        return {"error": {"code": self.code, "message": self.message, "details": self.details}}


class OfflineQueued(Exception):
    """The request is in the outbox and will be sent (again) with the same Idempotency-Key
    when the API answers: do not do it again. `entry_id` names it in the queue."""

    def __init__(self, message: str, entry_id: int, *, maybe_sent: bool = False):
        super().__init__(message)
        self.message = message
        self.entry_id = entry_id
        self.maybe_sent = maybe_sent

    def body(self) -> dict:
        return {
            "queued": {"entry_id": self.entry_id, "message": self.message,
                       "maybe_sent": self.maybe_sent},
        }  # fmt: skip


@dataclass
class DraftLine:
    sku: str
    name: str
    barcode: str | None
    quantity: int
    unit_price_minor: int

    @property
    def total_minor(self) -> int:
        return self.quantity * self.unit_price_minor


@dataclass
class SaleDraft:
    """The sale being rung up, priced by the catalog as the till last read it (the server
    prices the sale itself)."""

    lines: list[DraftLine] = field(default_factory=list)

    @property
    def total_minor(self) -> int:
        return sum(line.total_minor for line in self.lines)


@dataclass
class Shopper:
    """The card presented. `presented` is what identifies it to the API (`{"card_number"}`,
    `{"nfc_uid"}` or `{"pay_code"}`); `balance_minor` is None when not known (offline)."""

    card_id: int | None
    last4: str | None
    first_name: str | None
    balance_minor: int | None
    stars: int | None
    status: str
    held_minor: int
    identified_by: str  # "card_number" | "nfc_uid" | "pay_code"
    presented: dict
    #: What the card's account holds outside offline allowances (the server's `balance`);
    #: `balance_minor` is that plus what this till's allowance for the card holds, i.e. what
    #: the card can pay here.
    available_minor: int | None = None
    #: What this till may still take from the card while the API is unreachable.
    allowance_left_minor: int | None = None
    allowance_id: int | None = None
    offline: bool = False


@dataclass
class Tender:
    type: str  # "card_balance" | "cash" | "bank_card"
    amount_minor: int | None  # None: whatever the other tenders leave
    given_minor: int | None = None  # cash handed over (>= amount); None = exact


@dataclass
class SaleResult:
    sale: dict | None  # the server's sale body; None while queued offline
    receipt: dict
    change_minor: int
    offline: bool
    printed: bool
    printer_error: str | None
    entry_id: int | None = None

    def body(self) -> dict:
        return {
            "sale": self.sale, "receipt": self.receipt, "change_minor": self.change_minor,
            "offline": self.offline, "printed": self.printed,
            "printer_error": self.printer_error, "entry_id": self.entry_id,
        }  # fmt: skip


def money(amount: int, currency: str) -> dict:
    return {"amount": amount, "currency": currency}


def luhn_valid(number: str) -> bool:
    if len(number) != 16 or not number.isdigit():
        return False
    total = 0
    for i, ch in enumerate(reversed(number)):
        d = int(ch)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _now() -> str:
    return datetime.now(UTC).isoformat()


class Till:
    def __init__(
        self, config: Config, *, on_change: Callable[[str], None] | None = None,
        nfc=None, scanner=None, printer=None, hardware: bool = True,
    ):  # fmt: skip
        self.config = config
        self.on_change = on_change or (lambda what: None)
        self.currency = config.currency
        self.api = Api(
            config.api_url, connect_timeout_s=config.connect_timeout_s,
            read_timeout_s=config.read_timeout_s,
        )  # fmt: skip
        config.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.outbox = Outbox(config.outbox_path, claim_s=config.read_timeout_s + 5)
        self._lock = threading.RLock()
        self._drain_lock = threading.Lock()
        self.cashier: dict | None = None
        self.shift: dict | None = None
        self.session: dict | None = None
        self.store: dict | None = None  # the store and till names, as receipts give them
        self.sale = SaleDraft()
        self.shopper: Shopper | None = None
        self.online = True
        self.queue_length = self.outbox.pending_count()
        self.last_receipt: dict | None = None
        self.last_error: TillError | None = None
        self.printer_status = "none"
        self.reader_status = "none"
        self.scanner_status = "none"
        self.catalog: list[dict] = []
        self._by_sku: dict[str, dict] = {}
        self._by_barcode: dict[str, dict] = {}
        self._catalog_read_at = float("-inf")
        self.catalog_miss_refresh_s = CATALOG_MISS_REFRESH_S
        self.nfc, self.scanner = nfc, scanner
        self.printer = printer if printer is not None else make_printer(config)
        self._hardware = hardware
        self._replayer = None
        self._inputs: queue.Queue | None = None
        self._events = None
        self._load_session()
        self._load_catalog_cache()
        if self.printer is not None:
            self.printer_status = "ready"
        self._load_last_receipt()

    # the till's life ----------------------------------------------------------------------

    def start(self) -> None:
        """Start the hardware threads, the replayer and the event follower."""
        from pos_client.events import EventFollower

        if self._hardware:
            self._open_hardware()
        self._replayer = Replayer(self)
        self._replayer.start()
        self._events = EventFollower(self)
        self._events.start()
        # The copy on disk is for offline: online, the catalog is read afresh at every start.
        with contextlib.suppress(TillError, Unreachable):
            self.refresh_catalog()

    def stop(self) -> None:
        if self._inputs is not None:
            self._inputs.put(None)
        for part in (self._events, self._replayer, self.nfc, self.scanner):
            if part is not None and hasattr(part, "stop"):
                with contextlib.suppress(Exception):  # stopping must not fail the till's exit
                    part.stop()
        self.api.close()
        self.outbox.close()

    def _open_hardware(self) -> None:
        """The reader and scanner the config names (pos_client.hardware); what they read is
        handled in order on the till's own input thread, never on theirs."""
        cfg = self.config
        self._inputs = queue.Queue()
        threading.Thread(target=self._handle_inputs, name="till-inputs", daemon=True).start()
        if self.nfc is None and cfg.nfc_reader:
            try:
                from store_devices.nfc import NfcReader

                self.nfc = NfcReader(
                    cfg.nfc_reader, lambda tap: self._inputs.put((self.tap, tap)),
                    on_status=lambda status: self._status("reader_status", status),
                )  # fmt: skip
                self.nfc.start()
            except Exception as e:  # a reader that cannot start never stops the till
                self._status("reader_status", f"no reader: {e}")
        if self.scanner is None and cfg.scanner_port:
            try:
                from pos_client.hardware.scanner import Scanner

                self.scanner = Scanner(
                    cfg.scanner_port, lambda code: self._inputs.put((self.scan, code)),
                    cfg.scanner_baudrate,
                    on_status=lambda status: self._status("scanner_status", status),
                )  # fmt: skip
                self.scanner.start()
            except Exception as e:
                self._status("scanner_status", f"no scanner: {e}")
        if self.nfc is not None and hasattr(self.nfc, "status"):
            self.reader_status = str(self.nfc.status)
        if self.scanner is not None and hasattr(self.scanner, "status"):
            self.scanner_status = str(self.scanner.status)

    def _status(self, which: str, status: str) -> None:
        setattr(self, which, status)
        self.on_change(which.removesuffix("_status"))

    def _handle_inputs(self) -> None:
        while True:
            item = self._inputs.get()
            if item is None:
                return
            action, value = item
            try:
                action(value)
            except TillError as e:
                self.last_error = e
                self.on_change("error")
            except OfflineQueued as e:
                self.last_error = TillError("queued", e.message)
                self.on_change("error")
            except Exception as e:  # noqa: BLE001 - one bad input must not stop the next
                self.last_error = TillError("error", f"{type(e).__name__}: {e}")
                self.on_change("error")

    # session ------------------------------------------------------------------------------

    @property
    def token(self) -> str | None:
        return self.session["token"] if self.session else None

    def _load_session(self) -> None:
        path = self.config.session_path
        try:
            data = json.loads(path.read_text())
        except (FileNotFoundError, ValueError):
            return
        self.session = data.get("session")
        self.cashier = self.session["cashier"] if self.session else None
        self.shift = data.get("shift")
        self.store = data.get("store")

    def _save_session(self) -> None:
        path = self.config.session_path
        if self.session is None:
            path.unlink(missing_ok=True)
            return
        data = {"session": self.session, "shift": self.shift, "store": self.store}
        _write_private(path, data)

    def sign_in(self, staff_code: str, pin: str) -> dict:
        """A cashier signs in with staff code and PIN (the till's device secret opens the
        session); the till's open shift, if any, is picked up."""
        body = self._call(
            "POST", "/v1/pos/sessions", {"staff_code": staff_code, "pin": pin},
            token=self.config.device_secret,
        )  # fmt: skip
        with self._lock:
            self.session = body
            self.cashier = body["cashier"]
            self.shift = None
            self._save_session()
        self.refresh_shift()
        self.on_change("cashier")
        if self._events is not None:
            self._events.restart()
        if self._replayer is not None:
            self._replayer.kick()
        return body

    def sign_out(self) -> None:
        """End the cashier's session (on the server too, when it answers)."""
        token = self.token
        if token:
            # The session dies anyway at its expiry; locally it is gone now.
            with contextlib.suppress(ApiError, Unreachable):
                self.api.call("POST", "/v1/auth/logout", token=token)
        with self._lock:
            self.session = self.cashier = self.shift = None
            self.shopper = None
            self._save_session()
        self.on_change("cashier")

    def _require_session(self) -> str:
        if not self.token:
            raise TillError("not_signed_in", "No cashier is signed in on this till.")
        return self.token

    # shifts -------------------------------------------------------------------------------

    def refresh_shift(self) -> dict | None:
        """The till's open shift, as the server has it."""
        try:
            self.shift = self._call("GET", "/v1/pos/shifts/current")
        except TillError as e:
            if e.code != "no_open_shift":
                raise
            self.shift = None
        self._save_session()
        self.on_change("shift")
        return self.shift

    def open_shift(self, float_minor: int) -> dict:
        """Open the till's shift with the drawer's float."""
        self._require_session()
        shift = self._send("shift_open", "POST", "/v1/pos/shifts",
                           {"float": money(float_minor, self.currency)})  # fmt: skip
        self.shift = shift
        self._save_session()
        self.on_change("shift")
        return shift

    def close_shift(self, counted_minor: int) -> dict:
        """Close the shift with the cash counted: the queue is drained first (a shift's report
        must count its offline sales), the offline allowances are released, the report is
        printed, and the cashier's session ends with the shift."""
        self._require_session()
        if self.shift is None:
            raise TillError("no_open_shift", "No shift is open on this till.")
        self.drain()
        if self.queue_length:
            raise TillError(
                "queue_not_drained",
                f"{self.queue_length} requests still wait to be sent: the shift closes once "
                "the API has them all.",
                {"queue_length": self.queue_length},
            )
        self.release_allowances()
        shift = self._send(
            "shift_close", "POST", f"/v1/pos/shifts/{self.shift['id']}/close",
            {"counted": money(counted_minor, self.currency)},
        )  # fmt: skip
        printed, error = self._print("print_shift_report", shift)
        shift = dict(shift, printed=printed, printer_error=error)
        with self._lock:
            self.session = self.cashier = self.shift = None
            self.shopper = None
            self.sale = SaleDraft()
            self._save_session()
        self.on_change("cashier")
        return shift

    def _require_shift(self) -> None:
        self._require_session()
        if self.shift is None:
            raise TillError("no_open_shift", "Open a shift before selling.")

    # the catalog --------------------------------------------------------------------------

    def refresh_catalog(self) -> int:
        """Read the whole active catalog (every page) and keep it on disk for offline use."""
        try:
            products = list(self.api.pages("/v1/products", limit=100))
        except ApiError as e:
            raise TillError(e.code, e.message, e.details, e.status) from None
        self._set_catalog(products)
        self._catalog_read_at = time.monotonic()
        path = self.config.state_dir / "catalog.json"
        path.write_text(json.dumps(products))
        self.on_change("catalog")
        return len(products)

    def _load_catalog_cache(self) -> None:
        with contextlib.suppress(FileNotFoundError, ValueError):
            self._set_catalog(json.loads((self.config.state_dir / "catalog.json").read_text()))

    def _set_catalog(self, products: list[dict]) -> None:
        self.catalog = products
        self._by_sku = {p["sku"]: p for p in products}
        self._by_barcode = {p["barcode"]: p for p in products if p.get("barcode")}

    def product_by_barcode(self, code: str) -> dict | None:
        found = self._by_barcode.get(code)
        if found is None and len(code) == 12:  # UPC-A is EAN-13 with a leading 0
            found = self._by_barcode.get("0" + code)
        if found is None and len(code) == 13 and code.startswith("0"):
            found = self._by_barcode.get(code[1:])
        return found

    def search(self, text: str) -> list[dict]:
        """Catalog products whose name, SKU, category or barcode hold every word typed."""
        words = text.lower().split()
        if not self.catalog:
            self._try_refresh_catalog()

        def matching() -> list[dict]:
            return [
                p for p in self.catalog
                if all(w in " ".join((p["name"], p["sku"], p.get("category", ""),
                                      p.get("barcode") or "")).lower() for w in words)
            ]  # fmt: skip

        found = matching()
        if not found and self._refresh_after_miss():
            found = matching()
        return found

    def _try_refresh_catalog(self) -> None:
        try:
            self.refresh_catalog()
        except Unreachable:
            self._set_online(False)

    def _refresh_after_miss(self) -> bool:
        """Something the catalog does not know: perhaps a product added since the till read
        it. Read it again, at most every `catalog_miss_refresh_s`; True if it was read."""
        since = time.monotonic() - self._catalog_read_at
        if not self.online or since < self.catalog_miss_refresh_s:
            return False
        with contextlib.suppress(TillError):
            self._try_refresh_catalog()
        return True

    def _product(self, sku: str) -> dict:
        if sku not in self._by_sku:
            self._refresh_after_miss()
        product = self._by_sku.get(sku)
        if product is None:
            raise TillError("unknown_sku", f"No product {sku} in the catalog.", {"sku": sku})
        return product

    # the sale -----------------------------------------------------------------------------

    def scan(self, code: str) -> str:
        """Route a scanned or typed code: a product's barcode (the catalog decides first, as a
        12-digit UPC-A looks like a pay code), a 16-digit card number, a 12-digit pay code, or
        a SKU. Returns "product", "card" or "pay_code"."""
        code = code.strip()
        if not self.catalog:
            self._try_refresh_catalog()
        product = self.product_by_barcode(code) if code.isdigit() else None
        # Perhaps a product added since the catalog was read (asked before a 12-digit code is
        # taken for a pay code).
        barcode_like = code.isdigit() and len(code) in (8, 12, 13)
        if product is None and barcode_like and self._refresh_after_miss():
            product = self.product_by_barcode(code)
        if product is not None:
            self.add(product["sku"])
            return "product"
        if len(code) == 16 and code.isdigit():
            if not luhn_valid(code):
                raise TillError("card_number_invalid", "That card number does not check out "
                                "(a misread?): scan or type it again.")  # fmt: skip
            self.identify(card_number=code)
            return "card"
        if len(code) == 12 and code.isdigit():
            self.identify(pay_code=code)
            return "pay_code"
        if code in self._by_sku or (not code.isdigit() and self._refresh_after_miss()
                                    and code in self._by_sku):  # fmt: skip
            self.add(code)
            return "product"
        raise TillError("unknown_code", f"Nothing known by {code!r}.", {"code": code})

    def tap(self, tap) -> None:
        """An NFC tap: the card number its NDEF record holds, else its UID."""
        number = getattr(tap, "card_number", None)
        if number:
            self.identify(card_number=number)
        else:
            self.identify(nfc_uid=tap.uid)

    def add(self, sku: str, quantity: int = 1) -> None:
        if quantity < 1:
            raise TillError("bad_quantity", "A quantity is 1 or more.")
        product = self._product(sku)
        with self._lock:
            for line in self.sale.lines:
                if line.sku == sku:
                    line.quantity += quantity
                    break
            else:
                self.sale.lines.append(DraftLine(
                    sku, product["name"], product.get("barcode"), quantity,
                    product["price"]["amount"],
                ))  # fmt: skip
        self.on_change("sale")

    def set_quantity(self, index: int, quantity: int) -> None:
        with self._lock:
            if not 0 <= index < len(self.sale.lines):
                raise TillError("no_such_line", f"No line {index + 1}.")
            if quantity <= 0:
                del self.sale.lines[index]
            else:
                self.sale.lines[index].quantity = quantity
        self.on_change("sale")

    def remove_line(self, index: int) -> None:
        self.set_quantity(index, 0)

    def clear_sale(self) -> None:
        with self._lock:
            self.sale = SaleDraft()
        self.on_change("sale")

    # the shopper --------------------------------------------------------------------------

    def identify(self, *, card_number=None, nfc_uid=None, pay_code=None) -> Shopper:
        """Find the card presented. Online, the server's lookup (its balance, holder and
        Stars; the till then sees its changes live) and an offline allowance is asked for it;
        offline, the allowance this till holds for it, recognised by its fingerprints."""
        presented = _presented(card_number=card_number, nfc_uid=nfc_uid, pay_code=pay_code)
        how = next(iter(presented))
        self._require_session()
        try:
            card = self._call("POST", "/v1/pos/lookups", presented, offline_ok=True)
        except Unreachable:
            shopper = self._identify_offline(presented, how)
        else:
            shopper = self._shopper_of(card, how, presented)
            with self._lock:
                self.shopper = shopper
            if self._ask_allowance(shopper):
                self._refresh_shopper(shopper)  # the allowance took its part of the balance
        with self._lock:
            self.shopper = shopper
        self.on_change("shopper")
        return shopper

    def _shopper_of(self, card: dict, how: str, presented: dict) -> Shopper:
        holder = card.get("holder") or {}
        shopper = Shopper(
            card_id=card["id"], last4=card.get("last4"), first_name=holder.get("first_name"),
            balance_minor=None, stars=holder.get("stars"), status=card.get("status", "active"),
            held_minor=(card.get("held") or {}).get("amount", 0), identified_by=how,
            presented=presented,
        )  # fmt: skip
        self._set_available(shopper, card["balance"]["amount"])
        return shopper

    def _set_available(self, shopper: Shopper, available: int) -> None:
        """The card's balance outside allowances changed: what it can pay here follows."""
        allowance = self.outbox.allowance_for_card(shopper.card_id)
        left = allowance.left_minor if allowance is not None else 0
        with self._lock:
            shopper.available_minor = available
            shopper.balance_minor = available + left
            if allowance is not None:
                shopper.allowance_left_minor = left
                shopper.allowance_id = allowance.id

    def _refresh_shopper(self, shopper: Shopper) -> None:
        if shopper.identified_by == "pay_code":
            return  # a pay code looked up again might have been used meanwhile
        with contextlib.suppress(TillError, Unreachable):
            card = self._call("POST", "/v1/pos/lookups", shopper.presented, offline_ok=True)
            shopper.held_minor = (card.get("held") or {}).get("amount", 0)
            self._set_available(shopper, card["balance"]["amount"])

    def _identify_offline(self, presented: dict, how: str) -> Shopper:
        if how == "pay_code":
            raise TillError(
                "offline_pay_code",
                "The API is unreachable: a pay code cannot be "
                "checked offline. Ask for the card, or take cash or a bank card.",
            )
        allowance = self.outbox.match_allowance(**presented)
        if allowance is None:
            return Shopper(
                card_id=None, last4=presented.get("card_number", "")[-4:] or None,
                first_name=None, balance_minor=None, stars=None, status="unknown",
                held_minor=0, identified_by=how, presented=presented, allowance_left_minor=0,
                offline=True,
            )  # fmt: skip
        holder = allowance.holder or {}
        return Shopper(
            card_id=allowance.card_id, last4=allowance.last4, first_name=holder.get("first_name"),
            balance_minor=None, stars=holder.get("stars"), status="active",
            held_minor=allowance.left_minor, identified_by=how, presented=presented,
            allowance_left_minor=allowance.left_minor, allowance_id=allowance.id, offline=True,
        )  # fmt: skip

    def forget_shopper(self) -> None:
        with self._lock:
            self.shopper = None
        self.on_change("shopper")

    def _ask_allowance(self, shopper: Shopper) -> bool:
        """Ask the server to set aside an offline allowance for the card at this till (it is
        held on the card's ledger account, so it cannot be spent twice); best effort."""
        amount = self.config.offline_allowance_minor
        if amount <= 0 or shopper.status != "active" or shopper.identified_by == "pay_code":
            return False
        live = self.outbox.allowance_for_card(shopper.card_id)
        if live is not None or not shopper.available_minor:
            return False  # one per card and till; an empty card has nothing to set aside
        body = {"card": shopper.presented, "amount": money(amount, self.currency)}
        try:
            allowance = self._send("allowance", "POST", "/v1/pos/offline-allowances", body)
        except (TillError, OfflineQueued):
            return False  # no allowance: offline, this card pays by cash or bank card
        self._allowance_granted(allowance, shopper)
        return True

    def _release_allowance_of(self, shopper: Shopper) -> bool:
        """Give this till's allowance for the card back before the card pays online more
        than its account holds outside it (it is asked for again after the sale)."""
        allowance = self.outbox.allowance_for_card(shopper.card_id)
        if allowance is None:
            return False
        try:
            self._send(
                "allowance_release", "POST",
                f"/v1/pos/offline-allowances/{allowance.id}/release", {},
            )  # fmt: skip
        except (TillError, OfflineQueued):
            return False
        self.outbox.allowance_released(allowance.id)
        shopper.allowance_left_minor = shopper.allowance_id = None
        return True

    def _allowance_granted(self, body: dict, shopper: Shopper | None = None) -> None:
        kept = self.outbox.keep_allowance(body)
        with self._lock:
            current = shopper or self.shopper
            if current is not None and current.card_id == kept.card_id:
                current.allowance_left_minor = kept.left_minor
                current.allowance_id = kept.id

    def release_allowances(self) -> list[dict]:
        """Give back what is left of this till's offline allowances (after the queue has
        drained: a sale made against one must reach the server first)."""
        released = []
        for allowance in self.outbox.allowances():
            try:
                body = self._send(
                    "allowance_release", "POST",
                    f"/v1/pos/offline-allowances/{allowance.id}/release", {},
                )  # fmt: skip
            except TillError as e:
                if e.status in (404, 409, 410):
                    self.outbox.allowance_released(allowance.id)
                    continue
                raise
            self.outbox.allowance_released(allowance.id)
            released.append(body)
        return released

    # paying -------------------------------------------------------------------------------

    def pay(self, tenders: list[Tender]) -> SaleResult:
        """Ring the sale up with these tenders (their sum must be the total; one tender's
        amount may be None: the rest). Offline, cash and bank card queue, card balance only
        within the card's offline allowance. The receipt is printed; the sale is cleared."""
        self._require_shift()
        with self._lock:
            lines = [(line.sku, line.quantity) for line in self.sale.lines]
            total = self.sale.total_minor
            shopper = self.shopper
        if not lines:
            raise TillError("empty_sale", "Nothing to pay: scan something first.")
        tenders = _fill_tenders(tenders, total)
        card_minor = sum(t.amount_minor for t in tenders if t.type == "card_balance")
        if card_minor and shopper is None:
            raise TillError("card_required", "Paying from a card balance needs the shopper's "
                            "card: tap, scan or type it.")  # fmt: skip
        body = {
            "lines": [{"sku": sku, "quantity": q} for sku, q in lines],
            "tenders": [_tender_body(t, self.currency) for t in tenders],
        }
        if (
            shopper is not None
            and shopper.card_id is not None
            or (shopper is not None and not shopper.offline)
        ):
            body["customer"] = shopper.presented
        local = self._local_receipt(lines, tenders, shopper)
        if not self.online and self.queue_length:
            self.drain()  # the API may be back: try before deciding to sell offline
        if not self.online:
            entry = self._queue_offline_sale(body, local, card_minor, shopper, None)
            return self._offline_result(entry, local, tenders)
        released = False
        known = shopper is not None and shopper.card_id is not None
        if card_minor and known and card_minor > (shopper.available_minor or 0):
            released = self._release_allowance_of(shopper)
        try:
            return self._pay_online(body, local, tenders, shopper, total, card_minor)
        finally:
            if released:  # held here no more, and perhaps held again: read what the card has
                self._ask_allowance(shopper)
                self._refresh_shopper(shopper)
                self.on_change("shopper")

    def _pay_online(self, body, local, tenders, shopper, total, card_minor) -> SaleResult:
        entry = self.outbox.add("sale", "POST", "/v1/sales", body, token=self.token)
        try:
            answer = self._attempt(entry)
        except Unreachable as e:
            if e.maybe_sent:
                self._queued()
                if card_minor:
                    raise OfflineQueued(UNKNOWN_OUTCOME, entry.id, maybe_sent=True) from None
                local["note"] = UNKNOWN_OUTCOME
                return self._offline_result(entry, local, tenders)
            entry = self._queue_offline_sale(body, local, card_minor, shopper, entry)
            return self._offline_result(entry, local, tenders)
        except ApiError as e:
            if e.code == "insufficient_funds" and shopper is not None:
                raise self._insufficient(e, shopper, total, card_minor) from None
            raise TillError(e.code, e.message, e.details, e.status) from None
        return self._sold(answer, tenders, shopper, entry)

    def _queue_offline_sale(self, body, local, card_minor, shopper, entry: Entry | None):
        """Write the sale as made offline (to replay when the API answers): card balance only
        within this card's allowance, which is decremented in the same write."""
        offline = {"made_at": _now(), "allowance": None}
        use = None
        if card_minor:
            allowance = None
            if shopper is not None:
                allowance = self.outbox.match_allowance(**shopper.presented) or (
                    shopper.card_id and self.outbox.allowance_for_card(shopper.card_id)
                )
            left = allowance.left_minor if allowance else 0
            if allowance is None or left < card_minor:
                if entry is not None:
                    self.outbox.cancel(entry.id, "unreachable; card balance over the allowance")
                raise TillError(
                    "offline_card_refused",
                    "The API is unreachable: the card balance can pay offline only within "
                    f"this card's offline allowance ({left / 100:.2f} left here). Take cash "
                    "or a bank card for the rest.",
                    {"allowance_left": money(left, self.currency),
                     "requested": money(card_minor, self.currency)},
                )  # fmt: skip
            offline["allowance"] = allowance.token
            use = (allowance.id, card_minor)
            if shopper is not None:
                shopper.allowance_left_minor = left - card_minor
        body = dict(body, offline=offline)
        if card_minor and "customer" in body and "pay_code" in body["customer"]:
            del body["customer"]
        # Unknown offline: a card number still earns its Stars on replay, a tag may not.
        unknown = shopper is not None and shopper.card_id is None
        if unknown and "customer" in body and "card_number" not in body["customer"]:
            del body["customer"]
        try:
            if entry is None:
                entry = self.outbox.add("sale", "POST", "/v1/sales", body, token=self.token,
                                        offline=True, local=local, claim=False,
                                        allowance_use=use)  # fmt: skip
            else:
                entry = self.outbox.go_offline(entry.id, body, local, use)
        except AllowanceExhausted:
            raise TillError("offline_card_refused", "The card's offline allowance is used up: "
                            "take cash or a bank card.") from None  # fmt: skip
        self._queued()
        return entry

    def _offline_result(self, entry: Entry, local: dict, tenders) -> SaleResult:
        local["number"] = f"Q-{entry.id:06d}"
        change = _change(tenders)
        self._keep_receipt(local)
        printed, error = self._print("print_receipt", local)
        with self._lock:
            self.sale = SaleDraft()
        self.on_change("sale")
        return SaleResult(None, local, change, True, printed, error, entry.id)

    def _sold(self, answer, tenders, shopper: Shopper | None, entry: Entry) -> SaleResult:
        sale = answer.body
        receipt = self._receipt_of(sale) or self._receipt_from_sale(sale, tenders, shopper)
        if shopper is not None and sale.get("card_balance"):
            self._set_available(shopper, sale["card_balance"]["amount"])
        stars = (receipt or {}).get("stars")
        if shopper is not None and stars is not None and sale.get("customer_id") is not None:
            with self._lock:
                shopper.stars = stars["balance"]  # with what this sale earned
        if shopper is not None:
            self.on_change("shopper")
        self._keep_receipt(receipt)
        self._queued()  # a replayer may have counted this sale while it was being sent
        printed, error = self._print("print_receipt", receipt)
        with self._lock:
            self.sale = SaleDraft()
        self.on_change("sale")
        return SaleResult(sale, receipt, _change(tenders), False, printed, error, entry.id)

    def _insufficient(self, e: ApiError, shopper: Shopper, total: int, card_minor: int):
        """Insufficient funds: what the card can pay now, and the split to offer."""
        self._refresh_shopper(shopper)
        self.on_change("shopper")
        balance = shopper.available_minor
        details = dict(e.details)
        if balance is not None:
            details["balance"] = money(balance, self.currency)
            details["split"] = [
                {"type": "card_balance", "amount": money(balance, self.currency)},
                {"type": "cash or bank_card", "amount": money(total - balance, self.currency)},
            ]
            message = (f"The card holds {balance / 100:.2f}, not {card_minor / 100:.2f}: pay "
                       f"{balance / 100:.2f} from the card and {(total - balance) / 100:.2f} "
                       "by cash or bank card.")  # fmt: skip
        else:
            message = e.message
        return TillError(e.code, message, details, e.status)

    def _local_receipt(self, lines, tenders, shopper: Shopper | None) -> dict:
        """The receipt of a sale not (yet) on the server: the same shape, no id or link."""
        store = self.store or {}
        c = self.currency
        items = []
        for sku, quantity in lines:
            product = self._by_sku.get(sku, {})
            unit = product.get("price", {}).get("amount", 0)
            items.append({
                "sku": sku, "name": product.get("name", sku), "quantity": quantity,
                "unit_price": money(unit, c), "line_total": money(unit * quantity, c),
            })  # fmt: skip
        cash = [t for t in tenders if t.type == "cash"]
        given = sum((t.given_minor or t.amount_minor) for t in cash)
        return {
            "id": None, "kind": "sale", "url": None, "number": None, "sale_id": None,
            "refund_id": None, "sale_number": None,
            "store": store.get("store") or {"name": "", "address": ""},
            "till": store.get("till", ""),
            "cashier": (self.cashier or {}).get("name", "").split(" ")[0],
            "created_at": _now(), "currency": c, "lines": items,
            "total": money(sum(i["line_total"]["amount"] for i in items), c),
            "tenders": [{"type": t.type, "amount": money(t.amount_minor, c)} for t in tenders],
            "cash_given": money(given, c) if cash else None,
            "change": money(_change(tenders), c) if cash else None,
            # The balance after is not known until the server has the sale; the printed
            # receipt's link (once replayed, a reprint) shows it.
            "card": None,
            "stars": None, "offline": True,
        }  # fmt: skip

    def _receipt_of(self, body: dict) -> dict | None:
        """The server's receipt of a sale or refund (for printing), if it can be read."""
        receipt = body.get("receipt")
        if not receipt or not receipt.get("id"):
            return None
        try:
            full = self.api.get(f"/v1/receipts/{receipt['id']}")
        except (ApiError, Unreachable):
            return None
        self.store = {"store": full.get("store"), "till": full.get("till")}
        self._save_session()
        return full

    def _receipt_from_sale(self, sale: dict, tenders, shopper: Shopper | None) -> dict:
        receipt = self._local_receipt(
            [(line["sku"], line["quantity"]) for line in sale["lines"]], tenders, shopper
        )
        receipt.update(
            id=(sale.get("receipt") or {}).get("id"), url=(sale.get("receipt") or {}).get("url"),
            number=sale.get("number"), sale_id=sale["id"], offline=False,
            lines=[{k: line[k] for k in ("sku", "name", "quantity", "unit_price", "line_total")}
                   for line in sale["lines"]],
            total=sale["total"], created_at=str(sale.get("created_at")),
        )  # fmt: skip
        if receipt["card"] is not None and sale.get("card_balance"):
            receipt["card"]["balance_after"] = sale["card_balance"]
        return receipt

    # other till work ----------------------------------------------------------------------

    def top_up(self, amount_minor: int, tender: str) -> dict:
        """Load the presented card with cash or a bank card taken at the till."""
        self._require_shift()
        shopper = self.shopper
        if shopper is not None and shopper.offline:
            raise TillError("unreachable", "The API is unreachable: a card is loaded only "
                            "online. Try again when the till is back online.")  # fmt: skip
        if shopper is None or shopper.card_id is None:
            raise TillError("card_required", "Present the card to load first.")
        top_up = self._send(
            "top_up", "POST", f"/v1/cards/{shopper.card_id}/top-ups",
            {"amount": money(amount_minor, self.currency), "tender": tender},
        )  # fmt: skip
        if top_up.get("card_balance"):
            self._set_available(shopper, top_up["card_balance"]["amount"])
            self.on_change("shopper")
        return top_up

    def sell_gift_card(self, amount_minor: int, tender: str, *, card_number=None,
                       nfc_uid=None) -> dict:  # fmt: skip
        """Sell a physical gift card of a batch: it is activated and loaded in one go."""
        self._require_shift()
        card = _presented(card_number=card_number, nfc_uid=nfc_uid)
        return self._send(
            "gift_card", "POST", "/v1/pos/gift-cards",
            {"card": card, "amount": money(amount_minor, self.currency), "tender": tender},
        )  # fmt: skip

    def bind_nfc(self, uid: str, *, card_number=None, security_code=None, pay_code=None):
        """Bind an NFC tag to the card its holder proves is theirs (the physical card's number
        and security code, or a pay code from their app)."""
        self._require_session()
        if pay_code:
            proof = {"pay_code": pay_code}
        elif card_number and security_code:
            proof = {"card_number": card_number, "security_code": security_code}
        else:
            raise TillError("proof_required", "Binding a tag needs the card's number with its "
                            "security code, or a pay code from the owner's app.")  # fmt: skip
        return self._call("POST", "/v1/pos/nfc-bindings", {"uid": uid.upper(), "card": proof})

    def sales_of_day(self, date: str | date | None = None, cursor: str | None = None) -> dict:
        """This store's sales of a day (UTC; today by default), newest first, a page."""
        day = str(date or datetime.now(UTC).date())
        params = {"date": day, "limit": 50}
        if cursor:
            params["cursor"] = cursor
        return self._call("GET", "/v1/sales", params=params)

    def refund(self, sale_id: int, lines: list[tuple[str, int]] | None = None) -> dict:
        """Refund a whole sale or some of its lines, back to the tenders it was paid with;
        the refund's receipt is printed."""
        self._require_shift()
        body = {}
        if lines:
            body["lines"] = [{"sku": sku, "quantity": q} for sku, q in lines]
        refund = self._send("refund", "POST", f"/v1/sales/{sale_id}/refunds", body)
        receipt = self._receipt_of(refund)
        if receipt is not None:
            self._keep_receipt(receipt)
            printed, error = self._print("print_receipt", receipt)
            refund = dict(refund, printed=printed, printer_error=error)
        return refund

    def reprint(self, receipt_id: str | None = None) -> None:
        """Print a receipt again: the last one by default, or any by its id."""
        if receipt_id:
            try:
                receipt = self.api.get(f"/v1/receipts/{receipt_id}")
            except ApiError as e:
                raise TillError(e.code, e.message, e.details, e.status) from None
        else:
            receipt = self.last_receipt
            if receipt is None:
                raise TillError("no_receipt", "No receipt to print again.")
        printed, error = self._print("print_receipt", receipt)
        if not printed:
            raise TillError("printer_error", f"The receipt was not printed: {error}")

    def _keep_receipt(self, receipt: dict) -> None:
        """The last receipt, kept on disk too (a reprint may come from another process)."""
        self.last_receipt = receipt
        _write_private(self.config.state_dir / "last_receipt.json", receipt)
        self.on_change("receipt")

    def _load_last_receipt(self) -> None:
        with contextlib.suppress(FileNotFoundError, ValueError):
            self.last_receipt = json.loads(
                (self.config.state_dir / "last_receipt.json").read_text()
            )

    def _print(self, method: str, document: dict) -> tuple[bool, str | None]:
        """Print; a printer that fails never blocks or loses the sale: the till says why."""
        if self.printer is None:
            return False, "no printer"
        try:
            getattr(self.printer, method)(document)
        except Exception as e:  # any printer failure is shown, the sale stands
            self.printer_status = f"error: {e}"
            self.on_change("printer")
            return False, str(e) or type(e).__name__
        if self.printer_status != "ready":
            self.printer_status = "ready"
            self.on_change("printer")
        return True, None

    # the outbox and the link with the API -------------------------------------------------

    def queue(self, states: tuple[str, ...] | None = None) -> list[dict]:
        return [e.summary() for e in self.outbox.entries(states)]

    def drain(self) -> dict:
        """Send what waits in the outbox, oldest first, until it is empty or the API stops
        answering. Returns how many were sent, refused, and are left."""
        with self._drain_lock:
            return self._drain()

    def _drain(self) -> dict:
        sent = refused = 0
        while True:
            entry = self.outbox.claim_next()
            if entry is None:
                break
            try:
                answer = self._attempt(entry, replayed=True)
            except Unreachable:
                break
            except ApiError as e:
                if e.status == 401:
                    break  # no session to send it with: it waits for a cashier
                refused += 1
                self.on_change("refused")
                continue
            sent += 1
            self._after_replay(entry, answer.body)
        self._queued()
        return {"sent": sent, "refused": refused, "left": self.queue_length}

    def _after_replay(self, entry: Entry, body: dict | None) -> None:
        if entry.kind == "allowance" and body:
            self._allowance_granted(body)
        elif entry.kind == "allowance_release":
            allowance_id = int(entry.path.rstrip("/").split("/")[-2])
            self.outbox.allowance_released(allowance_id)

    def _attempt(self, entry: Entry, *, replayed: bool = False):
        """Send one outbox entry and write its answer. A refusal is kept with the entry; no
        answer leaves it pending (to replay with the same key)."""
        token = entry.token or self.token
        self.outbox.attempted(entry.id)
        try:
            try:
                answer = self.api.call(entry.method, entry.path, json=entry.body, token=token,
                                       idempotency_key=entry.idempotency_key)  # fmt: skip
            except ApiError as e:
                if e.status == 401 and self.token and token != self.token:
                    # The session it was made under has ended: the till's current one sends it.
                    answer = self.api.call(entry.method, entry.path, json=entry.body,
                                           token=self.token,
                                           idempotency_key=entry.idempotency_key)  # fmt: skip
                else:
                    raise
        except Unreachable as e:
            self.outbox.failed_attempt(entry.id, {"code": "unreachable", "message": e.reason})
            self._set_online(False)
            raise
        except ApiError as e:
            self._set_online(True)
            if e.retryable:
                self.outbox.failed_attempt(entry.id, e.body()["error"])
                self._set_online(False)
                raise Unreachable(e.code != "database_unavailable", e.message) from None
            if e.status == 401:
                self.outbox.failed_attempt(entry.id, e.body()["error"])
            else:
                self.outbox.refused(entry.id, e.status, e.body()["error"], replayed=replayed)
            raise
        self.outbox.answered(entry.id, answer.status, answer.body)
        self._set_online(True)
        return answer

    def _send(self, kind: str, method: str, path: str, body: dict) -> dict:
        """A value-moving request through the outbox: written, then sent. No connection:
        refused (it never left). No answer: it stays queued, to be replayed with its key."""
        self._require_session()
        entry = self.outbox.add(kind, method, path, body, token=self.token)
        try:
            answer = self._attempt(entry)
        except Unreachable as e:
            if not e.maybe_sent:
                self.outbox.cancel(entry.id, e.reason)
                raise TillError("unreachable", "The API is unreachable: nothing was done. "
                                "Try again when the till is back online.",
                                {"reason": e.reason}) from None  # fmt: skip
            self._queued()
            raise OfflineQueued(UNKNOWN_OUTCOME, entry.id, maybe_sent=True) from None
        except ApiError as e:
            raise TillError(e.code, e.message, e.details, e.status) from None
        finally:
            self._queued()
        return answer.body

    def _call(self, method: str, path: str, body: dict | None = None, *, token=None,
              params=None, offline_ok: bool = False):  # fmt: skip
        """A request that moves nothing: an error is a TillError; no answer is a TillError
        too unless the caller has an offline way (`offline_ok`: Unreachable is raised)."""
        try:
            answer = self.api.call(method, path, json=body, params=params,
                                   token=token or self._require_session())  # fmt: skip
        except Unreachable as e:
            self._set_online(False)
            if offline_ok:
                raise
            raise TillError("unreachable", "The API is unreachable. Try again when the till "
                            "is back online.", {"reason": e.reason}) from None  # fmt: skip
        except ApiError as e:
            self._set_online(not e.retryable)
            if e.status == 401 and token is None:
                self._session_ended()
            raise TillError(e.code, e.message, e.details, e.status) from None
        self._set_online(True)
        return answer.body

    def _session_ended(self) -> None:
        with self._lock:
            self.session = self.cashier = None
            self._save_session()
        self.on_change("cashier")

    def _set_online(self, online: bool) -> None:
        if online != self.online:
            self.online = online
            self.on_change("online")
            if online and self._replayer is not None:
                self._replayer.kick()

    def _queued(self) -> None:
        length = self.outbox.pending_count()
        if length != self.queue_length:
            self.queue_length = length
            self.on_change("queue")


class Replayer(threading.Thread):
    """Drains the outbox whenever there is something in it: at once when kicked (the API
    answered again), else every `replay_interval_s`."""

    def __init__(self, till: Till):
        super().__init__(name="till-replayer", daemon=True)
        self.till = till
        self._wake = threading.Event()
        self._stopping = threading.Event()

    def kick(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()
        self.join(timeout=5)

    def run(self) -> None:
        while not self._stopping.is_set():
            self._wake.clear()
            if self.till.outbox.pending_count():
                with contextlib.suppress(Exception):  # the replayer outlives any one error
                    self.till.drain()
            self._wake.wait(self.till.config.replay_interval_s)


def _write_private(path, data) -> None:
    """Write JSON readable by this user only (it may hold the cashier's session), whole or
    not at all."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, default=str)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def make_printer(config: Config):
    """The receipt printer the config names (pos_client.hardware.printer), or None."""
    if not config.printer_target:
        return None
    try:
        from pos_client.hardware.printer import ReceiptPrinter
    except ImportError:
        return None
    return ReceiptPrinter(config.printer_target, config.printer_profile)


def _presented(*, card_number=None, nfc_uid=None, pay_code=None) -> dict:
    given = {
        k: v
        for k, v in (("card_number", card_number), ("nfc_uid", nfc_uid), ("pay_code", pay_code))
        if v
    }
    if len(given) != 1:
        raise TillError("bad_card", "Present exactly one of a card number, an NFC tag or a "
                        "pay code.")  # fmt: skip
    if "card_number" in given:
        number = given["card_number"].replace(" ", "")
        if not luhn_valid(number):
            raise TillError("card_number_invalid", "That is not a card number (16 digits).")
        given["card_number"] = number
    if "nfc_uid" in given:
        given["nfc_uid"] = given["nfc_uid"].replace(":", "").upper()
    if "pay_code" in given and not (len(pay_code) == 12 and pay_code.isdigit()):
        raise TillError("pay_code_invalid", "A pay code is 12 digits.")
    return given


def _fill_tenders(tenders: list[Tender], total: int) -> list[Tender]:
    """Check the tenders and give the one without an amount what the others leave."""
    if not tenders:
        raise TillError("no_tender", "Give at least one tender.")
    open_ = [t for t in tenders if t.amount_minor is None]
    if len(open_) > 1:
        raise TillError("bad_tenders", "Only one tender may take 'the rest'.")
    for t in tenders:
        if t.type not in TENDER_TYPES:
            raise TillError("bad_tenders", f"Unknown tender {t.type!r}.")
    fixed = sum(t.amount_minor for t in tenders if t.amount_minor is not None)
    out = []
    for t in tenders:
        amount = t.amount_minor if t.amount_minor is not None else total - fixed
        if amount <= 0:
            raise TillError("bad_tenders", "Each tender pays more than 0.",
                            {"total": total, "tendered": fixed})  # fmt: skip
        if t.given_minor is not None and (t.type != "cash" or t.given_minor < amount):
            raise TillError("bad_tenders", "Cash given must cover the cash tender.")
        out.append(Tender(t.type, amount, t.given_minor))
    if sum(t.amount_minor for t in out) != total:
        raise TillError(
            "tenders_do_not_match_total",
            f"The tenders make {sum(t.amount_minor for t in out) / 100:.2f}; the total is "
            f"{total / 100:.2f}.",
            {"total": total, "tendered": sum(t.amount_minor for t in out)},
        )
    return out


def _tender_body(t: Tender, currency: str) -> dict:
    body = {"type": t.type, "amount": money(t.amount_minor, currency)}
    if t.given_minor is not None and t.given_minor != t.amount_minor:
        body["given"] = money(t.given_minor, currency)
    return body


def _change(tenders) -> int:
    return sum((t.given_minor - t.amount_minor) for t in tenders
               if t.type == "cash" and t.given_minor is not None)  # fmt: skip


__all__ = [
    "DraftLine", "OfflineQueued", "SaleDraft", "SaleResult", "Shopper", "Tender", "Till",
    "TillError",
]  # fmt: skip

"""The till's subcommands, for scripts and for a till without its screen.

`python -m pos_client [--config PATH] <command> ...` prints JSON on stdout and exits 0 when
done, 1 when refused (the API's or the till's error, as `{"error": {...}}`), 2 on bad usage
(or a config it cannot use), and 3 when the request is queued to be replayed: made offline,
or sent without an answer (it will be retried with the same Idempotency-Key: do not do it
again). With no command, the till's screen (pos_client.ui).

Amounts are minor units (`445` is 4.45) or decimals with a point (`4.45`).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path

from pos_client import config as config_module
from pos_client.config import ConfigError
from pos_client.till import OfflineQueued, SaleResult, Tender, Till, TillError

DONE, REFUSED, USAGE, QUEUED = 0, 1, 2, 3


class Usage(Exception):
    """The command line asks for something malformed."""


def amount(text: str) -> int:
    """Minor units from "445" or "4.45"."""
    try:
        if "." in text:
            value = Decimal(text) * 100
            if value != value.to_integral_value():
                raise Usage(f"{text!r}: at most two decimals.")
            minor = int(value)
        else:
            minor = int(text)
    except (InvalidOperation, ValueError):
        raise Usage(f"{text!r} is not an amount.") from None
    if minor < 0:
        raise Usage(f"{text!r}: an amount is not negative.")
    return minor


def tender(text: str) -> Tender:
    """`card_balance`, `card_balance=AMOUNT`, `cash=[AMOUNT][:GIVEN]`, `bank_card[=AMOUNT]`;
    without an amount, the tender takes what the others leave."""
    kind, _, rest = text.partition("=")
    if kind not in ("card_balance", "cash", "bank_card"):
        raise Usage(f"Unknown tender {kind!r} (card_balance, cash, bank_card).")
    if not rest:
        return Tender(kind, None)
    value, _, given = rest.partition(":")
    if given and kind != "cash":
        raise Usage("Only cash has an amount given.")
    return Tender(kind, amount(value) if value else None, amount(given) if given else None)


def sku_quantity(text: str) -> tuple[str, int]:
    sku, _, quantity = text.partition(":")
    if not sku:
        raise Usage("An empty SKU.")
    try:
        q = int(quantity) if quantity else 1
    except ValueError:
        raise Usage(f"{text!r}: SKU[:QUANTITY].") from None
    if q < 1:
        raise Usage(f"{text!r}: a quantity is 1 or more.")
    return sku, q


def _card_options(p: argparse.ArgumentParser, *, pay_code: bool = True) -> None:
    group = p.add_mutually_exclusive_group()
    group.add_argument("--card", metavar="NUMBER", help="the card's 16-digit number")
    group.add_argument("--nfc-uid", metavar="UID", help="an NFC tag's UID (hex)")
    if pay_code:
        group.add_argument("--pay-code", metavar="CODE", help="the app's 12-digit pay code")


def _presented(args) -> dict:
    return {
        "card_number": args.card,
        "nfc_uid": args.nfc_uid,
        "pay_code": getattr(args, "pay_code", None),
    }


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m pos_client", description=__doc__.split("\n")[0])
    p.add_argument("--config", help="the till's TOML file (default $OMNICARD_POS_CONFIG or "
                   "./pos.toml)")  # fmt: skip
    sub = p.add_subparsers(dest="command", metavar="command")

    s = sub.add_parser("sign-in", help="a cashier signs in (staff code and PIN)")
    s.add_argument("--staff-code", required=True)
    s.add_argument("--pin", required=True)
    sub.add_parser("sign-out", help="end the cashier's session")

    shift = sub.add_parser("shift", help="the till's shift").add_subparsers(
        dest="shift_command", required=True
    )
    s = shift.add_parser("open", help="open with the drawer's float")
    s.add_argument("--float", dest="float_", type=str, required=True, metavar="AMOUNT")
    s = shift.add_parser("close", help="close with the cash counted; prints the report")
    s.add_argument("--counted", type=str, required=True, metavar="AMOUNT")
    shift.add_parser("current", help="the open shift")

    s = sub.add_parser("lookup", help="a card's balance and holder")
    _card_options(s)

    s = sub.add_parser("sale", help="ring up and pay a sale")
    s.add_argument("--sku", action="append", default=[], metavar="SKU[:QTY]")
    s.add_argument("--scan", action="append", default=[], metavar="CODE",
                   help="a scanned code: barcode, card number or pay code")  # fmt: skip
    _card_options(s)
    s.add_argument("--tender", action="append", default=[], required=True,
                   metavar="TYPE[=AMOUNT[:GIVEN]]")  # fmt: skip

    s = sub.add_parser("top-up", help="load the card presented (cash or bank card)")
    _card_options(s)
    s.add_argument("--amount", required=True)
    s.add_argument("--tender", choices=("cash", "bank_card"), required=True)

    gift = sub.add_parser("gift-card", help="physical gift cards").add_subparsers(
        dest="gift_command", required=True
    )
    s = gift.add_parser("sell", help="sell and load a gift card of a batch")
    _card_options(s, pay_code=False)
    s.add_argument("--amount", required=True)
    s.add_argument("--tender", choices=("cash", "bank_card"), required=True)

    s = sub.add_parser("bind-nfc", help="bind an NFC tag to the card its holder proves")
    s.add_argument("--uid", required=True)
    s.add_argument("--card", metavar="NUMBER")
    s.add_argument("--security-code")
    s.add_argument("--pay-code")

    s = sub.add_parser("refund", help="refund a sale, whole or some lines")
    s.add_argument("sale_id", type=int)
    s.add_argument("--line", action="append", default=[], metavar="SKU[:QTY]")

    s = sub.add_parser("sales", help="this store's sales of a day")
    s.add_argument("--date", help="YYYY-MM-DD (UTC; today by default)")
    s.add_argument("--cursor")

    s = sub.add_parser("reprint", help="print a receipt again (the last by default)")
    s.add_argument("receipt_id", nargs="?")

    s = sub.add_parser("queue", help="the outbox: requests waiting or refused on replay")
    s.add_argument("queue_command", nargs="?", choices=("list", "drain"), default="list")
    s.add_argument("--all", action="store_true", help="also what was sent")

    s = sub.add_parser("allowance", help="offline allowances held by this till")
    s.add_argument("allowance_command", nargs="?", choices=("list", "release"), default="list")

    s = sub.add_parser("catalog", help="read the catalog again (kept for offline use)")
    s.add_argument("--search", help="only products matching")

    sim = sub.add_parser("sim", help="simulated hardware for demos and tests").add_subparsers(
        dest="sim_command", required=True
    )
    s = sim.add_parser("tap", help="tap a card number or a UID on the simulated NFC reader")
    s.add_argument("value")
    s.add_argument("--reader", help="the reader's udp: path (default: the config's)")
    s.add_argument("--timeout", type=float, default=10.0)
    s = sim.add_parser("scanner", help="a pty scanner: type codes, one a line")
    s.add_argument("--link", help="also make a symlink to the scanner's device here")

    s = sub.add_parser("setup", help="write a simulated till's config for the demo server")
    s.add_argument("--out", default="pos.toml")
    s.add_argument("--api-url", default="http://127.0.0.1:5000")
    s.add_argument("--state-dir", default="instance/till")
    s.add_argument("--store", type=int, default=0, help="which demo store's till")
    s.add_argument("--nfc-port", type=int, default=54321)
    return p


def emit(body) -> None:
    print(json.dumps(body, indent=2, default=str, sort_keys=False))


def main(argv: list[str] | None = None) -> int:
    p = parser()
    args = p.parse_args(argv)
    if args.command is None:
        return _screen(args)
    try:
        if args.command == "setup":
            return _setup(args)
        if args.command == "sim":
            return _sim(args)
        config = config_module.load(args.config)
    except ConfigError as e:
        emit({"error": {"code": "config", "message": str(e), "details": {}}})
        return USAGE
    except Usage as e:
        emit({"error": {"code": "usage", "message": str(e), "details": {}}})
        return USAGE
    till = Till(config, hardware=False)
    try:
        code = run(till, args)
        if args.command in MOVES_VALUE and till.online and till.queue_length:
            till.drain()  # the API answers: what waited from before goes now, in order
        return code
    except Usage as e:
        emit({"error": {"code": "usage", "message": str(e), "details": {}}})
        return USAGE
    except TillError as e:
        emit(e.body())
        return REFUSED
    except OfflineQueued as e:
        emit(e.body())
        return QUEUED
    finally:
        till.stop()


MOVES_VALUE = {"sale", "top-up", "gift-card", "refund", "shift"}


def run(till: Till, args) -> int:
    command = args.command
    if command == "sign-in":
        emit(till.sign_in(args.staff_code, args.pin))
    elif command == "sign-out":
        till.sign_out()
        emit({"signed_out": True})
    elif command == "shift":
        if args.shift_command == "open":
            emit(till.open_shift(amount(args.float_)))
        elif args.shift_command == "close":
            emit(till.close_shift(amount(args.counted)))
        else:
            shift = till.refresh_shift()
            if shift is None:
                raise TillError("no_open_shift", "No shift is open on this till.")
            emit(shift)
    elif command == "lookup":
        emit(_shopper(till.identify(**_presented(args))))
    elif command == "sale":
        return _sale(till, args)
    elif command == "top-up":
        till.identify(**_presented(args))
        emit(till.top_up(amount(args.amount), args.tender))
    elif command == "gift-card":
        emit(till.sell_gift_card(amount(args.amount), args.tender, card_number=args.card,
                                 nfc_uid=args.nfc_uid))  # fmt: skip
    elif command == "bind-nfc":
        emit(till.bind_nfc(args.uid, card_number=args.card, security_code=args.security_code,
                           pay_code=args.pay_code))  # fmt: skip
    elif command == "refund":
        lines = [sku_quantity(line) for line in args.line] or None
        emit(till.refund(args.sale_id, lines))
    elif command == "sales":
        emit(till.sales_of_day(args.date, args.cursor))
    elif command == "reprint":
        till.reprint(args.receipt_id)
        emit({"printed": True})
    elif command == "queue":
        if args.queue_command == "drain":
            result = till.drain()
            emit(result)
            return QUEUED if result["left"] else DONE
        states = None if args.all else ("pending", "refused")
        emit({"online": till.online, "queue_length": till.queue_length,
              "items": till.queue(states)})  # fmt: skip
    elif command == "allowance":
        if args.allowance_command == "release":
            if till.queue_length:
                raise TillError("queue_not_drained", "Offline sales still wait to be sent: "
                                "drain the queue first.")  # fmt: skip
            emit({"released": till.release_allowances()})
        else:
            emit({"items": [a.body() for a in till.outbox.allowances(status=None)]})
    elif command == "catalog":
        till.refresh_catalog()
        emit({"items": till.search(args.search) if args.search else till.catalog})
    return DONE


def _shopper(shopper) -> dict:
    return {k: v for k, v in vars(shopper).items()}


def _sale(till: Till, args) -> int:
    if not args.sku and not args.scan:
        raise Usage("A sale needs at least one --sku or --scan.")
    till.clear_sale()
    presented = _presented(args)
    if any(presented.values()):
        till.identify(**presented)
    for code in args.scan:
        till.scan(code)
    for text in args.sku:
        sku, quantity = sku_quantity(text)
        till.add(sku, quantity)
    result: SaleResult = till.pay([tender(t) for t in args.tender])
    emit(result.body())
    return QUEUED if result.offline else DONE


def _screen(args) -> int:
    """The cashier's screen (pos_client.ui), on the one Till the subcommands also drive."""
    try:
        config = config_module.load(args.config)
    except ConfigError as e:
        emit({"error": {"code": "config", "message": str(e), "details": {}}})
        return USAGE
    try:
        from pos_client.ui import TillApp
    except ImportError:
        emit({"error": {"code": "usage", "message": "No screen in this build: give a command "
                        "(--help lists them).", "details": {}}})  # fmt: skip
        return USAGE
    till = Till(config)
    app = TillApp(till)  # it takes the till's on_change before anything can change
    till.start()
    try:
        app.run()
    finally:
        till.stop()
    return DONE


def _sim(args) -> int:
    """Simulated hardware (pos_client.hardware): a tap on the udp NFC reader, a pty scanner."""
    if args.sim_command == "tap":
        reader = args.reader
        if not reader:
            reader = config_module.load(args.config).nfc_reader
        if not reader.startswith("udp:"):
            raise Usage("sim tap plays a tag on a udp: reader (set [nfc] reader).")
        try:
            from store_devices.nfc import sim_tap
        except ImportError:
            emit({"error": {"code": "no_hardware", "message": "store_devices.nfc is not "
                            "in this build.", "details": {}}})  # fmt: skip
            return REFUSED
        try:
            tap = sim_tap(reader, args.value, timeout_s=args.timeout)
        except TimeoutError as e:
            emit({"error": {"code": "timeout", "message": f"No reader read the tag: {e}",
                            "details": {}}})  # fmt: skip
            return REFUSED
        emit({"uid": tap.uid, "card_number": tap.card_number})
        return DONE
    try:
        from pos_client.hardware.scanner import sim_scanner
    except ImportError:
        emit({"error": {"code": "no_hardware", "message": "pos_client.hardware.scanner is not "
                        "in this build.", "details": {}}})  # fmt: skip
        return REFUSED
    sim_scanner(args.link)
    return DONE


def _setup(args) -> int:
    """A config for a till with simulated hardware, next to the demo server of scripts/run:
    the demo store's device secret is read with `flask demo get`."""
    root = Path(__file__).resolve().parents[1]
    flask = Path(sys.executable).with_name("flask")
    key = f"stores.{args.store}.pos.secret"
    found = subprocess.run(
        [str(flask), "--app", "wsgi", "demo", "get", key], cwd=root, capture_output=True,
        text=True, timeout=60,
    )  # fmt: skip
    secret = found.stdout.strip()
    if found.returncode != 0 or not secret:
        raise Usage(f"No demo till secret ({key}): run scripts/run first. "
                    f"{found.stderr.strip()[-300:]}")  # fmt: skip
    out = Path(args.out)
    state = Path(args.state_dir)
    text = f"""# A demo till with simulated hardware ({datetime.now(UTC):%Y-%m-%d}).
api_url = "{args.api_url}"
device_secret = "{secret}"
state_dir = "{state}"

[nfc]
reader = "udp:127.0.0.1:{args.nfc_port}"   # tap with: python -m pos_client sim tap NUMBER

[scanner]
port = ""          # python -m pos_client sim scanner --link {state}/scanner, then put that here
baudrate = 9600

[printer]
target = "file:{state}/receipts.bin"
profile = "TM-T88V"

[offline]
allowance_minor = 2500
"""
    fd_path = out.resolve()
    fd_path.write_text(text)
    fd_path.chmod(0o600)
    emit({"config": str(out), "api_url": args.api_url, "state_dir": str(state)})
    return DONE

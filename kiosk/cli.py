"""`python -m kiosk [--config PATH] [command]`: the kiosk daemon and its staff commands.

With no command, the daemon runs until Ctrl-C or SIGTERM. The commands print JSON on stdout
and exit 0 when done, 1 when refused (by the API, or no tag came, or a tag could not be
written), 2 on bad usage (or a config it cannot use), 3 when the API could not be reached.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

from kiosk import config as config_module
from kiosk.api import Api, ApiError, Unreachable
from kiosk.config import ConfigError
from kiosk.outbox import PENDING, REFUSED

DONE, REFUSED_EXIT, USAGE, UNREACHABLE = 0, 1, 2, 3
DEFAULT_SHOP = "http://127.0.0.1:5000"


class Usage(Exception):
    """The command line asks for something malformed."""


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m kiosk", description=__doc__.split("\n")[0])
    p.add_argument("--config", help="the kiosk's TOML file (default $OMNICARD_KIOSK_CONFIG or "
                   "./kiosk.toml)")  # fmt: skip
    sub = p.add_subparsers(dest="command", metavar="command")
    sub.add_parser("run", help="the daemon (also with no command)")

    sim = sub.add_parser("sim", help="simulated tags for demos and tests").add_subparsers(
        dest="sim_command", required=True
    )
    s = sim.add_parser("tap", help="tap a simulated tag on the udp reader: SKU, sign:CATEGORY, "
                       "a 16-digit card number, an http(s) URI, uid:HEX or garbled")  # fmt: skip
    s.add_argument("value")
    _reader_options(s)

    tags = sub.add_parser("tags", help="write and check tags").add_subparsers(
        dest="tags_command", required=True
    )
    s = tags.add_parser("write", help="write a product or sign link to the tag on the reader")
    what = s.add_mutually_exclusive_group(required=True)
    what.add_argument("--product", metavar="SKU")
    what.add_argument("--sign", metavar="CATEGORY")
    _reader_options(s)
    s = tags.add_parser("check", help="read the tag on the reader and say what it is")
    _reader_options(s)
    s.add_argument("--sim", metavar="VALUE", help="on a udp reader, check this simulated tag "
                   "(as sim tap takes it)")  # fmt: skip

    sub.add_parser("pair", help="a pairing code for the kiosk's screen (10 minutes, one use)")

    s = sub.add_parser("queue", help="the outbox: taps waiting or refused")
    s.add_argument("--all", action="store_true", help="also what was sent")

    s = sub.add_parser("setup", help="write a simulated kiosk's config for the demo server")
    s.add_argument("--out", default="kiosk.toml")
    s.add_argument("--api-url", default=DEFAULT_SHOP)
    s.add_argument("--shop-url", help="the host on the tags (default: the API's)")
    s.add_argument("--state-dir", default="instance/kiosk")
    s.add_argument("--store", type=int, default=0, help="which demo store's kiosk")
    s.add_argument("--nfc-port", type=int, default=54322)
    return p


def _reader_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--reader", help="the NFC reader (default: the config's)")
    p.add_argument("--shop-url", help="the host on the tags (default: the config's)")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for a tag")


def emit(body) -> None:
    print(json.dumps(body, indent=2, default=str))


def error(code: str, message: str) -> dict:
    return {"error": {"code": code, "message": message, "details": {}}}


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        if args.command in (None, "run"):
            return _daemon(args)
        if args.command == "setup":
            return _setup(args)
        if args.command in ("sim", "tags"):
            return _tags(args)
        return _api_command(args, config_module.load(args.config))
    except (ConfigError, Usage) as e:
        emit(error("config" if isinstance(e, ConfigError) else "usage", str(e)))
        return USAGE


def _daemon(args) -> int:
    from kiosk.daemon import Kiosk

    config = config_module.load(args.config)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")  # fmt: skip
    logging.getLogger("nfc").setLevel(logging.WARNING)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    # The reader's state and each tap are logged by the kiosk itself, once.
    logging.getLogger("store_devices.nfc").setLevel(logging.WARNING)
    if not config.reader:
        raise Usage("No NFC reader configured ([nfc] reader).")
    try:
        kiosk = Kiosk(config)
    except RuntimeError as e:
        emit(error("busy", str(e)))
        return REFUSED_EXIT

    def stop(signum, frame):
        logging.getLogger("kiosk").info("signal %s: stopping", signal.Signals(signum).name)
        kiosk.stopping.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    kiosk.run()
    return DONE


def _reader_and_shop(args) -> tuple[str, str]:
    reader, shop = args.reader, args.shop_url
    if not reader or not shop:
        try:
            config = config_module.load(args.config)
        except ConfigError:
            if not reader:
                raise
            config = None
        reader = reader or config.reader
        shop = shop or (config.shop_url if config else DEFAULT_SHOP)
    if not reader:
        raise Usage("No NFC reader (--reader or [nfc] reader in the config).")
    return reader, shop


def _tags(args) -> int:
    from kiosk import tags

    reader, shop = _reader_and_shop(args)
    simulated = reader.startswith("udp:")
    try:
        if args.command == "sim":
            if not simulated:
                raise Usage("sim tap plays a tag on a udp: reader.")
            from store_devices.nfc import play_tag

            tag, tap = tags.sim_tag(args.value, shop)
            play_tag(reader, tag, timeout_s=args.timeout)
            emit(tags.describe(tap))
            return DONE
        if args.tags_command == "write":
            uri = (tags.product_uri(shop, args.product) if args.product
                   else tags.sign_uri(shop, args.sign))  # fmt: skip
            blank = tags.blank_tag(uri) if simulated else None
            found = tags.write_tag(reader, uri, timeout_s=args.timeout, simulated=blank)
            emit({"written": {"uri": uri}, "read_back": found, "simulated": simulated})
            return DONE
        played = None
        if args.sim:
            if not simulated:
                raise Usage("--sim plays a tag on a udp: reader.")
            played, _ = tags.sim_tag(args.sim, shop)
        emit(tags.check_tag(reader, timeout_s=args.timeout, simulated=played))
        return DONE
    except ValueError as e:
        raise Usage(str(e)) from None
    except TimeoutError as e:
        emit(error("no_tag", f"No tag: {e}"))
        return REFUSED_EXIT
    except tags.TagError as e:
        emit(error("tag_not_written", str(e)))
        return REFUSED_EXIT
    except OSError as e:
        emit(error("reader", f"The reader {reader} cannot be used: {e}"))
        return UNREACHABLE


def _api_command(args, config) -> int:
    if args.command == "queue":
        from kiosk.outbox import Outbox

        outbox = Outbox(config.outbox_path)
        try:
            states = None if args.all else (PENDING, REFUSED)
            emit({"pending": outbox.pending_count(),
                  "items": [t.summary() for t in outbox.taps(states)]})  # fmt: skip
        finally:
            outbox.close()
        return DONE
    api = Api(config.api_url, config.device_secret, connect_timeout_s=config.connect_timeout_s,
              read_timeout_s=config.read_timeout_s)  # fmt: skip
    try:
        emit(api.post("/v1/kiosk/pairing-codes"))
        return DONE
    except ApiError as e:
        emit(e.body())
        return REFUSED_EXIT
    except Unreachable as e:
        emit(error("unreachable", str(e)))
        return UNREACHABLE
    finally:
        api.close()


def _setup(args) -> int:
    """A config for a kiosk with a simulated reader, next to the demo server of scripts/run:
    the demo store's kiosk secret is read with `flask demo get`."""
    root = Path(__file__).resolve().parents[1]
    flask = Path(sys.executable).with_name("flask")
    key = f"stores.{args.store}.kiosk.secret"
    found = subprocess.run(
        [str(flask), "--app", "wsgi", "demo", "get", key], cwd=root, capture_output=True,
        text=True, timeout=60,
    )  # fmt: skip
    secret = found.stdout.strip()
    if found.returncode != 0 or not secret:
        raise Usage(f"No demo kiosk secret ({key}): run scripts/run first. "
                    f"{found.stderr.strip()[-300:]}")  # fmt: skip
    out = Path(args.out)
    text = f"""# A demo kiosk with a simulated NFC reader ({datetime.now(UTC):%Y-%m-%d}).
api_url = "{args.api_url}"
device_secret = "{secret}"
state_dir = "{args.state_dir}"
shop_url = "{args.shop_url or args.api_url}"
debounce_s = 2.0

[nfc]
reader = "udp:127.0.0.1:{args.nfc_port}"   # tap with: python -m kiosk sim tap SKU
"""
    out.write_text(text)
    out.chmod(0o600)
    emit({"config": str(out), "api_url": args.api_url, "state_dir": args.state_dir})
    return DONE

"""The till's configuration: one TOML file.

```toml
api_url = "http://127.0.0.1:5000"
device_secret = "..."            # or env OMNICARD_POS_DEVICE_SECRET
state_dir = "instance/till"      # the outbox (SQLite) and the cashier session

[nfc]
reader = "udp:127.0.0.1:54321"   # "usb", "usb:VID:PID", "tty:...", "udp:HOST:PORT", "" = none

[scanner]
port = "/dev/ttyACM0"            # device path or pyserial URL, "" = none
baudrate = 9600

[printer]
target = "file:instance/till/receipts.bin"  # network:HOST:PORT, serial:DEV, usb:VID:PID, file:PATH
profile = "TM-T88V"

[offline]
allowance_minor = 2500           # asked for each card presented online; 0 = none
```

Relative paths (state_dir, file: printers) are taken from the config file's folder, so a
till's config can be moved with its state.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

SECRET_ENV = "OMNICARD_POS_DEVICE_SECRET"
CONFIG_ENV = "OMNICARD_POS_CONFIG"
DEFAULT_CONFIG = "pos.toml"


class ConfigError(Exception):
    """The config file is missing or says something the till cannot use."""


@dataclass
class Config:
    api_url: str
    device_secret: str
    state_dir: Path
    nfc_reader: str = ""
    scanner_port: str = ""
    scanner_baudrate: int = 9600
    printer_target: str = ""
    printer_profile: str = "TM-T88V"
    offline_allowance_minor: int = 2500
    currency: str = "USD"
    #: Seconds: how long the till waits to connect, and for an answer, before it calls the
    #: API unreachable (a sale then queues offline rather than keep a shopper waiting).
    connect_timeout_s: float = 3.0
    read_timeout_s: float = 10.0
    #: Seconds between attempts to replay the queue while the API does not answer.
    replay_interval_s: float = 2.0
    path: Path | None = field(default=None, compare=False)

    def __post_init__(self):
        self.api_url = self.api_url.rstrip("/")
        self.state_dir = Path(self.state_dir)

    @property
    def outbox_path(self) -> Path:
        return self.state_dir / "outbox.sqlite3"

    @property
    def session_path(self) -> Path:
        return self.state_dir / "session.json"


def _section(data: dict, name: str) -> dict:
    value = data.get(name, {})
    if not isinstance(value, dict):
        raise ConfigError(f"[{name}] must be a table.")
    return value


def _typed(value, kind, name: str):
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        raise ConfigError(f"{name} must be a {kind.__name__}.")
    return value


def parse(data: dict, *, base: Path | None = None, env=None) -> Config:
    """A Config from the TOML file's tables (`base`: the folder relative paths start from)."""
    env = os.environ if env is None else env
    base = base or Path.cwd()
    api_url = _typed(data.get("api_url", ""), str, "api_url")
    if not api_url.startswith(("http://", "https://")):
        raise ConfigError("api_url must be an http:// or https:// URL.")
    secret = env.get(SECRET_ENV) or _typed(data.get("device_secret", ""), str, "device_secret")
    if not secret:
        raise ConfigError(f"No device_secret (in the config file or {SECRET_ENV}).")
    state_dir = Path(_typed(data.get("state_dir", "till-state"), str, "state_dir"))
    nfc, scanner = _section(data, "nfc"), _section(data, "scanner")
    printer, offline = _section(data, "printer"), _section(data, "offline")
    target = _typed(printer.get("target", ""), str, "printer.target")
    if target.startswith("file:") and not Path(target[5:]).is_absolute():
        target = "file:" + str(base / target[5:])
    allowance = _typed(offline.get("allowance_minor", 2500), int, "offline.allowance_minor")
    if allowance < 0:
        raise ConfigError("offline.allowance_minor must be 0 or more.")
    timeouts = _section(data, "timeouts")
    return Config(
        api_url=api_url,
        device_secret=secret,
        state_dir=state_dir if state_dir.is_absolute() else base / state_dir,
        nfc_reader=_typed(nfc.get("reader", ""), str, "nfc.reader"),
        scanner_port=_typed(scanner.get("port", ""), str, "scanner.port"),
        scanner_baudrate=_typed(scanner.get("baudrate", 9600), int, "scanner.baudrate"),
        printer_target=target,
        printer_profile=_typed(printer.get("profile", "TM-T88V"), str, "printer.profile"),
        offline_allowance_minor=allowance,
        currency=_typed(data.get("currency", "USD"), str, "currency"),
        connect_timeout_s=_typed(timeouts.get("connect_s", 3.0), float, "timeouts.connect_s"),
        read_timeout_s=_typed(timeouts.get("read_s", 10.0), float, "timeouts.read_s"),
        replay_interval_s=_typed(timeouts.get("replay_s", 2.0), float, "timeouts.replay_s"),
    )


def load(path: str | os.PathLike | None = None) -> Config:
    """Read the config file: `path`, else $OMNICARD_POS_CONFIG, else ./pos.toml."""
    path = Path(path or os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG)
    try:
        with path.open("rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"No config file at {path}.") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: {e}") from None
    config = parse(data, base=path.resolve().parent)
    config.path = path
    return config

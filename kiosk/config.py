"""The kiosk's configuration: one TOML file, like the till's.

```toml
api_url = "http://127.0.0.1:5000"
device_secret = "..."            # or env OMNICARD_KIOSK_DEVICE_SECRET
state_dir = "instance/kiosk"     # the outbox of taps (SQLite)
shop_url = "https://shop.example"  # the host written on product and sign tags
debounce_s = 2.0                 # the same tag again within this long after it left: ignored

[nfc]
reader = "udp:127.0.0.1:54322"   # "usb", "usb:VID:PID", "tty:...", "udp:HOST:PORT"

[timeouts]
connect_s = 3.0
read_s = 10.0
replay_s = 2.0                   # between attempts while the API does not answer
```

Relative paths (state_dir) are taken from the config file's folder.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

SECRET_ENV = "OMNICARD_KIOSK_DEVICE_SECRET"
CONFIG_ENV = "OMNICARD_KIOSK_CONFIG"
DEFAULT_CONFIG = "kiosk.toml"


class ConfigError(Exception):
    """The config file is missing or says something the kiosk cannot use."""


@dataclass
class Config:
    api_url: str
    device_secret: str
    state_dir: Path
    reader: str = ""
    shop_url: str = "http://127.0.0.1:5000"
    debounce_s: float = 2.0
    connect_timeout_s: float = 3.0
    read_timeout_s: float = 10.0
    replay_interval_s: float = 2.0
    path: Path | None = field(default=None, compare=False)

    def __post_init__(self):
        self.api_url = self.api_url.rstrip("/")
        self.shop_url = self.shop_url.rstrip("/")
        self.state_dir = Path(self.state_dir)

    @property
    def outbox_path(self) -> Path:
        return self.state_dir / "taps.sqlite3"


def _typed(value, kind, name: str):
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        raise ConfigError(f"{name} must be a {kind.__name__}.")
    return value


def _section(data: dict, name: str) -> dict:
    value = data.get(name, {})
    if not isinstance(value, dict):
        raise ConfigError(f"[{name}] must be a table.")
    return value


def _url(value: str, name: str) -> str:
    if not value.startswith(("http://", "https://")):
        raise ConfigError(f"{name} must be an http:// or https:// URL.")
    return value


def parse(data: dict, *, base: Path | None = None, env=None) -> Config:
    """A Config from the TOML file's tables (`base`: the folder relative paths start from)."""
    env = os.environ if env is None else env
    base = base or Path.cwd()
    api_url = _url(_typed(data.get("api_url", ""), str, "api_url"), "api_url")
    secret = env.get(SECRET_ENV) or _typed(data.get("device_secret", ""), str, "device_secret")
    if not secret:
        raise ConfigError(f"No device_secret (in the config file or {SECRET_ENV}).")
    state_dir = Path(_typed(data.get("state_dir", "kiosk-state"), str, "state_dir"))
    shop_url = _url(_typed(data.get("shop_url", api_url), str, "shop_url"), "shop_url")
    debounce_s = _typed(data.get("debounce_s", 2.0), float, "debounce_s")
    if debounce_s < 0:
        raise ConfigError("debounce_s must be 0 or more.")
    nfc, timeouts = _section(data, "nfc"), _section(data, "timeouts")
    reader = _typed(nfc.get("reader", data.get("reader", "")), str, "nfc.reader")
    return Config(
        api_url=api_url,
        device_secret=secret,
        state_dir=state_dir if state_dir.is_absolute() else base / state_dir,
        reader=reader,
        shop_url=shop_url,
        debounce_s=debounce_s,
        connect_timeout_s=_typed(timeouts.get("connect_s", 3.0), float, "timeouts.connect_s"),
        read_timeout_s=_typed(timeouts.get("read_s", 10.0), float, "timeouts.read_s"),
        replay_interval_s=_typed(timeouts.get("replay_s", 2.0), float, "timeouts.replay_s"),
    )


def load(path: str | os.PathLike | None = None) -> Config:
    """Read the config file: `path`, else $OMNICARD_KIOSK_CONFIG, else ./kiosk.toml."""
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

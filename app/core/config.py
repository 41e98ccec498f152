"""Configuration, read from the environment with defaults that work on a fresh machine."""

import hashlib
import os
import re
from pathlib import Path

from sqlalchemy.engine import make_url

INSTANCE_DIR = Path(__file__).resolve().parents[2] / "instance"


def _sqlite_default() -> str:
    return f"sqlite:///{INSTANCE_DIR / 'omnicard.sqlite3'}"


def normalise_database_url(url: str) -> str:
    """Accept the plain ``postgresql://`` spelling too; Omnicard always speaks psycopg 3."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url.removeprefix("postgres://")
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    return url


def demo_file_for(database_url: str) -> str:
    """Each database has its own demo file: the default SQLite's is ``instance/demo.json``;
    any other's is named after it, so that running on PostgreSQL and then on SQLite again
    never shows the one database's secrets for the other."""
    if database_url == normalise_database_url(_sqlite_default()):
        return str(INSTANCE_DIR / "demo.json")
    url = make_url(database_url)
    parts = [url.get_backend_name(), url.host or "", str(url.port or ""), url.database or ""]
    label = re.sub(r"[^A-Za-z0-9.]+", "-", "-".join(p for p in parts if p)).strip("-.")
    digest = hashlib.sha256(url.render_as_string(hide_password=True).encode()).hexdigest()
    return str(INSTANCE_DIR / f"demo-{label[:80]}-{digest[:8]}.json")


def _int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise SystemExit(f"{name} must be a whole number, not {value!r}") from None


def from_environment() -> dict:
    env = os.environ
    database_url = normalise_database_url(env.get("DATABASE_URL") or _sqlite_default())
    return {
        #: SQLAlchemy URL: SQLite under instance/ by default; PostgreSQL in production.
        "DATABASE_URL": database_url,
        #: The largest request body accepted, in bytes (413 above it); Omnicard's largest
        #: requests (a sale of 200 lines, a product) take a few KB.
        "MAX_CONTENT_LENGTH": _int("OMNICARD_MAX_REQUEST_BYTES", 256 * 1024),
        #: Where ``flask demo load`` writes what a new user needs: one file per database.
        "DEMO_FILE": env.get("OMNICARD_DEMO_FILE") or demo_file_for(database_url),
        #: The currency of the retailer's cards.
        "CURRENCY": env.get("OMNICARD_CURRENCY", "USD"),
        #: argon2id cost for passwords, PINs and card security codes (RFC 9106's second
        #: recommended profile by default).
        "ARGON2_TIME_COST": _int("OMNICARD_ARGON2_TIME_COST", 3),
        "ARGON2_MEMORY_KIB": _int("OMNICARD_ARGON2_MEMORY_KIB", 64 * 1024),
        #: How long logins and cashier sessions last.
        "CUSTOMER_TOKEN_TTL_S": _int("OMNICARD_CUSTOMER_TOKEN_TTL_S", 30 * 86400),
        "STAFF_TOKEN_TTL_S": _int("OMNICARD_STAFF_TOKEN_TTL_S", 12 * 3600),
        "CASHIER_SESSION_TTL_S": _int("OMNICARD_CASHIER_SESSION_TTL_S", 12 * 3600),
        #: Cards: the most a card may hold, and the smallest and largest top-up.
        "CARD_MAX_BALANCE_MINOR": _int("OMNICARD_CARD_MAX_BALANCE_MINOR", 50_000),
        "TOPUP_MIN_MINOR": _int("OMNICARD_TOPUP_MIN_MINOR", 500),
        "TOPUP_MAX_MINOR": _int("OMNICARD_TOPUP_MAX_MINOR", 25_000),
        #: The most one sale may take from a card identified by an NFC UID alone.
        "NFC_UID_LIMIT_MINOR": _int("OMNICARD_NFC_UID_LIMIT_MINOR", 2_500),
        #: Offline allowances (app.offline): the most of a card's balance one till may take
        #: while it cannot reach the API, set aside on the ledger; and how long it lasts.
        "OFFLINE_ALLOWANCE_MAX_MINOR": _int("OMNICARD_OFFLINE_ALLOWANCE_MAX_MINOR", 2_500),
        "OFFLINE_ALLOWANCE_TTL_S": _int("OMNICARD_OFFLINE_ALLOWANCE_TTL_S", 12 * 3600),
        #: Failed guesses allowed before a pause (see app.core.throttle). Only the guesser's
        #: own failures refuse it: a shopper's at card registration (an hour), one account
        #: from one address at login, one staff code at one till (15 minutes). The wider
        #: counts (a card's code each day, an address's registrations each hour, an
        #: account's logins from anywhere, an address's logins at any account, a till's PINs
        #: in 15 minutes) only make guessers that have failed themselves wait sooner.
        "REGISTER_MAX_FAILURES_ACCOUNT": _int("OMNICARD_REGISTER_MAX_FAILURES_ACCOUNT", 5),
        "REGISTER_MAX_FAILURES_IP": _int("OMNICARD_REGISTER_MAX_FAILURES_IP", 20),
        "REGISTER_MAX_FAILURES_CARD": _int("OMNICARD_REGISTER_MAX_FAILURES_CARD", 5),
        "LOGIN_MAX_FAILURES": _int("OMNICARD_LOGIN_MAX_FAILURES", 10),
        "LOGIN_MAX_FAILURES_ACCOUNT": _int("OMNICARD_LOGIN_MAX_FAILURES_ACCOUNT", 30),
        "LOGIN_MAX_FAILURES_ADDRESS": _int("OMNICARD_LOGIN_MAX_FAILURES_ADDRESS", 50),
        "PIN_MAX_FAILURES_DEVICE": _int("OMNICARD_PIN_MAX_FAILURES_DEVICE", 30),
        #: Web origins whose pages may call the API from a browser (CORS), comma-separated and
        #: exact (``https://app.example,https://shop.example``); none by default.
        "CORS_ORIGINS": [
            o.strip() for o in env.get("OMNICARD_CORS_ORIGINS", "").split(",") if o.strip()
        ],
        #: How many reverse proxies in front of the app set X-Forwarded-For (and -Proto,
        #: -Host): the client address that logins are throttled by is taken that many hops
        #: from the right. 0 (the default): the connection's own address, and any
        #: X-Forwarded-For a client sends is ignored. Set it to exactly the number of
        #: proxies you run: more lets a client choose its own address.
        "TRUSTED_PROXIES": _int("OMNICARD_TRUSTED_PROXIES", 0),
        #: The key that physical cards' security codes are kept under (HMAC-SHA256; see
        #: app/cards/codes.py). Needed to issue or check a code; never in the database.
        #: `scripts/run` makes one for development, once, in instance/card-code.key.
        "CARD_CODE_KEY": env.get("OMNICARD_CARD_CODE_KEY", ""),
        #: Stars per whole currency unit paid from the card's balance, and otherwise.
        "STARS_PER_UNIT_CARD": _int("OMNICARD_STARS_PER_UNIT_CARD", 2),
        "STARS_PER_UNIT_OTHER": _int("OMNICARD_STARS_PER_UNIT_OTHER", 1),
        #: Lifetime Stars that make a shopper Gold.
        "GOLD_TIER_STARS": _int("OMNICARD_GOLD_TIER_STARS", 300),
        #: Run this process's event hub (live streams and event sequencing).
        "EVENTS_HUB": env.get("OMNICARD_EVENTS_HUB", "1") not in ("0", "false", "no"),
        #: Seconds between heartbeats on an idle event stream.
        "EVENTS_HEARTBEAT_S": _int("OMNICARD_EVENTS_HEARTBEAT_S", 15),
        #: Events one stream may have waiting to be written; a stream that falls further
        #: behind (a stalled client) catches up from the database instead, holding no one up.
        "EVENTS_QUEUE_LIMIT": _int("OMNICARD_EVENTS_QUEUE_LIMIT", 1000),
        #: Seconds between looks for new events when nothing has woken the hub: events are
        #: handed out as their commits wake it; this only bounds a lost wake-up's delay.
        "EVENTS_POLL_S": float(env.get("OMNICARD_EVENTS_POLL_S", "1")),
        #: The address the sequencing process binds its UDP port for asks to, which the other
        #: app processes send to (PostgreSQL only). Unset: the address PostgreSQL sees the
        #: process connect from. Set it where that is not one the others can reach; "none":
        #: no port, and the others ask by NOTIFY.
        "EVENTS_ASKS_HOST": env.get("OMNICARD_EVENTS_ASKS_HOST") or None,
        #: Webhook retries: the first after this many seconds, doubling up to the cap, until
        #: this many attempts; each request may take this long.
        "WEBHOOK_BACKOFF_BASE_S": float(env.get("OMNICARD_WEBHOOK_BACKOFF_BASE_S", "5")),
        "WEBHOOK_BACKOFF_CAP_S": float(env.get("OMNICARD_WEBHOOK_BACKOFF_CAP_S", "3600")),
        "WEBHOOK_MAX_ATTEMPTS": _int("OMNICARD_WEBHOOK_MAX_ATTEMPTS", 12),
        "WEBHOOK_TIMEOUT_S": float(env.get("OMNICARD_WEBHOOK_TIMEOUT_S", "5")),
        #: Send the website's cookies only over HTTPS. On by default; `scripts/run` turns it
        #: off for development on http://127.0.0.1 (OMNICARD_SECURE_COOKIES=0).
        "SECURE_COOKIES": env.get("OMNICARD_SECURE_COOKIES", "1") not in ("0", "false", "no"),
        #: Kiosks: taps further apart than this start a new kiosk session (the screen goes
        #: back to its attract loop after as long); how long a pairing code and a paired
        #: screen's login last.
        "KIOSK_SESSION_IDLE_S": _int("OMNICARD_KIOSK_SESSION_IDLE_S", 90),
        "KIOSK_PAIRING_CODE_TTL_S": _int("OMNICARD_KIOSK_PAIRING_CODE_TTL_S", 600),
        "KIOSK_SCREEN_TOKEN_TTL_S": _int("OMNICARD_KIOSK_SCREEN_TOKEN_TTL_S", 365 * 86400),
        #: The payment gateway for top-ups: ``sandbox`` behaves like a processor's test mode.
        "PAYMENT_GATEWAY": env.get("OMNICARD_PAYMENT_GATEWAY", "sandbox"),
    }

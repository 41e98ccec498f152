"""Configuration, read from the environment with defaults that work on a fresh machine."""

import os
from pathlib import Path

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


def from_environment() -> dict:
    env = os.environ
    return {
        #: SQLAlchemy URL: SQLite under instance/ by default; PostgreSQL in production.
        "DATABASE_URL": normalise_database_url(env.get("DATABASE_URL") or _sqlite_default()),
        #: Hot (receive-only) accounts spread their cached balance over this many rows.
        "LEDGER_HOT_ACCOUNT_SHARDS": int(env.get("OMNICARD_HOT_ACCOUNT_SHARDS", "64")),
        #: The currency of the retailer's cards.
        "CURRENCY": env.get("OMNICARD_CURRENCY", "USD"),
    }

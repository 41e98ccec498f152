"""The till's subcommands (JSON on stdout; exit 0 done, 1 refused, 2 bad usage, 3 queued or
outcome unknown)."""

from __future__ import annotations


def main(argv: list[str] | None = None) -> int:
    raise SystemExit("not yet")

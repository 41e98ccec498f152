"""``flask payments settle``: ask the gateway about top-ups left pending by a timeout."""

import click
from flask import Flask
from flask.cli import AppGroup

from app.core.db import session
from app.payments.services import settle_stale

payments_cli = AppGroup("payments", help="Top-ups through the payment gateway.")


@payments_cli.command("settle")
@click.option("--older-than", "older_than_s", default=30, show_default=True,
              help="Only top-ups pending for at least this many seconds.")  # fmt: skip
def settle_command(older_than_s: int) -> None:
    """Settle pending top-ups: credit the approved ones once, mark the declined ones."""
    settled = settle_stale(session(), older_than_s)
    for top_up in settled:
        click.echo(f"top-up {top_up.id}: {top_up.status}")
    click.echo(f"{len(settled)} pending top-up(s) looked at")


def init_app(app: Flask) -> None:
    app.cli.add_command(payments_cli)

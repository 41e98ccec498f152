"""``flask pos release-allowances``: give back what stale offline allowances still hold."""

import click
from flask import Flask
from flask.cli import AppGroup

from app.core.db import session
from app.offline.services import RELEASE_GRACE, release_stale

pos_cli = AppGroup("pos", help="The tills.")


@pos_cli.command("release-allowances")
def release_allowances_command() -> None:
    """Release offline allowances that expired more than a day ago (the grace for late
    replays): what no sale used goes back to the card."""
    s = session()
    released, refused = release_stale(s)
    s.commit()
    for allowance in released:
        click.echo(f"allowance {allowance.id}: released {allowance.released_minor}")
    for allowance, error in refused:
        click.echo(f"allowance {allowance.id}: not released ({error.code})", err=True)
    hours = int(RELEASE_GRACE.total_seconds() // 3600)
    click.echo(f"{len(released)} allowance(s) released, {hours} h after they expired")


def init_app(app: Flask) -> None:
    app.cli.add_command(pos_cli)

import click
from flask import Flask
from flask.cli import AppGroup
from sqlalchemy.engine import Engine

from app.core.db import session
from app.ledger.verify import verify

ledger_cli = AppGroup("ledger", help="Inspect the ledger.")


@ledger_cli.command("verify")
def verify_command() -> None:
    """Recompute every balance from the postings; exit 1 on any difference."""
    s = session()
    bind = s.get_bind()
    if isinstance(bind, Engine) and bind.dialect.name == "postgresql":
        # Every check reads the same snapshot while sales keep committing.
        s.connection(execution_options={"isolation_level": "REPEATABLE READ"})
    report = verify(s)
    for line in report.lines():
        click.echo(line)
    if not report.ok:
        raise SystemExit(1)


def init_app(app: Flask) -> None:
    app.cli.add_command(ledger_cli)

"""``flask db upgrade``: bring the database to the newest migration."""

from pathlib import Path

import click
from alembic import command
from alembic.config import Config
from flask import Flask
from flask.cli import AppGroup

from app.core.db import database

ROOT = Path(__file__).resolve().parents[2]
db_cli = AppGroup("db", help="The database schema (Alembic migrations).")


def alembic_config(connection) -> Config:
    config = Config(str(ROOT / "alembic.ini"))
    config.attributes["connection"] = connection
    return config


@db_cli.command("upgrade")
@click.argument("revision", default="head")
def upgrade_command(revision: str) -> None:
    """Apply the migrations up to REVISION (default: head)."""
    engine = database().engine
    with engine.begin() as connection:
        command.upgrade(alembic_config(connection), revision)
    click.echo(f"database at {revision}: {engine.url.render_as_string(hide_password=True)}")


def init_app(app: Flask) -> None:
    app.cli.add_command(db_cli)

"""Alembic environment. The URL comes from the caller's connection (tests, the app's
``db upgrade`` command) or from DATABASE_URL."""

from alembic import context
from sqlalchemy import pool

from app.core import config as app_config
from app.core.db import make_engine
from app.models import metadata

config = context.config


def render_item(type_, obj, autogen_context):
    """Migrations spell Omnicard's UTC timestamps as the plain column type they store."""
    if type_ == "type" and type(obj).__name__ == "_UtcDateTime":
        return "sa.DateTime(timezone=True)"
    return False


def run_migrations_offline() -> None:
    context.configure(
        url=app_config.from_environment()["DATABASE_URL"],
        target_metadata=metadata,
        literal_binds=True,
        render_as_batch=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def _run(connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=True,
        render_item=render_item,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    url = app_config.from_environment()["DATABASE_URL"]
    engine = make_engine(url, poolclass=pool.NullPool)
    with engine.connect() as connection:
        _run(connection)
    engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()

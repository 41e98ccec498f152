"""The database: one engine per app, one session per request or CLI command.

Services only flush; the request (or command) commits once at the end. On SQLite every
transaction begins with ``BEGIN IMMEDIATE`` so that two writers can never both read a balance
and then race to write it: the second waits for the first (WAL mode keeps readers unblocked).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from flask import Flask, current_app, g
from sqlalchemy import MetaData, create_engine, event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


#: Set on every PostgreSQL session Omnicard opens: no JIT compilation. Omnicard's statements
#: are short, and PostgreSQL compiles a plan whose estimated cost passes ``jit_above_cost``
#: afresh at every execution: 20 ms and more of the server's CPU each time. The sequencer's
#: statement did so at every round once the outbox's table had grown under load (the planner
#: then expects a full batch), which put 20 ms on every event's way to the streams.
POSTGRESQL_OPTIONS = "-c jit=off"


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def make_engine(url: str, **kwargs: Any) -> Engine:
    """An engine for ``url``; SQLite gets WAL, a busy timeout and immediate write locks."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30}, **kwargs)
        _make_sqlite_safe(engine)
        return engine
    if "poolclass" not in kwargs:
        kwargs.setdefault("pool_size", 20)
        kwargs.setdefault("max_overflow", 40)
        kwargs.setdefault("pool_pre_ping", True)
    kwargs.setdefault("connect_args", {}).setdefault("options", POSTGRESQL_OPTIONS)
    return create_engine(url, **kwargs)


def _make_sqlite_safe(engine: Engine) -> None:
    # pysqlite's own transaction handling defers BEGIN and cannot take the write lock up front;
    # take control of it (the recipe from SQLAlchemy's SQLite dialect documentation).
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: sqlite3.Connection, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        if connection.get_execution_options().get("omnicard_read_only"):
            connection.exec_driver_sql("BEGIN")  # a reader: WAL gives it a snapshot, no lock
        else:
            connection.exec_driver_sql("BEGIN IMMEDIATE")


@contextmanager
def read_only(engine: Engine) -> Iterator[Connection]:
    """A short read that takes no write lock (on SQLite) and is rolled back at the end."""
    with engine.connect() as connection:
        connection = connection.execution_options(omnicard_read_only=True)
        try:
            yield connection
        finally:
            connection.rollback()


class Database:
    """What the app keeps in ``app.extensions['omnicard.db']``."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.sessions = sessionmaker(bind=engine, expire_on_commit=False)


def init_app(app: Flask) -> None:
    db = Database(make_engine(app.config["DATABASE_URL"]))
    app.extensions["omnicard.db"] = db
    app.after_request(_commit_or_roll_back)
    app.teardown_appcontext(_close_session)


def after_commit(callback) -> None:
    """Run ``callback()`` once this request's work has committed (not if it fails)."""
    g.setdefault("after_commit", []).append(callback)


def _commit_or_roll_back(response):
    # The request commits once, at the end, and only if it succeeded; then what had to wait
    # for the commit runs, each in its own transaction.
    s = g.get("db_session")
    callbacks = g.pop("after_commit", [])
    if s is not None:
        if response.status_code < 400:
            s.commit()
        else:
            s.rollback()
            callbacks = []
    for callback in callbacks:
        callback()
    return response


def database(app: Flask | None = None) -> Database:
    return (app or current_app).extensions["omnicard.db"]


def session() -> Session:
    """The session of the current request or command, opened on first use."""
    if "db_session" not in g:
        g.db_session = database().sessions()
    return g.db_session


def _close_session(_exc: BaseException | None) -> None:
    s = g.pop("db_session", None)
    if s is not None:
        s.close()

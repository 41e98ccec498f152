"""Test fixtures: a real database (SQLite or PostgreSQL), schema from the migrations, one
rolled-back transaction per test, and a ledger check after every test that touched it.

Choose the database with ``--db sqlite|postgresql`` or ``OMNICARD_TEST_DB``. PostgreSQL is
reached at ``OMNICARD_TEST_POSTGRES_URL`` (default: the local server's ``test`` database);
each run creates its own fresh database there and drops it at the end. If PostgreSQL cannot
be reached the run fails: it never quietly skips.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from app import create_app
from app.core.cli import alembic_config
from app.core.db import database
from app.ledger import services as ledger
from app.ledger.verify import verify

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
TABLES_TO_EMPTY = (
    "ledger_postings",
    "ledger_transactions",
    "ledger_balance_shards",
    "ledger_accounts",
    "idempotency_keys",
)


def pytest_addoption(parser):
    parser.addoption(
        "--db",
        default=os.environ.get("OMNICARD_TEST_DB", "sqlite"),
        choices=("sqlite", "postgresql"),
        help="which database the suite runs on",
    )


@pytest.fixture(scope="session")
def db_kind(request) -> str:
    return request.config.getoption("--db")


@pytest.fixture(scope="session")
def database_url(db_kind, tmp_path_factory) -> Iterator[str]:
    if db_kind == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('db') / 'omnicard-test.sqlite3'}"
        return
    admin_url = os.environ.get("OMNICARD_TEST_POSTGRES_URL", DEFAULT_POSTGRES)
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    name = f"omnicard_test_{uuid.uuid4().hex[:12]}"
    try:
        with admin.connect() as c:
            c.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:  # the run must fail, loudly, not skip
        pytest.exit(f"PostgreSQL is not reachable at {admin_url}: {exc}", returncode=3)
    url = admin.url.set(database=name).render_as_string(hide_password=False)
    yield url
    with admin.connect() as c:
        c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(scope="session")
def app(database_url):
    app = create_app({"DATABASE_URL": database_url, "TESTING": True})
    engine = database(app).engine
    with engine.begin() as connection:
        command.upgrade(alembic_config(connection), "head")
    yield app
    engine.dispose()


@pytest.fixture(scope="session")
def engine(app) -> Engine:
    return database(app).engine


def assert_ledger_verifies(session: Session) -> None:
    report = verify(session)
    assert report.ok, "\n".join(report.lines())


@pytest.fixture
def db(app, engine) -> Iterator[Session]:
    """A session inside one transaction that is rolled back after the test.

    The app's own sessions join it (their commits become savepoints), so requests made through
    the test client see and are undone with everything else. The ledger is verified at the end.
    """
    connection = engine.connect()
    outer = connection.begin()
    sessions = database(app).sessions
    sessions.configure(bind=connection, join_transaction_mode="create_savepoint")
    s = sessions()
    try:
        yield s
        s.flush()
        assert_ledger_verifies(s)
    finally:
        s.close()
        sessions.configure(bind=engine, join_transaction_mode="conditional_savepoint")
        outer.rollback()
        connection.close()


@pytest.fixture
def committed(app, engine) -> Iterator[Session]:
    """For tests whose threads must commit for real; the tables are emptied afterwards."""
    s = database(app).sessions()
    try:
        yield s
        s.rollback()
        assert_ledger_verifies(s)
    finally:
        s.rollback()
        s.close()
        with engine.begin() as c:
            if engine.dialect.name == "postgresql":
                c.execute(text(f"TRUNCATE {', '.join(TABLES_TO_EMPTY)} RESTART IDENTITY"))
            else:
                for table in TABLES_TO_EMPTY:
                    c.execute(text(f"DELETE FROM {table}"))


@pytest.fixture
def client(app, db):
    return app.test_client()


@pytest.fixture
def make_account(db):
    """``make_account(**overrides)``: a fresh USD account, no limits unless asked."""
    counter = iter(range(1, 10**9))

    def make(session: Session | None = None, **overrides):
        n = next(counter)
        fields = {
            "code": f"test:{uuid.uuid4().hex[:10]}:{n}",
            "name": f"Test account {n}",
            "unit": "USD",
            "type": "liability",
        }
        fields.update(overrides)
        return ledger.open_account(session or db, **fields)

    return make

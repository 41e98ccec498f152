"""Test fixtures: a real database (SQLite or PostgreSQL), schema from the migrations, one
rolled-back transaction per test, and a ledger check after every test that touched it.

Choose the database with ``--db sqlite|postgresql`` or ``OMNICARD_TEST_DB``. PostgreSQL is
reached at ``OMNICARD_TEST_POSTGRES_URL`` (default: the local server's ``test`` database);
each run creates its own fresh database there and drops it at the end. If PostgreSQL cannot
be reached the run fails: it never quietly skips.
"""

from __future__ import annotations

import functools
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
from app.core.settings import settings
from app.ledger import services as ledger
from app.ledger.verify import verify
from app.models import metadata
from tests.snapshot import snapshot

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
#: Cheap password hashing keeps the suite fast; everything else is as in production.
TEST_CONFIG = {
    "TESTING": True,
    "ARGON2_TIME_COST": 1,
    "ARGON2_MEMORY_KIB": 1024,
    # Tests that need live streams start an app of their own with the hub on.
    "EVENTS_HUB": False,
    # A fixed key for card security codes (production's comes from the environment).
    "CARD_CODE_KEY": "test-card-code-key-0123456789abcdef",
    # The test client speaks plain http; production's cookies are Secure (tested on its own).
    "SECURE_COOKIES": False,
}
#: Children before parents, for emptying the tables after a test that committed.
TABLES_TO_EMPTY = tuple(table.name for table in reversed(metadata.sorted_tables))


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
    app = create_app(TEST_CONFIG | {"DATABASE_URL": database_url})
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
                c.execute(text(f"TRUNCATE {', '.join(TABLES_TO_EMPTY)} RESTART IDENTITY CASCADE"))
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


class Api:
    """Real HTTP through the Flask test client, with a token and an Idempotency-Key.

    Given the test's session (``db``), it checks every refusal: a request answered 4xx must
    leave every row of the database as it was. Failed attempts at a credential are counted on
    purpose (the throttle's own tests check them); any other refusal that is meant to write
    something (a declined payment is recorded) says so with ``refusal_writes=True``, and its
    test checks what was written.
    """

    #: Tables a refusal writes to by design.
    REFUSALS_WRITE_TO = frozenset({"failed_attempts"})

    def __init__(self, client, db: Session | None = None):
        self.client = client
        self.db = db
        self.keys = iter(range(1, 10**9))

    def call(
        self, method, path, *, token=None, json=None, key="auto", headers=None,
        refusal_writes=False, **kw,
    ):  # fmt: skip
        headers = dict(headers or {})
        if token:
            headers["Authorization"] = f"Bearer {token}"
        if key == "auto" and method in ("POST", "PUT", "PATCH", "DELETE"):
            key = f"test-key-{next(self.keys)}-{uuid.uuid4().hex[:8]}"
        if key and key != "auto":
            headers["Idempotency-Key"] = key
        before = None if self.db is None or refusal_writes else self._rows()
        response = self.client.open(path, method=method, json=json, headers=headers, **kw)
        if before is not None and 400 <= response.status_code < 500:
            assert self._rows() == before, (
                f"{method} {path} was refused ({response.status_code}) and yet changed the "
                f"database: {response.get_json()}"
            )
        return response

    def _rows(self):
        return snapshot(self.db, leave_out=self.REFUSALS_WRITE_TO)

    def get(self, path, **kw):
        return self.call("GET", path, **kw)

    def post(self, path, **kw):
        return self.call("POST", path, **kw)

    def put(self, path, **kw):
        return self.call("PUT", path, **kw)

    def patch(self, path, **kw):
        return self.call("PATCH", path, **kw)

    def delete(self, path, **kw):
        return self.call("DELETE", path, **kw)


def sign_in_tills(api: Api, devices, cashiers, pin: str = "1357") -> list[str]:
    """Sign each cashier in at its till (``devices``: (device, secret) pairs) through the API:
    their session tokens. For tests whose world was committed first, with no session open."""
    tokens = []
    for (_device, secret), cashier in zip(devices, cashiers, strict=True):
        signed_in = api.post(
            "/v1/pos/sessions",
            token=secret,
            json={"staff_code": cashier.staff_code, "pin": pin},
            key=None,
        )
        assert signed_in.status_code == 201, signed_in.json
        tokens.append(signed_in.json["token"])
    return tokens


@pytest.fixture
def api(client, db):
    return Api(client, db)


class World:
    """Factories for the people and things of a retail programme, made through the services
    (fast) and, where the test is about it, through the API."""

    def __init__(self, app, db, api):
        self.app, self.db, self.api = app, db, api
        self.n = iter(range(1, 10**9))

    def __getattribute__(self, name):
        # Each factory runs in an application context of its own: one held open across the
        # test would be shared by the test client's requests (and their ``g``).
        attribute = object.__getattribute__(self, name)
        if name.startswith("_") or not callable(attribute):
            return attribute

        @functools.wraps(attribute)
        def in_app_context(*args, **kwargs):
            with object.__getattribute__(self, "app").app_context():
                return attribute(*args, **kwargs)

        return in_app_context

    def store(self, code=None, name=None):
        from app.stores.services import create_store

        n = next(self.n)
        return create_store(
            self.db,
            code=code or f"store-{n}",
            name=name or f"Store {n}",
            currency=settings().currency,
        )

    def device(self, store, kind="pos"):
        from app.stores.services import register_device

        device, secret = register_device(self.db, store_id=store.id, kind=kind, name=f"{kind}")
        return device, secret

    def staff(self, role="admin", store=None, password="correct horse battery", pin="2468"):
        from app.auth.services import create_staff

        n = next(self.n)
        return create_staff(
            self.db,
            settings(),
            email=f"staff{n}@example.test",
            name=f"Staff {n}",
            role=role,
            password=password,
            staff_code=f"C{n:04d}",
            pin=pin,
            store_id=store.id if store is not None and role == "cashier" else None,
        )

    def admin_token(self):
        from app.auth.services import issue_token

        admin = self.staff("admin")
        token, _ = issue_token(self.db, "staff", 3600, staff_id=admin.id)
        return token

    def till(self, store=None):
        """A store, its POS terminal and a signed-in cashier: (store, device, cashier token)."""
        store = store or self.store()
        device, secret = self.device(store, "pos")
        cashier = self.staff("cashier", store=store, pin="1357")
        response = self.api.post(
            "/v1/pos/sessions",
            token=secret,
            json={"staff_code": cashier.staff_code, "pin": "1357"},
            key=None,
        )
        assert response.status_code == 201, response.json
        return store, device, response.json["token"]

    def shopper(self, name="Ada"):
        """Signs up through the API: (token, the /v1/me body)."""
        n = next(self.n)
        response = self.api.post(
            "/v1/auth/signup",
            json={"email": f"shopper{n}@example.test", "password": "a long password", "name": name},
            key=None,
        )
        assert response.status_code == 201, response.json
        return response.json["token"], response.json["customer"]

    def product(self, sku=None, price=450, **fields):
        from app.catalog.services import create_product

        n = next(self.n)
        return create_product(
            self.db,
            sku=sku or f"SKU-{n}",
            currency="USD",
            name=fields.pop("name", f"Product {n}"),
            category=fields.pop("category", "coffee"),
            price_minor=price,
            **fields,
        )

    def sell_gift_card(self, number, amount, cashier_token, tender="cash"):
        """Sell a gift card from a batch at the till (it starts inactive): the answer's body."""
        response = self.api.post(
            "/v1/pos/gift-cards",
            token=cashier_token,
            json={"card": {"card_number": number}, "amount": {"amount": amount, "currency": "USD"},
                  "tender": tender},
        )  # fmt: skip
        assert response.status_code == 201, response.json
        return response.json

    def load(self, card_id, amount, cashier_token, tender="cash"):
        """Load a card at the till."""
        response = self.api.post(
            f"/v1/cards/{card_id}/top-ups",
            token=cashier_token,
            json={"amount": {"amount": amount, "currency": "USD"}, "tender": tender},
        )
        assert response.status_code == 201, response.json
        return response.json


@pytest.fixture
def world(app, db, api):
    return World(app, db, api)

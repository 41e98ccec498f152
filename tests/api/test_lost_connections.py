"""The database connection lost under the app (PostgreSQL's ``pg_terminate_backend``, as a
restart or a failover does): a request that can run again costs nothing, a committed change is
never answered with an error, and a commit whose outcome is unknown is a 503 that the
Idempotency-Key makes safe to retry. Real connections, really terminated."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import create_engine, event, func, select, text
from sqlalchemy.pool import NullPool

from app.auth.services import create_staff
from app.cards import services as cards
from app.catalog.services import create_product
from app.core.db import database
from app.core.settings import settings
from app.customers.services import sign_up
from app.ledger import services as ledger
from app.payments.models import TopUp
from app.payments.services import settle_stale
from app.sales.models import Sale
from app.stores.services import create_store, register_device


@pytest.fixture(autouse=True)
def postgresql_only(db_kind):
    if db_kind != "postgresql":
        pytest.skip("SQLite is a file in the process: it has no connection to lose")


@pytest.fixture
def admin(database_url) -> Iterator:
    """A connection of the test's own to the app's database, to terminate the app's with."""
    engine = create_engine(database_url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
    with engine.connect() as c:
        yield c
    engine.dispose()


def terminate(admin, pids) -> None:
    """End these backends and wait until they are gone."""
    for pid in pids:
        admin.execute(text("SELECT pg_terminate_backend(:pid, 10000)"), {"pid": pid})


def terminate_all(admin) -> int:
    """End every other connection to this database (the app's); how many there were."""
    pids = admin.scalars(
        text(
            "SELECT pid FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
    ).all()
    terminate(admin, pids)
    return len(pids)


def backend_pid(dbapi_connection) -> int:
    return dbapi_connection.info.backend_pid


class Shop:
    """A store with a till, a cashier signed in, a latte and a shopper's card with 100.00,
    all committed."""

    def __init__(self, app, client) -> None:
        self.app, self.client = app, client
        with app.app_context(), database(app).sessions() as s:
            store = create_store(s, code=f"s-{uuid.uuid4().hex[:6]}", name="Lost Connections",
                                 currency=settings().currency)  # fmt: skip
            _, secret = register_device(s, store_id=store.id, kind="pos", name="till")
            create_staff(s, settings(), email=f"c{uuid.uuid4().hex[:6]}@example.test", name="C",
                         role="cashier", password="correct horse battery", staff_code="C777",
                         pin="1357", store_id=store.id)  # fmt: skip
            create_product(s, sku="LATTE", currency="USD", name="Latte", category="coffee",
                           price_minor=450)  # fmt: skip
            token, customer = sign_up(s, settings(), email="ada@example.test",
                                      password="a long password", name="Ada")  # fmt: skip
            s.commit()
            self.shopper_token = token
            card = cards.cards_of(s, customer.id)[0]
            self.card_id, self.card_number = card.id, card.number
            self.card_account_id = card.account_id
        session = client.post(
            "/v1/pos/sessions",
            json={"staff_code": "C777", "pin": "1357"},
            headers={"Authorization": f"Bearer {secret}"},
        )
        assert session.status_code == 201, session.json
        self.cashier = session.json["token"]
        loaded = self.sell_or_load(
            f"/v1/cards/{self.card_id}/top-ups",
            {"amount": {"amount": 10_000, "currency": "USD"}, "tender": "cash"},
        )
        assert loaded.status_code == 201, loaded.json

    def sell_or_load(self, path, body, key=None, client=None):
        return (client or self.client).post(
            path,
            json=body,
            headers={
                "Authorization": f"Bearer {self.cashier}",
                "Idempotency-Key": key or uuid.uuid4().hex,
            },
        )

    def sell(self, key=None, client=None, from_card=True):
        body = {
            "lines": [{"sku": "LATTE", "quantity": 1}],
            "tenders": [
                {"type": "card_balance" if from_card else "cash",
                 "amount": {"amount": 450, "currency": "USD"}}
            ],
        }  # fmt: skip
        if from_card:
            body["customer"] = {"card_number": self.card_number}
        return self.sell_or_load("/v1/sales", body, key=key, client=client)

    def sales(self) -> int:
        with database(self.app).sessions() as s:
            return s.scalar(select(func.count()).select_from(Sale))

    def card_balance(self) -> int:
        with database(self.app).sessions() as s:
            return ledger.balance_of(s, self.card_account_id)


@pytest.fixture
def shop(app, committed) -> Shop:
    return Shop(app, app.test_client())


@pytest.fixture
def engine_events(engine):
    """``listen(target, name, fn)``: an engine or pool event for this test only."""
    added = []

    def listen(target, name, fn):
        event.listen(target, name, fn)
        added.append((target, name, fn))

    yield listen
    for target, name, fn in added:
        event.remove(target, name, fn)


def test_connections_that_died_in_the_pool_cost_no_request(shop, admin):
    assert shop.client.get("/v1/me", headers={"Authorization": f"Bearer {shop.shopper_token}"})
    assert terminate_all(admin) > 0
    me = shop.client.get("/v1/me", headers={"Authorization": f"Bearer {shop.shopper_token}"})
    assert me.status_code == 200, me.json
    terminate_all(admin)
    assert shop.sell().status_code == 201
    assert shop.sales() == 1


def test_a_connection_lost_before_the_first_statement_costs_no_request(
    shop, admin, engine, engine_events
):
    armed = [True]

    def kill_at_checkout(dbapi_connection, _record, _proxy):
        if armed:  # it looked alive when handed out
            armed.clear()
            terminate(admin, [backend_pid(dbapi_connection)])

    before = shop.card_balance()
    engine_events(engine.pool, "checkout", kill_at_checkout)
    response = shop.sell()
    assert not armed, "the connection was not terminated"
    assert response.status_code == 201, response.json
    assert shop.sales() == 1
    assert shop.card_balance() == before - 450


def test_a_connection_lost_in_the_middle_of_a_request_costs_no_request(
    shop, admin, engine, engine_events
):
    statements = []

    def kill_at_the_third_statement(conn, _cursor, _statement, _params, _context, _many):
        statements.append(1)
        if len(statements) == 3:
            terminate(admin, [backend_pid(conn.connection.dbapi_connection)])

    engine_events(engine, "before_cursor_execute", kill_at_the_third_statement)
    response = shop.sell()
    assert len(statements) > 3
    assert response.status_code == 201, response.json
    assert shop.sales() == 1


def test_a_connection_lost_at_the_commit_is_a_503_and_the_same_key_settles_it(
    shop, admin, engine, engine_events
):
    armed = [True]

    def kill_at_commit(conn):
        if armed:
            armed.clear()
            terminate(admin, [backend_pid(conn.connection.dbapi_connection)])

    def kill_before_sending_commit(conn, _cursor, statement, _params, _context, _many):
        if statement.strip().upper() == "COMMIT":  # sent with the writes kept for it
            kill_at_commit(conn)

    before = shop.card_balance()
    engine_events(engine, "before_cursor_execute", kill_before_sending_commit)
    engine_events(engine, "commit", kill_at_commit)  # the driver's own commit, if that sends it
    first = shop.sell(key="lost-at-commit")
    assert first.status_code == 503, first.get_data(as_text=True)
    assert first.json["error"]["code"] == "outcome_unknown"
    assert first.headers["Retry-After"] == "1"
    assert shop.sales() == 0  # this time the commit never arrived
    retried = shop.sell(key="lost-at-commit")
    assert retried.status_code == 201, retried.json
    again = shop.sell(key="lost-at-commit")
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert again.json["id"] == retried.json["id"]
    assert shop.sales() == 1
    assert shop.card_balance() == before - 450


def test_a_connection_lost_after_the_commit_never_turns_the_sale_into_an_error(
    shop, admin, app, engine, engine_events
):
    # Auto-reload: below 96.00, add 20.00; the sale takes the card from 100.00 to 95.50.
    rule = shop.client.put(
        f"/v1/cards/{shop.card_id}/auto-reload",
        json={"threshold": {"amount": 9_600, "currency": "USD"},
              "amount": {"amount": 2_000, "currency": "USD"}, "payment_token": "tok_visa"},
        headers={"Authorization": f"Bearer {shop.shopper_token}"},
    )  # fmt: skip
    assert rule.status_code == 200, rule.json
    arming, armed = [True], []

    def arm_at_commit(_conn):
        if arming:  # the sale's: the next connection handed out is the reload's, after it
            arming.clear()
            armed.append(True)

    def kill_at_checkout(dbapi_connection, _record, _proxy):
        if armed:
            armed.clear()
            terminate(admin, [backend_pid(dbapi_connection)])

    engine_events(engine, "commit", arm_at_commit)
    engine_events(engine.pool, "checkout", kill_at_checkout)
    response = shop.sell()
    assert not armed, "the reload's connection was not terminated"
    assert response.status_code == 201, response.json
    assert response.json["card_balance"]["amount"] == 10_000 - 450
    assert shop.sales() == 1
    with database(app).sessions() as s:
        reload = s.scalars(select(TopUp).where(TopUp.trigger_sale_id == response.json["id"])).one()
        assert reload.status == "pending"  # written down with the sale: not lost
    assert shop.card_balance() == 10_000 - 450

    with app.app_context(), database(app).sessions() as s:
        settled = settle_stale(s, older_than_s=0)
    assert [(t.id, t.status) for t in settled] == [(reload.id, "succeeded")]
    assert shop.card_balance() == 10_000 - 450 + 2_000


def test_under_load_every_answer_tells_the_truth_about_what_committed(shop, admin, app):
    """Tills selling while every connection of the app is terminated again and again: no
    500; a 201 committed exactly one sale; a 503 outcome_unknown is settled by retrying its
    key; nothing else committed anything."""
    keys: list[str] = []  # in the order the tills took them
    taking = threading.Lock()
    answers: dict[str, int] = {}
    done = threading.Event()
    enough = threading.Event()  # killed often enough under the load: the tills may stop
    finished = threading.Semaphore(0)

    def next_key() -> str | None:
        """At least 60 sales, and on until the connections were killed three times."""
        with taking:
            if len(keys) >= 60 and enough.is_set() or len(keys) >= 2_000:
                return None
            keys.append(f"load-{len(keys)}")
            return keys[-1]

    def till():
        client = app.test_client()
        while (key := next_key()) is not None:
            response = shop.sell(key=key, client=client, from_card=False)
            answers[key] = response.status_code
            assert response.status_code in (201, 503), response.get_data(as_text=True)
            if response.status_code == 503:
                assert response.json["error"]["code"] in ("outcome_unknown", "database_unavailable")
            finished.release()

    def killer():
        kills = 0
        while not done.is_set():
            finished.acquire()  # one request done since the last kill
            kills += terminate_all(admin) > 0
            if kills >= 3:
                enough.set()
        return kills

    with ThreadPoolExecutor(5) as pool:
        killing = pool.submit(killer)
        tills = [pool.submit(till) for _ in range(4)]
        try:
            for t in tills:
                t.result()
        finally:
            done.set()
            finished.release()
        # The terminations did happen under the load.
        assert killing.result() >= 3

    with database(app).sessions() as s:
        committed_keys = set(
            s.scalars(
                text(
                    "SELECT key FROM idempotency_keys WHERE status_code = 201 AND key LIKE 'load-%'"
                )
            )
        )
    for key, status in answers.items():
        if status == 201:
            assert key in committed_keys, key
    for key, status in answers.items():
        if status == 503:
            retried = shop.sell(key=key, from_card=False)
            assert retried.status_code == 201, retried.json
    assert shop.sales() == len(keys)

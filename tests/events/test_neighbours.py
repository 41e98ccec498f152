"""Two Omnicards on one PostgreSQL server, each in its own database (staging beside production,
two brands, two test runs), each served as the README serves it: gunicorn with two workers.
Neither may slow the other's events, whichever worker takes a request."""

from __future__ import annotations

import time
import uuid

import pytest
from alembic import command
from sqlalchemy import create_engine, make_url, text

from app import create_app
from app.core.cli import alembic_config
from app.core.db import database
from tests.conftest import TEST_CONFIG
from tests.events.conftest import Live

pytestmark = [pytest.mark.concurrent, pytest.mark.usefixtures("postgresql_only")]

#: The hubs' own look for new events is put off beyond any test's patience: an event that
#: was not woken for would wait this long, not the production second that hides it.
FALLBACK_LOOK_S = 30
#: How long a top-up's event may take to reach a stream here, request included, on a busy
#: machine (it takes milliseconds; a lost wake-up takes the fallback look).
PROMPTLY_S = 2.0
WORKERS = 2


@pytest.fixture
def hub_here():
    return False  # only the gunicorn workers run hubs


@pytest.fixture
def neighbour_url(database_url):
    """A database of its own on the same server, migrated, for the other deployment."""
    url = make_url(database_url)
    name = f"{url.database}_neighbour"
    admin = create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}"'))
    neighbour = url.set(database=name).render_as_string(hide_password=False)
    engine = create_engine(neighbour)
    with engine.begin() as connection:
        command.upgrade(alembic_config(connection), "head")
    engine.dispose()
    yield neighbour
    with admin.connect() as c:
        c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture
def neighbour(neighbour_url):
    """The helpers of ``live``, on the neighbour's database (requests through the test client)."""
    app = create_app(TEST_CONFIG | {"DATABASE_URL": neighbour_url})
    live = Live(app, port=0)
    yield live
    for stream in live.streams:
        stream.close()
    database(app).engine.dispose()


class Deployment:
    """One Omnicard served by gunicorn, with a shopper's stream open and a till to top up at."""

    def __init__(self, live: Live, server) -> None:
        self.server = server
        admin = live.admin_token()
        _, _, self.cashier = live.till(admin)
        token, me = live.shopper()
        self.card_id = me["cards"][0]["id"]
        self.balance = 0
        self.stream = live.stream(token, port=server.port)
        self.stream.set_timeout(PROMPTLY_S)
        #: Each top-up's idempotency key, and how long its event took to reach the stream.
        self.took_s: dict[str, float] = {}

    def top_up(self) -> None:
        key = uuid.uuid4().hex
        sent_at = time.monotonic()
        status, _ = self.server.post(f"/v1/cards/{self.card_id}/top-ups", self.cashier, {
            "amount": {"amount": 500, "currency": "USD"}, "tender": "cash"}, key=key)  # fmt: skip
        assert status == 201
        self.balance += 500
        try:
            self.stream.until(lambda e: e.type == "card.balance_changed"
                              and e.data["data"]["balance"]["amount"] == self.balance)  # fmt: skip
        except TimeoutError:
            worker = self.server.workers_by_key(len(self.took_s) + 1)[key]
            pytest.fail(f"the event of a top-up that worker {worker} took was not on the stream "
                        f"after {PROMPTLY_S} s (so far: {self.by_worker()})")  # fmt: skip
        self.took_s[key] = time.monotonic() - sent_at

    def by_worker(self) -> dict[str, list[float]]:
        """How long each top-up's event took, by the worker that took the top-up."""
        answered = self.server.workers_by_key(len(self.took_s))
        took: dict[str, list[float]] = {}
        for key, seconds in self.took_s.items():
            took.setdefault(answered[key], []).append(seconds)
        return took


def test_a_top_up_reaches_the_streams_promptly_whichever_worker_of_either_deployment_takes_it(
    live, neighbour, neighbour_url, processes, tmp_path
):
    settings = {"OMNICARD_EVENTS_POLL_S": str(FALLBACK_LOOK_S)}
    deployments = []
    for here, url, name in ((live, None, "ours"), (neighbour, neighbour_url, "theirs")):
        server = processes(production=True, url=url, workers=WORKERS, settings=settings,
                           access_log=tmp_path / f"{name}.log")  # fmt: skip
        deployments.append(Deployment(here, server))
    # Each top-up on a connection of its own, until every worker of both has taken some
    # (the kernel hands a new connection to whichever worker accepts first).
    for _ in range(60):  # a card holds at most 100 top-ups of the minimum
        for deployment in deployments:
            deployment.top_up()
        took = [d.by_worker() for d in deployments]
        if all(len(t) == WORKERS and min(map(len, t.values())) >= 3 for t in took):
            break
    else:
        pytest.fail(f"some worker took fewer than 3 of 60 top-ups: {took}")

"""The migrations build exactly the schema the models describe, both ways, on both databases."""

from __future__ import annotations

import json
import os
import uuid
from datetime import datetime

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect, text

from app.core.cli import alembic_config
from app.core.db import make_engine
from app.models import metadata
from tests.conftest import DEFAULT_POSTGRES


@pytest.fixture
def empty_database_url(db_kind, tmp_path):
    if db_kind == "sqlite":
        yield f"sqlite:///{tmp_path / 'migrations.sqlite3'}"
        return
    admin = create_engine(
        os.environ.get("OMNICARD_TEST_POSTGRES_URL", DEFAULT_POSTGRES), isolation_level="AUTOCOMMIT"
    )
    name = f"omnicard_migrations_{uuid.uuid4().hex[:10]}"
    with admin.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}"'))
    yield admin.url.set(database=name).render_as_string(hide_password=False)
    with admin.connect() as c:
        c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def test_upgrade_downgrade_upgrade_leaves_no_difference_from_the_models(empty_database_url):
    engine = make_engine(empty_database_url)
    try:
        with engine.begin() as connection:
            command.upgrade(alembic_config(connection), "head")
        with engine.begin() as connection:
            command.downgrade(alembic_config(connection), "base")
        with engine.connect() as connection:
            assert set(inspect(connection).get_table_names()) <= {"alembic_version"}
        with engine.begin() as connection:
            command.upgrade(alembic_config(connection), "head")
        with engine.connect() as connection:
            differences = compare_metadata(MigrationContext.configure(connection), metadata)
            assert set(inspect(connection).get_table_names()) >= set(metadata.tables)
        assert differences == []
    finally:
        engine.dispose()


def test_events_waiting_for_a_position_move_to_the_outbox_and_back(empty_database_url):
    engine = make_engine(empty_database_url)
    insert = (
        "INSERT INTO events (id, position, type, created_at, customer_id, payload) "
        "VALUES (:id, :position, 'stars.changed', :at, 7, :payload)"
    )
    at = "2026-12-01 10:00:00+00:00"
    try:
        with engine.begin() as connection:
            command.upgrade(alembic_config(connection), "0007")
            for id, position in ((1, 1), (2, None), (3, 2)):
                connection.execute(text(insert), {"id": id, "position": position, "at": at,
                                                  "payload": f'{{"stars": {id}}}'})  # fmt: skip
        with engine.begin() as connection:
            command.upgrade(alembic_config(connection), "0008")
            logged = connection.execute(
                text("SELECT position, payload FROM events ORDER BY position")
            ).all()
            waiting = connection.execute(text("SELECT events FROM event_outbox")).scalars().all()
        assert [(p, _json(payload)["stars"]) for p, payload in logged] == [(1, 1), (2, 3)]
        [[event]] = [_json(events) for events in waiting]
        assert (event["type"], event["customer_id"], event["payload"]) == (
            "stars.changed", 7, {"stars": 2},
        )  # fmt: skip
        assert datetime.fromisoformat(event["created_at"]) == datetime.fromisoformat(at)

        with engine.begin() as connection:
            command.downgrade(alembic_config(connection), "0007")
            rows = connection.execute(
                text("SELECT position, payload FROM events ORDER BY id")
            ).all()
        assert [(p, _json(payload)["stars"]) for p, payload in rows] == [
            (1, 1), (2, 3), (None, 2),
        ]  # fmt: skip
    finally:
        engine.dispose()


def _json(value):
    return json.loads(value) if isinstance(value, str) else value


def test_kept_answers_carry_over_to_revision_0009_as_their_json_text_and_back(
    empty_database_url,
):
    engine = make_engine(empty_database_url)
    insert = (
        "INSERT INTO idempotency_keys (principal, key, request_hash, status_code, response, "
        "created_at) VALUES ('device:1', :key, 'h', 201, :response, '2026-12-01 10:00:00+00:00')"
    )
    answer = {"id": 5, "amount": {"amount": 450, "currency": "USD"}}
    try:
        with engine.begin() as connection:
            command.upgrade(alembic_config(connection), "0008")
            connection.execute(text(insert), {"key": "k-1", "response": json.dumps(answer)})
            connection.execute(text(insert), {"key": "k-2", "response": None})
        with engine.begin() as connection:
            command.upgrade(alembic_config(connection), "0009")
            kept = connection.execute(
                text("SELECT key, response_body FROM idempotency_keys ORDER BY key")
            ).all()
        assert [(key, body and json.loads(body)) for key, body in kept] == [
            ("k-1", answer), ("k-2", None),
        ]  # fmt: skip

        with engine.begin() as connection:
            connection.execute(text(
                "INSERT INTO idempotency_keys (principal, key, request_hash, created_at) "
                "VALUES ('device:1', :key, 'h', '2026-12-01 10:00:00+00:00')"
            ), {"key": "k" * 255})  # fmt: skip
            command.downgrade(alembic_config(connection), "0008")
            rows = connection.execute(
                text("SELECT key, response FROM idempotency_keys ORDER BY key")
            ).all()
        # A key longer than revision 0008 took cannot be kept; its request is long answered.
        assert [(key, _json(response)) for key, response in rows] == [
            ("k-1", answer), ("k-2", None),
        ]  # fmt: skip
    finally:
        engine.dispose()

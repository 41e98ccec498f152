"""The outbox apart from the event log: a transaction writes its events as one outbox row, and
the sequencer moves them into ``events``, which is only ever added to, keyed by position.

Revision 0005 kept both in one table: every event was written with no position, then rewritten
by the sequencer with one, so each was written twice into all five of its indexes. Now a
transaction writes one outbox row (one index), and the log's rows are written once, into
indexes that leave out the events with no device or no store.

Events still waiting for a position when this runs are moved to the outbox, in order, so that
the new sequencer numbers them and writes their webhook deliveries as the old one would have.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02
"""

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

COLUMNS = ("type", "created_at", "customer_id", "store_id", "device_id", "card_id", "payload")
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
JSONB = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def _log_columns() -> list[sa.Column]:
    """The columns ``events`` has in both revisions, but its keys."""
    return [
        sa.Column("type", sa.String(length=40), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("customer_id", sa.BigInteger(), nullable=True),
        sa.Column("store_id", sa.BigInteger(), nullable=True),
        sa.Column("device_id", sa.BigInteger(), nullable=True),
        sa.Column("card_id", sa.BigInteger(), nullable=True),
        sa.Column("payload", JSONB, nullable=False),
    ]


def _events_table(name: str, *keys: str) -> sa.TableClause:
    return sa.table(
        name, *(sa.column(k) for k in keys), sa.column("type"),
        sa.column("created_at", sa.DateTime(timezone=True)), sa.column("customer_id"),
        sa.column("store_id"), sa.column("device_id"), sa.column("card_id"),
        sa.column("payload", JSONB),
    )  # fmt: skip


OUTBOX = sa.table("event_outbox", sa.column("id"), sa.column("events", sa.JSON()))
POSTGRESQL = "postgresql"


def upgrade() -> None:
    op.create_table(
        "event_outbox",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("events", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_event_outbox")),
    )
    bind = op.get_bind()
    old = _events_table("events", "id", "position")
    waiting = bind.execute(
        sa.select(*(old.c[name] for name in COLUMNS)).where(old.c.position.is_(None))
        .order_by(old.c.id)
    ).all()  # fmt: skip
    for row in waiting:  # one outbox row each, in the order they would have been numbered
        event = dict(zip(COLUMNS, row, strict=True))
        at = event["created_at"]
        event["created_at"] = (at if at.tzinfo else at.replace(tzinfo=UTC)).isoformat()
        bind.execute(sa.insert(OUTBOX).values(events=[event]))

    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.drop_index(
            "ix_events_unsequenced",
            postgresql_where=sa.text("position IS NULL"),
            sqlite_where=sa.text("position IS NULL"),
        )
        batch_op.drop_index("ix_events_store_position")
        batch_op.drop_index("ix_events_device_position")
        batch_op.drop_index("ix_events_customer_position")
    op.rename_table("events", "events_0005")
    if bind.dialect.name == POSTGRESQL:  # their indexes' names are the schema's, not the table's
        op.execute(
            "ALTER TABLE events_0005 DROP CONSTRAINT pk_events, DROP CONSTRAINT uq_events_position"
        )
    op.create_table(
        "events",
        sa.Column("position", BIG_ID, autoincrement=False, nullable=False),
        *_log_columns(),
        sa.PrimaryKeyConstraint("position", name=op.f("pk_events")),
    )
    with op.batch_alter_table("events", schema=None) as batch_op:
        for key in ("customer_id", "store_id", "device_id"):
            where = sa.text(f"{key} IS NOT NULL")
            batch_op.create_index(
                f"ix_events_{key.removesuffix('_id')}_position", [key, "position"],
                unique=False, postgresql_where=where, sqlite_where=where,
            )  # fmt: skip
    names = ", ".join(COLUMNS)
    op.execute(
        f"INSERT INTO events (position, {names}) SELECT position, {names} FROM events_0005 "
        "WHERE position IS NOT NULL"
    )
    op.drop_table("events_0005")


def downgrade() -> None:
    bind = op.get_bind()
    with op.batch_alter_table("events", schema=None) as batch_op:
        for key in ("customer_id", "store_id", "device_id"):
            where = sa.text(f"{key} IS NOT NULL")
            batch_op.drop_index(
                f"ix_events_{key.removesuffix('_id')}_position",
                postgresql_where=where, sqlite_where=where,
            )  # fmt: skip
    op.rename_table("events", "events_0008")
    if bind.dialect.name == POSTGRESQL:
        op.execute("ALTER TABLE events_0008 DROP CONSTRAINT pk_events")
    op.create_table(
        "events",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("position", sa.BigInteger(), nullable=True),
        *_log_columns(),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_events")),
        sa.UniqueConstraint("position", name=op.f("uq_events_position")),
    )
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.create_index(
            "ix_events_customer_position", ["customer_id", "position"], unique=False
        )
        batch_op.create_index("ix_events_device_position", ["device_id", "position"], unique=False)
        batch_op.create_index("ix_events_store_position", ["store_id", "position"], unique=False)
        batch_op.create_index(
            "ix_events_unsequenced",
            ["id"],
            unique=False,
            postgresql_where=sa.text("position IS NULL"),
            sqlite_where=sa.text("position IS NULL"),
        )
    names = ", ".join(COLUMNS)
    op.execute(
        f"INSERT INTO events (id, position, {names}) "
        f"SELECT position, position, {names} FROM events_0008"
    )
    if bind.dialect.name == POSTGRESQL:
        op.execute(
            "SELECT setval(pg_get_serial_sequence('events', 'id'), "
            "COALESCE((SELECT MAX(id) FROM events), 0) + 1, false)"
        )
    # What was still waiting in the outbox goes back as events with no position, in order.
    new = _events_table("events")
    for (events,) in bind.execute(sa.select(OUTBOX.c.events).order_by(OUTBOX.c.id)):
        for event in events:
            at = datetime.fromisoformat(event["created_at"])
            bind.execute(sa.insert(new).values({**event, "created_at": at}))
    op.drop_table("events_0008")
    op.drop_table("event_outbox")

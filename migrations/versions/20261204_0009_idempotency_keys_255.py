"""Idempotency keys of up to 255 visible ASCII characters, and replays of the first answer's
exact bytes.

A key was up to 200 characters of anything; it is now 1-255 of ``!`` to ``~`` (checked by the
app), held in ``idempotency_keys.key`` and ``top_ups.idempotency_key``. The first answer was
kept as JSON, which PostgreSQL's JSONB and the replay's own serialisation each wrote back in
their own way; it is now kept as the text that was sent. Answers kept before this revision are
carried over as their JSON text, the same document if not the same bytes.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

JSONB = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def _key_lengths(old: int, new: int) -> None:
    with op.batch_alter_table("idempotency_keys") as batch:
        batch.alter_column(
            "key", type_=sa.String(length=new), existing_type=sa.String(length=old),
            existing_nullable=False,
        )  # fmt: skip
    with op.batch_alter_table("top_ups") as batch:
        batch.alter_column(
            "idempotency_key", type_=sa.String(length=new), existing_type=sa.String(length=old),
            existing_nullable=True,
        )  # fmt: skip


def upgrade() -> None:
    _key_lengths(200, 255)
    op.add_column("idempotency_keys", sa.Column("response_body", sa.Text(), nullable=True))
    as_text = "response::text" if op.get_bind().dialect.name == "postgresql" else "response"
    op.execute(f"UPDATE idempotency_keys SET response_body = {as_text}")
    with op.batch_alter_table("idempotency_keys") as batch:
        batch.drop_column("response")


def downgrade() -> None:
    op.add_column("idempotency_keys", sa.Column("response", JSONB, nullable=True))
    as_json = (
        "response_body::jsonb" if op.get_bind().dialect.name == "postgresql" else ("response_body")
    )
    op.execute(f"UPDATE idempotency_keys SET response = {as_json}")
    with op.batch_alter_table("idempotency_keys") as batch:
        batch.drop_column("response_body")
    op.execute("DELETE FROM idempotency_keys WHERE length(key) > 200")
    op.execute("UPDATE top_ups SET idempotency_key = NULL WHERE length(idempotency_key) > 200")
    _key_lengths(255, 200)

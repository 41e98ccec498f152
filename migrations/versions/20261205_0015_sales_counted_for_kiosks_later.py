"""Kiosk suggestions count sales after they commit, not inside them.

``sales.kiosk_counted``: whether the sale is in the suggestions' counts yet
(app.kiosk.counts.count_new_sales), with a partial index of the sales still to count. Every
sale made before this revision was counted as it was made.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-05
"""

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("sales") as batch:
        batch.add_column(
            sa.Column("kiosk_counted", sa.Boolean(), nullable=False, server_default=sa.true())
        )
    with op.batch_alter_table("sales") as batch:
        batch.alter_column("kiosk_counted", server_default=sa.false())
        batch.create_index(
            batch.f("ix_sales_to_count_for_kiosks"),
            ["id"],
            unique=False,
            postgresql_where=sa.text("NOT kiosk_counted"),
            sqlite_where=sa.text("NOT kiosk_counted"),
        )


def downgrade() -> None:
    with op.batch_alter_table("sales") as batch:
        batch.drop_index(batch.f("ix_sales_to_count_for_kiosks"))
        batch.drop_column("kiosk_counted")

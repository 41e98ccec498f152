"""Ledger accounts can be frozen: a frozen account refuses every posting.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("ledger_accounts") as batch:
        batch.add_column(
            sa.Column("frozen", sa.Boolean(), server_default=sa.false(), nullable=False)
        )
        batch.drop_constraint(op.f("ck_ledger_accounts_sharded_unlimited"), type_="check")
        batch.create_check_constraint(
            "sharded_unlimited",
            "shard_count = 1 OR (NOT no_negative AND max_balance IS NULL AND NOT frozen)",
        )


def downgrade() -> None:
    with op.batch_alter_table("ledger_accounts") as batch:
        batch.drop_constraint(op.f("ck_ledger_accounts_sharded_unlimited"), type_="check")
        batch.create_check_constraint(
            "sharded_unlimited", "shard_count = 1 OR (NOT no_negative AND max_balance IS NULL)"
        )
        batch.drop_column("frozen")

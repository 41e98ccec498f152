"""Gift cards sold at the till, and offline allowances.

Cards gain the status ``inactive`` (a gift card from a batch, not sold yet) and a hold account
for offline allowances; the tables of allowances and of the offline sales refused; a sale
remembers when an offline till made it and the allowance it took card money from. Gift cards
issued before this revision stay as they are (active): whether they were sold is not known.

Revision ID: 0011
Revises: 0009
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

UtcDateTime = sa.DateTime(timezone=True)

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
JSONB = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def _card_statuses(statuses: str) -> None:
    with op.batch_alter_table("cards") as batch:
        batch.drop_constraint(op.f("ck_cards_status"), type_="check")
        batch.create_check_constraint("status", f"status IN ({statuses})")


def upgrade() -> None:
    op.create_table(
        "offline_refusals",
        sa.Column("id", ID, nullable=False),
        sa.Column("device_id", ID, nullable=False),
        sa.Column("cashier_id", ID, nullable=False),
        sa.Column("reason", sa.String(length=40), nullable=False),
        sa.Column("body", JSONB, nullable=False),
        sa.Column("created_at", UtcDateTime, nullable=False),
        sa.ForeignKeyConstraint(
            ["cashier_id"], ["staff.id"], name=op.f("fk_offline_refusals_cashier_id_staff")
        ),
        sa.ForeignKeyConstraint(
            ["device_id"], ["devices.id"], name=op.f("fk_offline_refusals_device_id_devices")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_offline_refusals")),
    )
    with op.batch_alter_table("offline_refusals") as batch:
        batch.create_index(batch.f("ix_offline_refusals_device_id"), ["device_id"], unique=False)

    op.create_table(
        "offline_allowances",
        sa.Column("id", ID, nullable=False),
        sa.Column("card_id", ID, nullable=False),
        sa.Column("device_id", ID, nullable=False),
        sa.Column("store_id", ID, nullable=False),
        sa.Column("cashier_id", ID, nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("used_minor", sa.BigInteger(), nullable=False),
        sa.Column("released_minor", sa.BigInteger(), nullable=True),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("salt", sa.String(length=64), nullable=False),
        sa.Column("expires_at", UtcDateTime, nullable=False),
        sa.Column("created_at", UtcDateTime, nullable=False),
        sa.Column("released_at", UtcDateTime, nullable=True),
        sa.Column("hold_transaction_id", ID, nullable=True),
        sa.CheckConstraint(
            "status IN ('live','released')", name=op.f("ck_offline_allowances_status")
        ),
        sa.CheckConstraint("amount_minor >= 0", name=op.f("ck_offline_allowances_amount")),
        sa.CheckConstraint(
            "used_minor >= 0 AND used_minor <= amount_minor",
            name=op.f("ck_offline_allowances_used"),
        ),
        sa.ForeignKeyConstraint(
            ["card_id"], ["cards.id"], name=op.f("fk_offline_allowances_card_id_cards")
        ),
        sa.ForeignKeyConstraint(
            ["cashier_id"], ["staff.id"], name=op.f("fk_offline_allowances_cashier_id_staff")
        ),
        sa.ForeignKeyConstraint(
            ["device_id"], ["devices.id"], name=op.f("fk_offline_allowances_device_id_devices")
        ),
        sa.ForeignKeyConstraint(
            ["hold_transaction_id"],
            ["ledger_transactions.id"],
            name=op.f("fk_offline_allowances_hold_transaction_id_ledger_transactions"),
        ),
        sa.ForeignKeyConstraint(
            ["store_id"], ["stores.id"], name=op.f("fk_offline_allowances_store_id_stores")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_offline_allowances")),
    )
    with op.batch_alter_table("offline_allowances") as batch:
        batch.create_index(batch.f("ix_offline_allowances_card_id"), ["card_id"], unique=False)
        batch.create_index(batch.f("ix_offline_allowances_device_id"), ["device_id"], unique=False)
        batch.create_index(
            "uq_offline_allowances_live",
            ["card_id", "device_id"],
            unique=True,
            postgresql_where=sa.text("status = 'live'"),
            sqlite_where=sa.text("status = 'live'"),
        )

    with op.batch_alter_table("cards") as batch:
        batch.add_column(sa.Column("held_account_id", ID, nullable=True))
        batch.create_unique_constraint(batch.f("uq_cards_held_account_id"), ["held_account_id"])
        batch.create_foreign_key(
            batch.f("fk_cards_held_account_id_ledger_accounts"),
            "ledger_accounts",
            ["held_account_id"],
            ["id"],
        )
    _card_statuses("'active','frozen','inactive'")

    with op.batch_alter_table("sales") as batch:
        batch.add_column(sa.Column("offline_made_at", UtcDateTime, nullable=True))
        batch.add_column(sa.Column("offline_allowance_id", ID, nullable=True))
        batch.create_foreign_key(
            batch.f("fk_sales_offline_allowance_id_offline_allowances"),
            "offline_allowances",
            ["offline_allowance_id"],
            ["id"],
        )


def downgrade() -> None:
    with op.batch_alter_table("sales") as batch:
        batch.drop_constraint(
            batch.f("fk_sales_offline_allowance_id_offline_allowances"), type_="foreignkey"
        )
        batch.drop_column("offline_allowance_id")
        batch.drop_column("offline_made_at")
    # A gift card not sold yet was, before this revision, simply active.
    op.execute("UPDATE cards SET status = 'active' WHERE status = 'inactive'")
    _card_statuses("'active','frozen'")
    with op.batch_alter_table("cards") as batch:
        batch.drop_constraint(
            batch.f("fk_cards_held_account_id_ledger_accounts"), type_="foreignkey"
        )
        batch.drop_constraint(batch.f("uq_cards_held_account_id"), type_="unique")
        batch.drop_column("held_account_id")
    with op.batch_alter_table("offline_allowances") as batch:
        batch.drop_index("uq_offline_allowances_live")
        batch.drop_index(batch.f("ix_offline_allowances_device_id"))
        batch.drop_index(batch.f("ix_offline_allowances_card_id"))
    op.drop_table("offline_allowances")
    with op.batch_alter_table("offline_refusals") as batch:
        batch.drop_index(batch.f("ix_offline_refusals_device_id"))
    op.drop_table("offline_refusals")

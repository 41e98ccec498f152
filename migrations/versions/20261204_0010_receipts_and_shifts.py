"""Digital receipts, shifts at the till, and the cash a shopper handed over.

- ``receipts``: a snapshot of each sale's and refund's receipt, keyed by an unguessable id.
- ``shifts``: a cashier's turn at a till, from the float to the count, with its close report;
  at most one open per till (a partial unique index).
- ``sales``, ``refunds``, ``top_ups`` name the shift they were rung up in (``shift_id``);
  ``sale_tenders.given_minor`` is the cash handed over for a cash tender, when not exact.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "shifts",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("store_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column(
            "device_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column(
            "cashier_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("float_minor", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(length=8), nullable=False),
        sa.Column("opened_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "closed_by_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
        ),
        sa.Column("counted_minor", sa.BigInteger(), nullable=True),
        sa.Column(
            "report",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.CheckConstraint(
            "(status = 'open' AND closed_at IS NULL AND report IS NULL) OR "
            "(status = 'closed' AND closed_at IS NOT NULL AND report IS NOT NULL "
            "AND counted_minor IS NOT NULL)",
            name=op.f("ck_shifts_closed"),
        ),
        sa.CheckConstraint("status IN ('open','closed')", name=op.f("ck_shifts_status")),
        sa.CheckConstraint(
            "counted_minor IS NULL OR counted_minor >= 0", name=op.f("ck_shifts_counted")
        ),
        sa.CheckConstraint("float_minor >= 0", name=op.f("ck_shifts_float")),
        sa.ForeignKeyConstraint(
            ["cashier_id"], ["staff.id"], name=op.f("fk_shifts_cashier_id_staff")
        ),
        sa.ForeignKeyConstraint(
            ["closed_by_id"], ["staff.id"], name=op.f("fk_shifts_closed_by_id_staff")
        ),
        sa.ForeignKeyConstraint(
            ["device_id"], ["devices.id"], name=op.f("fk_shifts_device_id_devices")
        ),
        sa.ForeignKeyConstraint(
            ["store_id"], ["stores.id"], name=op.f("fk_shifts_store_id_stores")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_shifts")),
    )
    with op.batch_alter_table("shifts", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_shifts_device_id"), ["device_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_shifts_store_id"), ["store_id"], unique=False)
        batch_op.create_index(
            "uq_shifts_one_open_per_device",
            ["device_id"],
            unique=True,
            postgresql_where=sa.text("status = 'open'"),
            sqlite_where=sa.text("status = 'open'"),
        )

    op.create_table(
        "receipts",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("sale_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("refund_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column(
            "body",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "(kind = 'sale' AND refund_id IS NULL) OR (kind = 'refund' AND refund_id IS NOT NULL)",
            name=op.f("ck_receipts_kind"),
        ),
        sa.ForeignKeyConstraint(
            ["refund_id"], ["refunds.id"], name=op.f("fk_receipts_refund_id_refunds")
        ),
        sa.ForeignKeyConstraint(["sale_id"], ["sales.id"], name=op.f("fk_receipts_sale_id_sales")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_receipts")),
        sa.UniqueConstraint("refund_id", name=op.f("uq_receipts_refund_id")),
    )
    with op.batch_alter_table("receipts", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_receipts_sale_id"), ["sale_id"], unique=False)

    with op.batch_alter_table("refunds", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "shift_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
            )
        )
        batch_op.create_index(batch_op.f("ix_refunds_shift_id"), ["shift_id"], unique=False)
        batch_op.create_foreign_key(
            batch_op.f("fk_refunds_shift_id_shifts"), "shifts", ["shift_id"], ["id"]
        )

    with op.batch_alter_table("sale_tenders", schema=None) as batch_op:
        batch_op.add_column(sa.Column("given_minor", sa.BigInteger(), nullable=True))
        batch_op.create_check_constraint(
            "given",
            "given_minor IS NULL OR (type = 'cash' AND given_minor >= amount_minor)",
        )

    with op.batch_alter_table("sales", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "shift_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
            )
        )
        batch_op.create_index(batch_op.f("ix_sales_created_at"), ["created_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_sales_shift_id"), ["shift_id"], unique=False)
        batch_op.create_foreign_key(
            batch_op.f("fk_sales_shift_id_shifts"), "shifts", ["shift_id"], ["id"]
        )

    with op.batch_alter_table("top_ups", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "shift_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
            )
        )
        batch_op.create_index(batch_op.f("ix_top_ups_shift_id"), ["shift_id"], unique=False)
        batch_op.create_foreign_key(
            batch_op.f("fk_top_ups_shift_id_shifts"), "shifts", ["shift_id"], ["id"]
        )


def downgrade() -> None:
    with op.batch_alter_table("top_ups", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("fk_top_ups_shift_id_shifts"), type_="foreignkey")
        batch_op.drop_index(batch_op.f("ix_top_ups_shift_id"))
        batch_op.drop_column("shift_id")

    with op.batch_alter_table("sales", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("fk_sales_shift_id_shifts"), type_="foreignkey")
        batch_op.drop_index(batch_op.f("ix_sales_shift_id"))
        batch_op.drop_index(batch_op.f("ix_sales_created_at"))
        batch_op.drop_column("shift_id")

    with op.batch_alter_table("sale_tenders", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("ck_sale_tenders_given"), type_="check")
        batch_op.drop_column("given_minor")

    with op.batch_alter_table("refunds", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("fk_refunds_shift_id_shifts"), type_="foreignkey")
        batch_op.drop_index(batch_op.f("ix_refunds_shift_id"))
        batch_op.drop_column("shift_id")

    with op.batch_alter_table("receipts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_receipts_sale_id"))

    op.drop_table("receipts")
    with op.batch_alter_table("shifts", schema=None) as batch_op:
        batch_op.drop_index(
            "uq_shifts_one_open_per_device",
            postgresql_where=sa.text("status = 'open'"),
            sqlite_where=sa.text("status = 'open'"),
        )
        batch_op.drop_index(batch_op.f("ix_shifts_store_id"))
        batch_op.drop_index(batch_op.f("ix_shifts_device_id"))

    op.drop_table("shifts")

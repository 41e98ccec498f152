"""Kiosk suggestions: co-occurrence counts kept as taps and sales are recorded.

``kiosk_pair_counts`` (how often two products were bought or tapped together, both ways)
and ``kiosk_product_counts`` (a product's taps and units sold per store). Sales made before
this revision are counted by ``flask kiosk recount``.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-05
"""

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _fk(table: str, column: str, referred: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        [column], [f"{referred}.id"], name=op.f(f"fk_{table}_{column}_{referred}")
    )


def upgrade() -> None:
    op.create_table(
        "kiosk_pair_counts",
        sa.Column("product_id", ID, nullable=False),
        sa.Column("other_id", ID, nullable=False),
        sa.Column("bought", sa.BigInteger(), nullable=False),
        sa.Column("tapped", sa.BigInteger(), nullable=False),
        sa.Column("score", sa.BigInteger(), nullable=False),
        sa.CheckConstraint(
            "product_id <> other_id", name=op.f("ck_kiosk_pair_counts_distinct_products")
        ),
        sa.CheckConstraint("bought >= 0 AND tapped >= 0", name=op.f("ck_kiosk_pair_counts_counts")),
        _fk("kiosk_pair_counts", "product_id", "products"),
        _fk("kiosk_pair_counts", "other_id", "products"),
        sa.PrimaryKeyConstraint("product_id", "other_id", name=op.f("pk_kiosk_pair_counts")),
    )
    with op.batch_alter_table("kiosk_pair_counts") as batch:
        batch.create_index(
            batch.f("ix_kiosk_pair_counts_product_id"), ["product_id", "score"], unique=False
        )
    op.create_table(
        "kiosk_product_counts",
        sa.Column("product_id", ID, nullable=False),
        sa.Column("store_id", ID, nullable=False),
        sa.Column("taps", sa.BigInteger(), nullable=False),
        sa.Column("sold", sa.BigInteger(), nullable=False),
        sa.CheckConstraint("taps >= 0 AND sold >= 0", name=op.f("ck_kiosk_product_counts_counts")),
        _fk("kiosk_product_counts", "product_id", "products"),
        _fk("kiosk_product_counts", "store_id", "stores"),
        sa.PrimaryKeyConstraint("product_id", "store_id", name=op.f("pk_kiosk_product_counts")),
    )


def downgrade() -> None:
    op.drop_table("kiosk_product_counts")
    with op.batch_alter_table("kiosk_pair_counts") as batch:
        batch.drop_index(batch.f("ix_kiosk_pair_counts_product_id"))
    op.drop_table("kiosk_pair_counts")

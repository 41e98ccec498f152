"""Which stores carry a product, and whether it is in stock there.

``store_products``: one row per store that sells a product (none: the store does not), with
``in_stock``; the product page lists them and the kiosks say "in stock at this store or not".

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-05
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "store_products",
        sa.Column("id", ID, nullable=False),
        sa.Column("product_id", ID, nullable=False),
        sa.Column("store_id", ID, nullable=False),
        sa.Column("in_stock", sa.Boolean(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["product_id"], ["products.id"], name=op.f("fk_store_products_product_id_products")
        ),
        sa.ForeignKeyConstraint(
            ["store_id"], ["stores.id"], name=op.f("fk_store_products_store_id_stores")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_store_products")),
        sa.UniqueConstraint(
            "product_id", "store_id", name=op.f("uq_store_products_product_id_store_id")
        ),
    )
    with op.batch_alter_table("store_products") as batch:
        batch.create_index(batch.f("ix_store_products_store_id"), ["store_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("store_products") as batch:
        batch.drop_index(batch.f("ix_store_products_store_id"))
    op.drop_table("store_products")

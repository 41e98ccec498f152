"""Shoppers, staff, stores, devices, cards, catalog, top-ups, sales and refunds.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23 15:54:12.753690
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "failed_attempts",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("scope", sa.String(length=40), nullable=False),
        sa.Column("subject", sa.String(length=120), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_failed_attempts")),
    )
    with op.batch_alter_table("failed_attempts", schema=None) as batch_op:
        batch_op.create_index(
            "ix_failed_attempts_scope_subject_at", ["scope", "subject", "at"], unique=False
        )

    op.create_table(
        "products",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("sku", sa.String(length=40), nullable=False),
        sa.Column("barcode", sa.String(length=32), nullable=True),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("category", sa.String(length=80), nullable=False),
        sa.Column("price_minor", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("image_url", sa.String(length=500), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column(
            "extra",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.CheckConstraint("length(currency) = 3", name=op.f("ck_products_currency")),
        sa.CheckConstraint("price_minor >= 0", name=op.f("ck_products_price")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_products")),
        sa.UniqueConstraint("barcode", name=op.f("uq_products_barcode")),
        sa.UniqueConstraint("sku", name=op.f("uq_products_sku")),
    )
    with op.batch_alter_table("products", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_products_category"), ["category"], unique=False)

    op.create_table(
        "customers",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("email", sa.String(length=254), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("password_hash", sa.String(length=200), nullable=False),
        sa.Column(
            "stars_account_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("lifetime_stars", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["stars_account_id"],
            ["ledger_accounts.id"],
            name=op.f("fk_customers_stars_account_id_ledger_accounts"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_customers")),
        sa.UniqueConstraint("email", name=op.f("uq_customers_email")),
        sa.UniqueConstraint("stars_account_id", name=op.f("uq_customers_stars_account_id")),
    )
    op.create_table(
        "product_tags",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("tag_id", sa.String(length=32), nullable=False),
        sa.Column(
            "product_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["product_id"], ["products.id"], name=op.f("fk_product_tags_product_id_products")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_product_tags")),
        sa.UniqueConstraint("tag_id", name=op.f("uq_product_tags_tag_id")),
    )
    with op.batch_alter_table("product_tags", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_product_tags_product_id"), ["product_id"], unique=False
        )

    op.create_table(
        "stores",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("code", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("address", sa.String(length=400), nullable=False),
        sa.Column(
            "sales_account_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column(
            "cash_account_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column(
            "bank_card_account_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            nullable=False,
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["bank_card_account_id"],
            ["ledger_accounts.id"],
            name=op.f("fk_stores_bank_card_account_id_ledger_accounts"),
        ),
        sa.ForeignKeyConstraint(
            ["cash_account_id"],
            ["ledger_accounts.id"],
            name=op.f("fk_stores_cash_account_id_ledger_accounts"),
        ),
        sa.ForeignKeyConstraint(
            ["sales_account_id"],
            ["ledger_accounts.id"],
            name=op.f("fk_stores_sales_account_id_ledger_accounts"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_stores")),
        sa.UniqueConstraint("code", name=op.f("uq_stores_code")),
    )
    op.create_table(
        "devices",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("store_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("secret_hash", sa.String(length=64), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("kind IN ('pos','kiosk')", name=op.f("ck_devices_kind")),
        sa.ForeignKeyConstraint(
            ["store_id"], ["stores.id"], name=op.f("fk_devices_store_id_stores")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_devices")),
        sa.UniqueConstraint("secret_hash", name=op.f("uq_devices_secret_hash")),
    )
    with op.batch_alter_table("devices", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_devices_store_id"), ["store_id"], unique=False)

    op.create_table(
        "staff",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("email", sa.String(length=254), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("password_hash", sa.String(length=200), nullable=False),
        sa.Column("staff_code", sa.String(length=16), nullable=True),
        sa.Column("pin_hash", sa.String(length=200), nullable=True),
        sa.Column("store_id", sa.BigInteger(), nullable=True),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("role IN ('admin','cashier')", name=op.f("ck_staff_role")),
        sa.ForeignKeyConstraint(["store_id"], ["stores.id"], name=op.f("fk_staff_store_id_stores")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_staff")),
        sa.UniqueConstraint("email", name=op.f("uq_staff_email")),
        sa.UniqueConstraint("staff_code", name=op.f("uq_staff_staff_code")),
    )
    op.create_table(
        "auth_tokens",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column(
            "customer_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
        ),
        sa.Column("staff_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("device_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("hint", sa.String(length=4), nullable=False),
        sa.CheckConstraint(
            "(kind = 'customer' AND customer_id IS NOT NULL) OR "
            "(kind = 'staff' AND staff_id IS NOT NULL) OR "
            "(kind = 'cashier' AND staff_id IS NOT NULL AND device_id IS NOT NULL)",
            name=op.f("ck_auth_tokens_owner"),
        ),
        sa.CheckConstraint(
            "kind IN ('customer','staff','cashier')", name=op.f("ck_auth_tokens_kind")
        ),
        sa.ForeignKeyConstraint(
            ["customer_id"], ["customers.id"], name=op.f("fk_auth_tokens_customer_id_customers")
        ),
        sa.ForeignKeyConstraint(
            ["device_id"], ["devices.id"], name=op.f("fk_auth_tokens_device_id_devices")
        ),
        sa.ForeignKeyConstraint(
            ["staff_id"], ["staff.id"], name=op.f("fk_auth_tokens_staff_id_staff")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_auth_tokens")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_auth_tokens_token_hash")),
    )
    with op.batch_alter_table("auth_tokens", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_auth_tokens_customer_id"), ["customer_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_auth_tokens_device_id"), ["device_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_auth_tokens_staff_id"), ["staff_id"], unique=False)

    op.create_table(
        "card_batches",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("note", sa.String(length=200), nullable=False),
        sa.Column(
            "created_by_staff_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            nullable=False,
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["created_by_staff_id"],
            ["staff.id"],
            name=op.f("fk_card_batches_created_by_staff_id_staff"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_card_batches")),
    )
    op.create_table(
        "cards",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("number", sa.String(length=16), nullable=False),
        sa.Column("security_code_hash", sa.String(length=200), nullable=True),
        sa.Column("kind", sa.String(length=10), nullable=False),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column(
            "customer_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
        ),
        sa.Column("is_primary", sa.Boolean(), nullable=False),
        sa.Column(
            "account_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("nfc_uid", sa.String(length=32), nullable=True),
        sa.Column("batch_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column(
            "replaced_by_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("registered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("frozen_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("kind IN ('digital','physical')", name=op.f("ck_cards_kind")),
        sa.CheckConstraint("status IN ('active','frozen')", name=op.f("ck_cards_status")),
        sa.CheckConstraint(
            "NOT is_primary OR customer_id IS NOT NULL", name=op.f("ck_cards_primary_has_owner")
        ),
        sa.ForeignKeyConstraint(
            ["account_id"], ["ledger_accounts.id"], name=op.f("fk_cards_account_id_ledger_accounts")
        ),
        sa.ForeignKeyConstraint(
            ["batch_id"], ["card_batches.id"], name=op.f("fk_cards_batch_id_card_batches")
        ),
        sa.ForeignKeyConstraint(
            ["customer_id"], ["customers.id"], name=op.f("fk_cards_customer_id_customers")
        ),
        sa.ForeignKeyConstraint(
            ["replaced_by_id"], ["cards.id"], name=op.f("fk_cards_replaced_by_id_cards")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_cards")),
        sa.UniqueConstraint("account_id", name=op.f("uq_cards_account_id")),
        sa.UniqueConstraint("nfc_uid", name=op.f("uq_cards_nfc_uid")),
        sa.UniqueConstraint("number", name=op.f("uq_cards_number")),
    )
    with op.batch_alter_table("cards", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_cards_customer_id"), ["customer_id"], unique=False)
        batch_op.create_index(
            "uq_cards_one_primary",
            ["customer_id"],
            unique=True,
            postgresql_where=sa.text("is_primary"),
            sqlite_where=sa.text("is_primary"),
        )

    op.create_table(
        "auto_reloads",
        sa.Column("card_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("threshold_minor", sa.BigInteger(), nullable=False),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("payment_token", sa.String(length=100), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("amount_minor > 0", name=op.f("ck_auto_reloads_amount")),
        sa.CheckConstraint("threshold_minor >= 0", name=op.f("ck_auto_reloads_threshold")),
        sa.ForeignKeyConstraint(
            ["card_id"], ["cards.id"], name=op.f("fk_auto_reloads_card_id_cards")
        ),
        sa.PrimaryKeyConstraint("card_id", name=op.f("pk_auto_reloads")),
    )
    op.create_table(
        "pay_codes",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("code_hash", sa.String(length=64), nullable=False),
        sa.Column("card_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["card_id"], ["cards.id"], name=op.f("fk_pay_codes_card_id_cards")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pay_codes")),
        sa.UniqueConstraint("code_hash", name=op.f("uq_pay_codes_code_hash")),
    )
    with op.batch_alter_table("pay_codes", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_pay_codes_card_id"), ["card_id"], unique=False)

    op.create_table(
        "sales",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("store_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column(
            "device_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column(
            "cashier_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column(
            "customer_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
        ),
        sa.Column("card_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("identified_by", sa.String(length=12), nullable=True),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("total_minor", sa.BigInteger(), nullable=False),
        sa.Column("stars_earned", sa.BigInteger(), nullable=False),
        sa.Column(
            "ledger_transaction_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            nullable=False,
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("total_minor >= 0", name=op.f("ck_sales_total")),
        sa.ForeignKeyConstraint(["card_id"], ["cards.id"], name=op.f("fk_sales_card_id_cards")),
        sa.ForeignKeyConstraint(
            ["cashier_id"], ["staff.id"], name=op.f("fk_sales_cashier_id_staff")
        ),
        sa.ForeignKeyConstraint(
            ["customer_id"], ["customers.id"], name=op.f("fk_sales_customer_id_customers")
        ),
        sa.ForeignKeyConstraint(
            ["device_id"], ["devices.id"], name=op.f("fk_sales_device_id_devices")
        ),
        sa.ForeignKeyConstraint(
            ["ledger_transaction_id"],
            ["ledger_transactions.id"],
            name=op.f("fk_sales_ledger_transaction_id_ledger_transactions"),
        ),
        sa.ForeignKeyConstraint(["store_id"], ["stores.id"], name=op.f("fk_sales_store_id_stores")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sales")),
    )
    with op.batch_alter_table("sales", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_sales_card_id"), ["card_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_sales_customer_id"), ["customer_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_sales_store_id"), ["store_id"], unique=False)

    op.create_table(
        "refunds",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("sale_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column(
            "device_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column(
            "cashier_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("stars_taken_back", sa.BigInteger(), nullable=False),
        sa.Column("stars_owed", sa.BigInteger(), nullable=False),
        sa.Column(
            "lines",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "tenders",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "ledger_transaction_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            nullable=False,
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["cashier_id"], ["staff.id"], name=op.f("fk_refunds_cashier_id_staff")
        ),
        sa.ForeignKeyConstraint(
            ["device_id"], ["devices.id"], name=op.f("fk_refunds_device_id_devices")
        ),
        sa.ForeignKeyConstraint(
            ["ledger_transaction_id"],
            ["ledger_transactions.id"],
            name=op.f("fk_refunds_ledger_transaction_id_ledger_transactions"),
        ),
        sa.ForeignKeyConstraint(["sale_id"], ["sales.id"], name=op.f("fk_refunds_sale_id_sales")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_refunds")),
    )
    with op.batch_alter_table("refunds", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_refunds_sale_id"), ["sale_id"], unique=False)

    op.create_table(
        "sale_lines",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("sale_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("line_no", sa.Integer(), nullable=False),
        sa.Column(
            "product_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("sku", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("unit_price_minor", sa.BigInteger(), nullable=False),
        sa.Column("line_total_minor", sa.BigInteger(), nullable=False),
        sa.Column("stars_earned", sa.BigInteger(), nullable=False),
        sa.Column("refunded_quantity", sa.Integer(), nullable=False),
        sa.CheckConstraint("quantity > 0", name=op.f("ck_sale_lines_quantity")),
        sa.CheckConstraint(
            "refunded_quantity BETWEEN 0 AND quantity", name=op.f("ck_sale_lines_refunded")
        ),
        sa.ForeignKeyConstraint(
            ["product_id"], ["products.id"], name=op.f("fk_sale_lines_product_id_products")
        ),
        sa.ForeignKeyConstraint(
            ["sale_id"], ["sales.id"], name=op.f("fk_sale_lines_sale_id_sales")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sale_lines")),
        sa.UniqueConstraint("sale_id", "line_no", name=op.f("uq_sale_lines_sale_id_line_no")),
    )
    op.create_table(
        "sale_tenders",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("sale_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("type", sa.String(length=12), nullable=False),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("refunded_minor", sa.BigInteger(), nullable=False),
        sa.CheckConstraint(
            "type IN ('card_balance','cash','bank_card')", name=op.f("ck_sale_tenders_type")
        ),
        sa.CheckConstraint("amount_minor > 0", name=op.f("ck_sale_tenders_amount")),
        sa.CheckConstraint(
            "refunded_minor BETWEEN 0 AND amount_minor", name=op.f("ck_sale_tenders_refunded")
        ),
        sa.ForeignKeyConstraint(
            ["sale_id"], ["sales.id"], name=op.f("fk_sale_tenders_sale_id_sales")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sale_tenders")),
    )
    with op.batch_alter_table("sale_tenders", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_sale_tenders_sale_id"), ["sale_id"], unique=False)

    op.create_table(
        "top_ups",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("card_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("source", sa.String(length=10), nullable=False),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("channel", sa.String(length=10), nullable=False),
        sa.Column("reference", sa.String(length=64), nullable=False),
        sa.Column("payment_token", sa.String(length=100), nullable=True),
        sa.Column("processor_ref", sa.String(length=100), nullable=True),
        sa.Column("decline_code", sa.String(length=60), nullable=True),
        sa.Column("principal", sa.String(length=80), nullable=True),
        sa.Column("idempotency_key", sa.String(length=200), nullable=True),
        sa.Column(
            "trigger_sale_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
        ),
        sa.Column("store_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("device_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column(
            "ledger_transaction_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            nullable=True,
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("settled_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "source IN ('gateway','cash','bank_card')", name=op.f("ck_top_ups_source")
        ),
        sa.CheckConstraint(
            "status IN ('pending','succeeded','declined')", name=op.f("ck_top_ups_status")
        ),
        sa.CheckConstraint("amount_minor > 0", name=op.f("ck_top_ups_amount")),
        sa.ForeignKeyConstraint(["card_id"], ["cards.id"], name=op.f("fk_top_ups_card_id_cards")),
        sa.ForeignKeyConstraint(
            ["device_id"], ["devices.id"], name=op.f("fk_top_ups_device_id_devices")
        ),
        sa.ForeignKeyConstraint(
            ["ledger_transaction_id"],
            ["ledger_transactions.id"],
            name=op.f("fk_top_ups_ledger_transaction_id_ledger_transactions"),
        ),
        sa.ForeignKeyConstraint(
            ["store_id"], ["stores.id"], name=op.f("fk_top_ups_store_id_stores")
        ),
        sa.ForeignKeyConstraint(
            ["trigger_sale_id"], ["sales.id"], name=op.f("fk_top_ups_trigger_sale_id_sales")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_top_ups")),
        sa.UniqueConstraint(
            "principal", "idempotency_key", name=op.f("uq_top_ups_principal_idempotency_key")
        ),
        sa.UniqueConstraint("reference", name=op.f("uq_top_ups_reference")),
        sa.UniqueConstraint("trigger_sale_id", name=op.f("uq_top_ups_trigger_sale_id")),
    )
    with op.batch_alter_table("top_ups", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_top_ups_card_id"), ["card_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("top_ups", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_top_ups_card_id"))

    op.drop_table("top_ups")
    with op.batch_alter_table("sale_tenders", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_sale_tenders_sale_id"))

    op.drop_table("sale_tenders")
    op.drop_table("sale_lines")
    with op.batch_alter_table("refunds", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_refunds_sale_id"))

    op.drop_table("refunds")
    with op.batch_alter_table("sales", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_sales_store_id"))
        batch_op.drop_index(batch_op.f("ix_sales_customer_id"))
        batch_op.drop_index(batch_op.f("ix_sales_card_id"))

    op.drop_table("sales")
    with op.batch_alter_table("pay_codes", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_pay_codes_card_id"))

    op.drop_table("pay_codes")
    op.drop_table("auto_reloads")
    with op.batch_alter_table("cards", schema=None) as batch_op:
        batch_op.drop_index(
            "uq_cards_one_primary",
            postgresql_where=sa.text("is_primary"),
            sqlite_where=sa.text("is_primary"),
        )
        batch_op.drop_index(batch_op.f("ix_cards_customer_id"))

    op.drop_table("cards")
    op.drop_table("card_batches")
    with op.batch_alter_table("auth_tokens", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_auth_tokens_staff_id"))
        batch_op.drop_index(batch_op.f("ix_auth_tokens_device_id"))
        batch_op.drop_index(batch_op.f("ix_auth_tokens_customer_id"))

    op.drop_table("auth_tokens")
    op.drop_table("staff")
    with op.batch_alter_table("devices", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_devices_store_id"))

    op.drop_table("devices")
    op.drop_table("stores")
    with op.batch_alter_table("product_tags", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_product_tags_product_id"))

    op.drop_table("product_tags")
    op.drop_table("customers")
    with op.batch_alter_table("products", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_products_category"))

    op.drop_table("products")
    with op.batch_alter_table("failed_attempts", schema=None) as batch_op:
        batch_op.drop_index("ix_failed_attempts_scope_subject_at")

    op.drop_table("failed_attempts")

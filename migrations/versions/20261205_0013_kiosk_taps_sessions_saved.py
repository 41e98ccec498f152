"""NFC product kiosks: taps, kiosk sessions, saved products, and the kiosk screen's login.

``kiosk_taps`` (every tag tapped, unique per kiosk by the kiosk's own ``tap_ref``),
``kiosk_sessions`` (taps close together at one kiosk, joined to a shopper by a card tap),
``saved_products`` (a shopper's "save for later"), ``kiosk_pairing_codes`` (one-use codes
that pair a screen to its kiosk) and the auth token kind ``kiosk_screen``.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-05
"""

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
UtcDateTime = sa.DateTime(timezone=True)

OWNERS = (
    "(kind = 'customer' AND customer_id IS NOT NULL) OR "
    "(kind = 'staff' AND staff_id IS NOT NULL) OR "
    "(kind = 'cashier' AND staff_id IS NOT NULL AND device_id IS NOT NULL)"
)
SCREEN_OWNER = " OR (kind = 'kiosk_screen' AND device_id IS NOT NULL)"


def _fk(table: str, column: str, referred: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        [column], [f"{referred}.id"], name=op.f(f"fk_{table}_{column}_{referred}")
    )


def _token_kinds(kinds: str, owners: str) -> None:
    with op.batch_alter_table("auth_tokens") as batch:
        batch.drop_constraint(op.f("ck_auth_tokens_kind"), type_="check")
        batch.drop_constraint(op.f("ck_auth_tokens_owner"), type_="check")
        batch.create_check_constraint("kind", f"kind IN ({kinds})")
        batch.create_check_constraint("owner", owners)


def upgrade() -> None:
    op.create_table(
        "kiosk_sessions",
        sa.Column("id", ID, nullable=False),
        sa.Column("device_id", ID, nullable=False),
        sa.Column("store_id", ID, nullable=False),
        sa.Column("customer_id", ID, nullable=True),
        sa.Column("started_at", UtcDateTime, nullable=False),
        sa.Column("last_tap_at", UtcDateTime, nullable=False),
        sa.Column("ended_at", UtcDateTime, nullable=True),
        _fk("kiosk_sessions", "device_id", "devices"),
        _fk("kiosk_sessions", "store_id", "stores"),
        _fk("kiosk_sessions", "customer_id", "customers"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_kiosk_sessions")),
    )
    with op.batch_alter_table("kiosk_sessions") as batch:
        batch.create_index(
            batch.f("ix_kiosk_sessions_device_id"), ["device_id", "last_tap_at"], unique=False
        )
        batch.create_index(batch.f("ix_kiosk_sessions_customer_id"), ["customer_id"])

    op.create_table(
        "kiosk_taps",
        sa.Column("id", ID, nullable=False),
        sa.Column("device_id", ID, nullable=False),
        sa.Column("store_id", ID, nullable=False),
        sa.Column("tap_ref", sa.String(length=64), nullable=False),
        sa.Column("tapped_at", UtcDateTime, nullable=False),
        sa.Column("received_at", UtcDateTime, nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("product_id", ID, nullable=True),
        sa.Column("category", sa.String(length=80), nullable=True),
        sa.Column("customer_id", ID, nullable=True),
        sa.Column("kiosk_session_id", ID, nullable=False),
        sa.Column("detail", sa.String(length=200), nullable=False),
        sa.CheckConstraint(
            "kind IN ('product','sign','card','unknown','refused')",
            name=op.f("ck_kiosk_taps_kind"),
        ),
        _fk("kiosk_taps", "device_id", "devices"),
        _fk("kiosk_taps", "store_id", "stores"),
        _fk("kiosk_taps", "product_id", "products"),
        _fk("kiosk_taps", "customer_id", "customers"),
        _fk("kiosk_taps", "kiosk_session_id", "kiosk_sessions"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_kiosk_taps")),
        sa.UniqueConstraint("device_id", "tap_ref", name=op.f("uq_kiosk_taps_device_id_tap_ref")),
    )
    with op.batch_alter_table("kiosk_taps") as batch:
        batch.create_index(batch.f("ix_kiosk_taps_store_id"), ["store_id", "tapped_at"])
        batch.create_index(batch.f("ix_kiosk_taps_customer_id"), ["customer_id", "tapped_at"])
        batch.create_index(batch.f("ix_kiosk_taps_product_id"), ["product_id"])
        batch.create_index(batch.f("ix_kiosk_taps_kiosk_session_id"), ["kiosk_session_id"])

    op.create_table(
        "saved_products",
        sa.Column("id", ID, nullable=False),
        sa.Column("customer_id", ID, nullable=False),
        sa.Column("product_id", ID, nullable=False),
        sa.Column("saved_at", UtcDateTime, nullable=False),
        sa.Column("store_id", ID, nullable=False),
        sa.Column("device_id", ID, nullable=False),
        _fk("saved_products", "customer_id", "customers"),
        _fk("saved_products", "product_id", "products"),
        _fk("saved_products", "store_id", "stores"),
        _fk("saved_products", "device_id", "devices"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_saved_products")),
        sa.UniqueConstraint(
            "customer_id", "product_id", name=op.f("uq_saved_products_customer_id_product_id")
        ),
    )

    op.create_table(
        "kiosk_pairing_codes",
        sa.Column("id", ID, nullable=False),
        sa.Column("code_hash", sa.String(length=64), nullable=False),
        sa.Column("device_id", ID, nullable=False),
        sa.Column("created_at", UtcDateTime, nullable=False),
        sa.Column("expires_at", UtcDateTime, nullable=False),
        sa.Column("used_at", UtcDateTime, nullable=True),
        _fk("kiosk_pairing_codes", "device_id", "devices"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_kiosk_pairing_codes")),
        sa.UniqueConstraint("code_hash", name=op.f("uq_kiosk_pairing_codes_code_hash")),
    )
    with op.batch_alter_table("kiosk_pairing_codes") as batch:
        batch.create_index(batch.f("ix_kiosk_pairing_codes_device_id"), ["device_id"])

    _token_kinds("'customer','staff','cashier','kiosk_screen'", OWNERS + SCREEN_OWNER)


def downgrade() -> None:
    op.execute("DELETE FROM auth_tokens WHERE kind = 'kiosk_screen'")
    _token_kinds("'customer','staff','cashier'", OWNERS)
    with op.batch_alter_table("kiosk_pairing_codes") as batch:
        batch.drop_index(batch.f("ix_kiosk_pairing_codes_device_id"))
    op.drop_table("kiosk_pairing_codes")
    op.drop_table("saved_products")
    with op.batch_alter_table("kiosk_taps") as batch:
        for name in ("store_id", "customer_id", "product_id", "kiosk_session_id"):
            batch.drop_index(batch.f(f"ix_kiosk_taps_{name}"))
    op.drop_table("kiosk_taps")
    with op.batch_alter_table("kiosk_sessions") as batch:
        batch.drop_index(batch.f("ix_kiosk_sessions_device_id"))
        batch.drop_index(batch.f("ix_kiosk_sessions_customer_id"))
    op.drop_table("kiosk_sessions")

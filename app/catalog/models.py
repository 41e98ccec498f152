from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, CheckConstraint, ForeignKey, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import Base
from app.core.types import BigId, Json, UtcDateTime, utcnow


class Product(Base):
    """One thing the retailer sells, in every channel at one list price."""

    __tablename__ = "products"
    __table_args__ = (
        CheckConstraint("price_minor >= 0", "price"),
        CheckConstraint("length(currency) = 3", "currency"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    sku: Mapped[str] = mapped_column(String(40), unique=True)
    #: EAN-13 / UPC-A as scanned at the till.
    barcode: Mapped[str | None] = mapped_column(String(32), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    category: Mapped[str] = mapped_column(String(80), index=True)
    price_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    #: URL or path of the product's picture.
    image_url: Mapped[str] = mapped_column(String(500), default="")
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow, onupdate=utcnow)
    extra: Mapped[dict] = mapped_column(Json, default=dict)


class ProductTag(Base):
    """An NFC tag on a shelf edge, a sign or a product, naming one product for the kiosks."""

    __tablename__ = "product_tags"
    __table_args__ = (UniqueConstraint("tag_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    #: The tag's UID, upper-case hex.
    tag_id: Mapped[str] = mapped_column(String(32))
    product_id: Mapped[int] = mapped_column(ForeignKey("products.id"), index=True)


class StoreProduct(Base):
    """A store carries a product: the kiosks and the product page say whether it is in stock
    there. A store with no row does not sell the product."""

    __tablename__ = "store_products"
    __table_args__ = (UniqueConstraint("product_id", "store_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    #: Indexed by the unique constraint, which leads with it.
    product_id: Mapped[int] = mapped_column(ForeignKey("products.id"))
    store_id: Mapped[int] = mapped_column(ForeignKey("stores.id"), index=True)
    in_stock: Mapped[bool] = mapped_column(default=True)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow, onupdate=utcnow)

"""The catalog: one list of products and prices for every channel."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.cards.errors import InvalidNfcUid
from app.cards.numbers import normalise_nfc_uid
from app.cards.services import check_currency
from app.catalog.models import Product, ProductTag
from app.core.errors import Conflict, NotFound


class ProductNotFound(NotFound):
    code = "product_not_found"
    message = "No such product."


class UnknownSku(NotFound):
    code = "unknown_sku"
    http_status = 422
    message = "No product has that SKU."


class ProductExists(Conflict):
    code = "product_exists"
    message = "Another product has that SKU, barcode or NFC tag."


EDITABLE = ("name", "description", "category", "price_minor", "image_url", "barcode", "active")


def create_product(s: Session, *, sku: str, currency: str, nfc_tag_ids=(), **fields) -> Product:
    """Raises CurrencyMismatch, ProductExists, InvalidNfcUid."""
    check_currency(currency)
    product = Product(sku=sku, currency=currency, **fields)
    try:
        with s.begin_nested():
            s.add(product)
            s.flush()
            set_tags(s, product, nfc_tag_ids)
    except IntegrityError:
        raise ProductExists(sku=sku) from None
    return product


def update_product(s: Session, product: Product, *, nfc_tag_ids=None, **fields) -> Product:
    """Raises ProductExists, InvalidNfcUid."""
    try:
        with s.begin_nested():
            for name, value in fields.items():
                if name in EDITABLE:
                    setattr(product, name, value)
            s.flush()
            if nfc_tag_ids is not None:
                set_tags(s, product, nfc_tag_ids)
    except IntegrityError:
        raise ProductExists(sku=product.sku) from None
    return product


def set_tags(s: Session, product: Product, tag_ids) -> None:
    normalised = []
    for tag in tag_ids:
        uid = normalise_nfc_uid(tag)
        if uid is None:
            raise InvalidNfcUid(tag=tag)
        normalised.append(uid)
    for existing in s.scalars(select(ProductTag).where(ProductTag.product_id == product.id)):
        s.delete(existing)
    s.flush()
    for uid in dict.fromkeys(normalised):
        s.add(ProductTag(tag_id=uid, product_id=product.id))
    s.flush()


def tags_of(s: Session, product_ids: list[int]) -> dict[int, list[str]]:
    tags: dict[int, list[str]] = {pid: [] for pid in product_ids}
    rows = s.execute(
        select(ProductTag.product_id, ProductTag.tag_id)
        .where(ProductTag.product_id.in_(product_ids))
        .order_by(ProductTag.id)
    )
    for product_id, tag_id in rows:
        tags[product_id].append(tag_id)
    return tags


def load_product(s: Session, product_id: int) -> Product:
    product = s.get(Product, product_id)
    if product is None:
        raise ProductNotFound()
    return product


def products_by_sku(s: Session, skus: list[str]) -> dict[str, Product]:
    """The active products with these SKUs. Raises UnknownSku naming the first missing."""
    found = {
        p.sku: p for p in s.scalars(select(Product).where(Product.sku.in_(skus), Product.active))
    }
    for sku in skus:
        if sku not in found:
            raise UnknownSku(sku=sku)
    return found

"""The catalog: one list of products and prices for every channel."""

from __future__ import annotations

from sqlalchemy import bindparam, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.cards.errors import InvalidNfcUid
from app.cards.numbers import normalise_nfc_uid
from app.cards.services import check_currency
from app.catalog.models import Product, ProductTag, StoreProduct
from app.catalog.pricing import ListPrice
from app.core.errors import Conflict, NotFound
from app.stores.models import Store
from app.stores.services import StoreNotFound


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


def active_products(
    s: Session, *, limit: int, below: int | None = None, category: str | None = None
) -> list[Product]:
    """The products on sale, newest first: up to ``limit + 1`` (one more than asked, so the
    caller knows whether a next page exists), each with an id below ``below``, and of
    ``category`` when one is given."""
    query = select(Product).where(Product.active).order_by(Product.id.desc())
    if below is not None:
        query = query.where(Product.id < below)
    if category:
        query = query.where(Product.category == category)
    return list(s.scalars(query.limit(limit + 1)))


_PRICES_BY_SKU = select(
    Product.id, Product.sku, Product.name, Product.price_minor, Product.currency
).where(Product.sku.in_(bindparam("skus", expanding=True)), Product.active)


def list_prices(s: Session, skus: list[str]) -> dict[str, ListPrice]:
    """The list prices of the active products with these SKUs, by SKU (a sale's pricing needs
    these columns only: no product is loaded). Raises UnknownSku naming the first missing."""
    found = {row.sku: ListPrice(*row) for row in s.execute(_PRICES_BY_SKU, {"skus": skus})}
    for sku in skus:
        if sku not in found:
            raise UnknownSku(sku=sku)
    return found


def active_product_by_sku(s: Session, sku: str) -> Product:
    """The product on sale with exactly this SKU (SKUs are unique as written, so the case
    counts). Raises ProductNotFound for an unknown SKU or a product taken off sale."""
    product = s.scalar(select(Product).where(Product.sku == sku, Product.active))
    if product is None:
        raise ProductNotFound(sku=sku)
    return product


def stores_selling(s: Session, product_id: int) -> list[tuple[Store, bool]]:
    """The stores that carry the product, by name, each with whether it is in stock there."""
    rows = s.execute(
        select(Store, StoreProduct.in_stock)
        .join(StoreProduct, StoreProduct.store_id == Store.id)
        .where(StoreProduct.product_id == product_id)
        .order_by(Store.name, Store.id)
    )
    return [(store, in_stock) for store, in_stock in rows]


def in_stock_at(s: Session, product_id: int, store_id: int) -> bool | None:
    """Whether the store has the product in stock; None when the store does not carry it."""
    return s.scalar(
        select(StoreProduct.in_stock).where(
            StoreProduct.product_id == product_id, StoreProduct.store_id == store_id
        )
    )


def _lock(s: Session, product: Product) -> None:
    # Changes to one product's stores take turns: two at once would both insert a store's row.
    s.execute(select(Product.id).where(Product.id == product.id).with_for_update())


def _check_stores(s: Session, store_ids) -> None:
    wanted = set(store_ids)
    known = set(s.scalars(select(Store.id).where(Store.id.in_(wanted)))) if wanted else set()
    for store_id in sorted(wanted - known):
        raise StoreNotFound(store_id=store_id)


def set_stores(s: Session, product: Product, stock: dict[int, bool]) -> None:
    """Make ``stock`` ({store id: in stock}) the whole list of stores that carry the product:
    stores not in it stop carrying it. Raises StoreNotFound (nothing changes then)."""
    _check_stores(s, stock)
    _lock(s, product)
    existing = {
        row.store_id: row
        for row in s.scalars(select(StoreProduct).where(StoreProduct.product_id == product.id))
    }
    for store_id, row in existing.items():
        if store_id not in stock:
            s.delete(row)
    for store_id, in_stock in stock.items():
        row = existing.get(store_id)
        if row is None:
            s.add(StoreProduct(product_id=product.id, store_id=store_id, in_stock=in_stock))
        elif row.in_stock != in_stock:
            row.in_stock = in_stock
    s.flush()


def set_in_stock(s: Session, product: Product, store_id: int, in_stock: bool) -> None:
    """One store carries the product, in stock or not; the other stores stay as they are.
    Raises StoreNotFound."""
    _check_stores(s, [store_id])
    _lock(s, product)
    row = s.scalar(
        select(StoreProduct).where(
            StoreProduct.product_id == product.id, StoreProduct.store_id == store_id
        )
    )
    if row is None:
        s.add(StoreProduct(product_id=product.id, store_id=store_id, in_stock=in_stock))
    else:
        row.in_stock = in_stock
    s.flush()


def stop_selling(s: Session, product: Product, store_id: int) -> None:
    """The store no longer carries the product (nothing to do if it did not)."""
    _lock(s, product)
    row = s.scalar(
        select(StoreProduct).where(
            StoreProduct.product_id == product.id, StoreProduct.store_id == store_id
        )
    )
    if row is not None:
        s.delete(row)
        s.flush()

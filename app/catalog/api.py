"""The catalog: read by every channel, managed by admins."""

from __future__ import annotations

import marshmallow as ma
from flask.views import MethodView

from app.cards.errors import CurrencyMismatch, InvalidNfcUid
from app.cards.services import check_currency
from app.catalog import services as catalog
from app.catalog.models import Product
from app.catalog.services import ProductExists, ProductNotFound
from app.core.api import Blueprint
from app.core.db import session
from app.core.schemas import (
    Id,
    List,
    MoneyOutSchema,
    MoneySchema,
    PageArgsSchema,
    Schema,
    Text,
    decode_cursor,
)
from app.stores.api import StoreSchema
from app.stores.services import StoreNotFound

blp = Blueprint("catalog", __name__, url_prefix="/v1", description="Products and prices.")


#: Tags one product may carry, and the longest a tag's UID may be written (with separators).
MAX_NFC_TAGS = 20
NFC_TAG_LENGTH = ma.validate.Length(max=64)


class ProductSchema(Schema):
    id = ma.fields.Integer(dump_only=True)
    sku = Text(required=True, validate=ma.validate.Regexp(r"^[A-Za-z0-9._-]{1,40}$"))
    barcode = Text(load_default=None, allow_none=True, validate=ma.validate.Regexp(r"^\d{8,14}$"))
    name = Text(required=True, validate=ma.validate.Length(min=1, max=200))
    description = Text(load_default="", validate=ma.validate.Length(max=4000))
    category = Text(required=True, validate=ma.validate.Length(min=1, max=80))
    price = ma.fields.Nested(MoneySchema, required=True)
    image_url = Text(load_default="", validate=ma.validate.Length(max=500))
    nfc_tag_ids = List(Text(validate=NFC_TAG_LENGTH), max_items=MAX_NFC_TAGS, load_default=list)
    active = ma.fields.Boolean(load_default=True)


class ProductOutSchema(ProductSchema):
    price = ma.fields.Nested(MoneyOutSchema)


class ProductPatchSchema(Schema):
    """Only the fields sent change."""

    barcode = Text(allow_none=True, validate=ma.validate.Regexp(r"^\d{8,14}$"))
    name = Text(validate=ma.validate.Length(min=1, max=200))
    description = Text(validate=ma.validate.Length(max=4000))
    category = Text(validate=ma.validate.Length(min=1, max=80))
    price = ma.fields.Nested(MoneySchema)
    image_url = Text(validate=ma.validate.Length(max=500))
    nfc_tag_ids = List(Text(validate=NFC_TAG_LENGTH), max_items=MAX_NFC_TAGS)
    active = ma.fields.Boolean()


class ProductPageSchema(Schema):
    items = ma.fields.List(ma.fields.Nested(ProductOutSchema))
    next_cursor = ma.fields.String(allow_none=True)


class ProductQuerySchema(PageArgsSchema):
    category = Text(load_default=None, validate=ma.validate.Length(max=80))


def product_body(product: Product, tags: list[str]) -> dict:
    return {
        "id": product.id,
        "sku": product.sku,
        "barcode": product.barcode,
        "name": product.name,
        "description": product.description,
        "category": product.category,
        "price": {"amount": product.price_minor, "currency": product.currency},
        "image_url": product.image_url,
        "nfc_tag_ids": tags,
        "active": product.active,
    }


def _fields(data: dict) -> dict:
    fields = dict(data)
    if "price" in fields:
        price = fields.pop("price")
        fields["price_minor"] = price["amount"]
        fields["currency"] = price["currency"]
    return fields


@blp.route("/products")
class Products(MethodView):
    @blp.arguments(ProductQuerySchema, location="query")
    @blp.response(200, ProductPageSchema)
    def get(self, args):
        """The active catalog, newest first, a page at a time. Anyone."""
        rows = catalog.active_products(
            session(),
            limit=args["limit"],
            below=decode_cursor(args["cursor"]),
            category=args["category"],
        )
        page = rows[: args["limit"]]
        tags = catalog.tags_of(session(), [p.id for p in page])
        more = len(rows) > args["limit"]
        return {
            "items": [product_body(p, tags[p.id]) for p in page],
            "next_cursor": str(page[-1].id) if more else None,
        }

    @blp.requires("staff", role="admin")
    @blp.arguments(ProductSchema)
    @blp.response(201, ProductOutSchema)
    @blp.errors(ProductExists, CurrencyMismatch, InvalidNfcUid)
    def post(self, data):
        """Add a product."""
        fields = _fields(data)
        product = catalog.create_product(session(), **fields)
        return product_body(product, catalog.tags_of(session(), [product.id])[product.id])


@blp.route("/products/<id:product_id>")
class ProductView(MethodView):
    @blp.response(200, ProductOutSchema)
    @blp.errors(ProductNotFound)
    def get(self, product_id):
        """One product. Anyone."""
        product = catalog.load_product(session(), product_id)
        return product_body(product, catalog.tags_of(session(), [product.id])[product.id])

    @blp.requires("staff", role="admin")
    @blp.arguments(ProductPatchSchema)
    @blp.response(200, ProductOutSchema)
    @blp.errors(ProductNotFound, ProductExists, CurrencyMismatch, InvalidNfcUid)
    def patch(self, data, product_id):
        """Change a product: its price, name, tags, or take it off sale (`active`)."""
        product = catalog.load_product(session(), product_id)
        fields = _fields(data)
        if "currency" in fields:
            check_currency(fields.pop("currency"))
        catalog.update_product(session(), product, **fields)
        return product_body(product, catalog.tags_of(session(), [product.id])[product.id])


#: More stores than a product could be sold in: a bound on the body, not a business rule.
MAX_STORES = 1000


class JsonBoolean(ma.fields.Boolean):
    """true or false, as JSON writes them (not "yes", 1 or "on")."""

    def _deserialize(self, value, attr, data, **kwargs):
        if not isinstance(value, bool):
            raise self.make_error("invalid", input=value)
        return value


class StoreStockSchema(Schema):
    store_id = Id(required=True)
    in_stock = JsonBoolean(required=True)


class StoreStockListSchema(Schema):
    items = List(ma.fields.Nested(StoreStockSchema), max_items=MAX_STORES, required=True)

    @ma.validates_schema
    def each_store_once(self, data, **kwargs):
        ids = [item["store_id"] for item in data.get("items", [])]
        if len(ids) != len(set(ids)):
            raise ma.ValidationError("Each store may be listed once.", "items")


class InStockSchema(Schema):
    in_stock = JsonBoolean(required=True)


class ProductStoreSchema(Schema):
    store = ma.fields.Nested(StoreSchema)
    in_stock = ma.fields.Boolean()


class ProductStoreListSchema(Schema):
    items = ma.fields.List(ma.fields.Nested(ProductStoreSchema))


def stores_body(product: Product) -> dict:
    return {
        "items": [
            {"store": store, "in_stock": in_stock}
            for store, in_stock in catalog.stores_selling(session(), product.id)
        ]
    }


@blp.route("/products/<id:product_id>/stores")
class ProductStores(MethodView):
    @blp.response(200, ProductStoreListSchema)
    @blp.errors(ProductNotFound)
    def get(self, product_id):
        """The stores that sell a product, by name, and whether it is in stock at each.
        Anyone."""
        return stores_body(catalog.load_product(session(), product_id))

    @blp.requires("staff", role="admin")
    @blp.arguments(StoreStockListSchema)
    @blp.response(200, ProductStoreListSchema)
    @blp.errors(ProductNotFound, StoreNotFound)
    def put(self, data, product_id):
        """Say which stores sell a product, and whether each has it in stock: the whole list
        (a store left out stops selling it; `[]`: sold nowhere)."""
        product = catalog.load_product(session(), product_id)
        stock = {item["store_id"]: item["in_stock"] for item in data["items"]}
        catalog.set_stores(session(), product, stock)
        return stores_body(product)


@blp.route("/products/<id:product_id>/stores/<id:store_id>")
class ProductStore(MethodView):
    @blp.requires("staff", role="admin")
    @blp.arguments(InStockSchema)
    @blp.response(200, ProductStoreListSchema)
    @blp.errors(ProductNotFound, StoreNotFound)
    def put(self, data, product_id, store_id):
        """One store sells the product, in stock or not (run out, restocked); the other
        stores stay as they were. Answers the whole list."""
        product = catalog.load_product(session(), product_id)
        catalog.set_in_stock(session(), product, store_id, data["in_stock"])
        return stores_body(product)

    @blp.requires("staff", role="admin")
    @blp.response(200, ProductStoreListSchema)
    @blp.errors(ProductNotFound)
    def delete(self, product_id, store_id):
        """One store stops selling the product. Answers the whole list."""
        product = catalog.load_product(session(), product_id)
        catalog.stop_selling(session(), product, store_id)
        return stores_body(product)

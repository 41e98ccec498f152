"""The catalog: read by every channel, managed by admins."""

from __future__ import annotations

import marshmallow as ma
from flask.views import MethodView
from sqlalchemy import select

from app.cards.errors import CurrencyMismatch, InvalidNfcUid
from app.cards.services import check_currency
from app.catalog import services as catalog
from app.catalog.models import Product
from app.catalog.services import ProductExists, ProductNotFound
from app.core.api import Blueprint
from app.core.db import session
from app.core.schemas import (
    List,
    MoneyOutSchema,
    MoneySchema,
    PageArgsSchema,
    Schema,
    Text,
    decode_cursor,
)

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
        query = select(Product).where(Product.active).order_by(Product.id.desc())
        below = decode_cursor(args["cursor"])
        if below is not None:
            query = query.where(Product.id < below)
        if args["category"]:
            query = query.where(Product.category == args["category"])
        rows = list(session().scalars(query.limit(args["limit"] + 1)))
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

"""The kiosk API's shapes: a tap in, the screen's payload out, saved products, the timeline."""

from __future__ import annotations

import marshmallow as ma

from app.cards.schemas import StoreRefSchema
from app.core.schemas import Id, List, MoneyOutSchema, Schema, Text

#: The most URI or Text records one tag's NDEF message is read for.
MAX_RECORDS = 8


class TapArgsSchema(Schema):
    tap_ref = Text(
        required=True,
        validate=ma.validate.Regexp(r"^[!-~]{1,64}$", error="1-64 visible ASCII characters."),
        metadata={"description": "The kiosk's own id for the tap (a UUID): a replay with the "
                  "same `tap_ref` records nothing more and answers the same tap."},
    )  # fmt: skip
    tapped_at = ma.fields.AwareDateTime(
        required=True,
        metadata={"description": "When the tag was tapped, by the kiosk's clock (one ahead "
                  "of the server's is taken as now)."},
    )  # fmt: skip
    uid = Text(
        load_default=None,
        allow_none=True,
        validate=ma.validate.Length(max=64),
        metadata={"description": "The tag's UID in hex, if the reader gave one."},
    )
    uris = List(
        Text(validate=ma.validate.Length(max=2048)),
        max_items=MAX_RECORDS,
        load_default=list,
        metadata={"description": "The tag's NDEF URI records, in order."},
    )
    texts = List(
        Text(validate=ma.validate.Length(max=512)),
        max_items=MAX_RECORDS,
        load_default=list,
        metadata={"description": "The tag's NDEF Text records, in order."},
    )
    unreadable = ma.fields.Boolean(
        load_default=False,
        metadata={"description": "The tag's NDEF message could not be parsed (garbled)."},
    )


class ProductSummarySchema(Schema):
    id = ma.fields.Integer()
    sku = ma.fields.String()
    name = ma.fields.String()
    image_url = ma.fields.String()
    category = ma.fields.String()
    price = ma.fields.Nested(
        MoneyOutSchema, metadata={"description": "For the shopper, from the pricing function."}
    )
    list_price = ma.fields.Nested(MoneyOutSchema)
    in_stock = ma.fields.Boolean(metadata={"description": "In stock at this store."})


class VariantSchema(Schema):
    sku = ma.fields.String()
    name = ma.fields.String()
    price = ma.fields.Nested(MoneyOutSchema)
    in_stock = ma.fields.Boolean()


class ProductViewSchema(ProductSummarySchema):
    description = ma.fields.String()
    sold_here = ma.fields.Boolean(metadata={"description": "This store sells it."})
    variants = ma.fields.List(
        ma.fields.Nested(VariantSchema),
        metadata={"description": "Its sizes or variants, the product among them; empty when "
                  "it has none."},
    )  # fmt: skip


class CategoryViewSchema(Schema):
    name = ma.fields.String()
    products = ma.fields.List(ma.fields.Nested(ProductSummarySchema))


class ReasonSchema(Schema):
    kind = ma.fields.String(
        metadata={"description": "`bought_with`, `tapped_with`, `your_history`, `hidden_gem`."}
    )
    product_name = ma.fields.String(allow_none=True)


class SuggestionSchema(Schema):
    product = ma.fields.Nested(ProductSummarySchema)
    reason = ma.fields.Nested(ReasonSchema)


class ShopperSchema(Schema):
    first_name = ma.fields.String()
    stars = ma.fields.Integer()


class MessageSchema(Schema):
    code = ma.fields.String(
        metadata={"description": "`unknown_tag`, `not_sold_here`, `card_frozen`, "
                  "`card_not_registered`, `unreadable_tag`."}
    )  # fmt: skip


class ScreenSchema(Schema):
    view = ma.fields.String(
        metadata={"description": "`product`, `category`, `shopper`, `unknown`, `refused`."}
    )
    session_id = ma.fields.Integer()
    tap_id = ma.fields.Integer()
    shopper = ma.fields.Nested(
        ShopperSchema,
        allow_none=True,
        metadata={"description": "The session's shopper: a first name and Stars only."},
    )
    product = ma.fields.Nested(ProductViewSchema, allow_none=True)
    category = ma.fields.Nested(CategoryViewSchema, allow_none=True)
    suggestions = ma.fields.List(ma.fields.Nested(SuggestionSchema))
    message = ma.fields.Nested(MessageSchema, allow_none=True)


class TapSchema(Schema):
    id = ma.fields.Integer()
    kind = ma.fields.String(
        metadata={"description": "`product`, `sign`, `card`, `unknown`, `refused`."}
    )
    session_id = ma.fields.Integer(attribute="kiosk_session_id")
    tap_ref = ma.fields.String()
    tapped_at = ma.fields.DateTime()
    product_id = ma.fields.Integer(allow_none=True)
    category = ma.fields.String(allow_none=True)
    detail = ma.fields.String()


class TapAnswerSchema(Schema):
    tap = ma.fields.Nested(TapSchema)
    screen = ma.fields.Nested(
        ScreenSchema, metadata={"description": "What the screen shows (the `kiosk.screen` event)."}
    )


class PairingCodeSchema(Schema):
    code = ma.fields.String(metadata={"description": "`ABC-123`: type it on the kiosk's screen."})
    expires_at = ma.fields.DateTime()


class SaveArgsSchema(Schema):
    session_id = Id(required=True, metadata={"description": "The kiosk session (from the screen)."})
    product_id = Id(required=True)


class SavedProductSchema(ProductSummarySchema):
    active = ma.fields.Boolean(metadata={"description": "Still sold."})


class SavedSchema(Schema):
    product = ma.fields.Nested(SavedProductSchema)
    store = ma.fields.Nested(StoreRefSchema, metadata={"description": "Where it was saved."})
    saved_at = ma.fields.DateTime()


class SavedListSchema(Schema):
    items = ma.fields.List(ma.fields.Nested(SavedSchema))


class TimelineArgsSchema(Schema):
    limit = ma.fields.Integer(load_default=20, validate=ma.validate.Range(min=1, max=100))
    cursor = Text(
        load_default=None,
        validate=ma.validate.Length(max=40),
        metadata={"description": "From next_cursor."},
    )


class TimelineItemSchema(Schema):
    kind = ma.fields.String(
        metadata={"description": "`purchase`, `refund`, `top_up`, `kiosk_tap`."}
    )
    id = ma.fields.String(metadata={"description": "`<kind>:<id>`, unique in the timeline."})
    at = ma.fields.DateTime()
    store = ma.fields.Nested(StoreRefSchema, allow_none=True)
    channel = ma.fields.String(metadata={"description": "`pos`, `web`, `app`, `kiosk`, ..."})
    what = ma.fields.String(
        metadata={"description": "The products bought, the product or category tapped, ..."}
    )
    amount = ma.fields.Nested(MoneyOutSchema, allow_none=True)
    tap_kind = ma.fields.String(metadata={"description": "Kiosk taps: `product`, `sign`, `card`."})
    product_id = ma.fields.Integer(allow_none=True)


class TimelineSchema(Schema):
    items = ma.fields.List(ma.fields.Nested(TimelineItemSchema))
    next_cursor = ma.fields.String(allow_none=True)

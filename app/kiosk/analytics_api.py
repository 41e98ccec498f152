"""``GET /v1/kiosk/analytics``: the kiosks' tap analytics for store staff and admins (see
app.kiosk.analytics). Staff signed in on the website (``/staff/login``) call it with their
session cookie."""

from __future__ import annotations

import marshmallow as ma
from flask.views import MethodView

from app.auth.principal import allow_staff_cookie, current_principal
from app.cards.schemas import StoreRefSchema
from app.core.api import Blueprint
from app.core.db import session
from app.core.schemas import MAX_ID, Schema
from app.kiosk import analytics
from app.kiosk.analytics import NotYourStore

blp = Blueprint(
    "kiosk_analytics",
    __name__,
    url_prefix="/v1",
    description="What shoppers tap at the kiosks, and what of it they buy.",
)


class AnalyticsArgsSchema(Schema):
    store_id = ma.fields.Integer(
        load_default=None,
        validate=ma.validate.Range(1, MAX_ID),
        metadata={"description": "One store (an admin may leave it out: every store). Staff "
                  "of a store see theirs only, also when they leave it out."},
    )  # fmt: skip
    from_ = ma.fields.Date(
        data_key="from",
        load_default=None,
        metadata={"description": "First day (UTC), YYYY-MM-DD; default: 6 days before `to`."},
    )
    to = ma.fields.Date(
        load_default=None, metadata={"description": "Last day (UTC), included; default: today."}
    )
    days = ma.fields.Integer(
        load_default=7,
        validate=ma.validate.Range(min=1, max=90),
        metadata={"description": "A tap converts when its shopper buys the product within "
                  "this many days."},
    )  # fmt: skip


class ProductRefSchema(Schema):
    id = ma.fields.Integer()
    sku = ma.fields.String()
    name = ma.fields.String()


class ProductTapsSchema(Schema):
    product = ma.fields.Nested(ProductRefSchema)
    taps = ma.fields.Integer()


class DayTopSchema(Schema):
    store = ma.fields.Nested(StoreRefSchema)
    day = ma.fields.Date()
    products = ma.fields.List(ma.fields.Nested(ProductTapsSchema))


class ProductConversionSchema(Schema):
    product = ma.fields.Nested(ProductRefSchema)
    taps = ma.fields.Integer()
    converted = ma.fields.Integer()
    rate = ma.fields.Float()


class ConversionSchema(Schema):
    days = ma.fields.Integer()
    taps = ma.fields.Integer(metadata={"description": "Product taps by known shoppers."})
    converted = ma.fields.Integer(
        metadata={"description": "Those followed by the shopper buying the product within "
                  "`days` days, in any store."}
    )  # fmt: skip
    rate = ma.fields.Float(allow_none=True, metadata={"description": "converted / taps."})
    products = ma.fields.List(ma.fields.Nested(ProductConversionSchema))


class TapsAndSalesSchema(Schema):
    product = ma.fields.Nested(ProductRefSchema)
    taps = ma.fields.Integer()
    sold = ma.fields.Integer(metadata={"description": "Units sold in the range."})


class DayTapsSchema(Schema):
    day = ma.fields.Date()
    taps = ma.fields.Integer()


class AnalyticsSchema(Schema):
    store = ma.fields.Nested(StoreRefSchema, allow_none=True)
    from_ = ma.fields.Date(data_key="from")
    to = ma.fields.Date()
    days = ma.fields.Integer()
    taps_per_day = ma.fields.List(
        ma.fields.Nested(DayTapsSchema),
        metadata={"description": "Product taps of each day of the range (0 included)."},
    )
    most_tapped = ma.fields.List(
        ma.fields.Nested(DayTopSchema),
        metadata={"description": "Per store and day (oldest first), the 10 most-tapped."},
    )
    conversion = ma.fields.Nested(ConversionSchema)
    bought_rarely_tapped = ma.fields.List(
        ma.fields.Nested(TapsAndSalesSchema),
        metadata={"description": "Fewer taps than units sold, fewest taps per unit first."},
    )
    tapped_rarely_bought = ma.fields.List(
        ma.fields.Nested(TapsAndSalesSchema),
        metadata={"description": "Fewer units sold than taps, fewest units per tap first."},
    )


@blp.route("/kiosk/analytics")
class Analytics(MethodView):
    @blp.requires("staff")
    @blp.arguments(AnalyticsArgsSchema, location="query")
    @blp.response(200, AnalyticsSchema)
    @blp.errors(NotYourStore)
    def get(self, args):
        """Tap analytics over a range of days (UTC): the most-tapped products per store and
        day, tap-to-purchase conversion, and the products bought but rarely tapped and
        tapped but rarely bought. Admins: any store, or every store; other staff: their
        store only."""
        scope = analytics.scope_for(
            session(),
            current_principal(),
            store_id=args["store_id"],
            first=args["from_"],
            last=args["to"],
            days=args["days"],
        )
        answer = analytics.analytics(session(), scope)
        answer["from_"] = answer.pop("from")
        return answer


allow_staff_cookie("kiosk_analytics.Analytics")

"""The shopper: sign up, and what the app shows on its home screen."""

from __future__ import annotations

import marshmallow as ma
from flask.views import MethodView

from app.auth.principal import current_principal
from app.cards import services as cards
from app.cards.schemas import CardSchema, card_body
from app.core.api import Blueprint
from app.core.db import session
from app.core.schemas import Schema
from app.core.settings import settings
from app.customers import services as customers
from app.customers.models import Customer

blp = Blueprint("me", __name__, url_prefix="/v1", description="The signed-in shopper.")


class MeSchema(Schema):
    id = ma.fields.Integer()
    name = ma.fields.String()
    email = ma.fields.String()
    stars = ma.fields.Integer(metadata={"description": "Stars balance."})
    tier = ma.fields.String(metadata={"description": "`green` or `gold`."})
    cards = ma.fields.List(ma.fields.Nested(CardSchema))


def me_body(customer: Customer) -> dict:
    s, current = session(), settings()
    return {
        "id": customer.id,
        "name": customer.name,
        "email": customer.email,
        "stars": customers.stars_balance(s, customer),
        "tier": customers.tier_of(customer, current.gold_tier_stars),
        "cards": [
            card_body(card, balance, current.currency, held)
            for card, balance, held in cards.cards_with_balances(s, customer.id)
        ],
    }


@blp.route("/me")
class Me(MethodView):
    @blp.requires("customer")
    @blp.response(200, MeSchema)
    def get(self):
        """The shopper: Stars, tier and every card with its balance."""
        return me_body(customers.load_customer(session(), current_principal().customer_id))

"""Offline allowances for the tills (cashier sessions only)."""

from __future__ import annotations

import marshmallow as ma
from flask.views import MethodView

from app.auth.principal import current_principal
from app.cards.api import holder_of
from app.cards.errors import (
    CardFrozen,
    CardInactive,
    CurrencyMismatch,
    CustomerNotIdentified,
    PayCodeInvalid,
)
from app.cards.schemas import HolderSchema
from app.cards.services import check_currency, load_card
from app.core.api import Blueprint
from app.core.db import session
from app.core.schemas import MoneyOutSchema, MoneySchema, Schema, money
from app.ledger.errors import AccountFrozen, BalanceLimitExceeded, InsufficientFunds
from app.offline import services as allowances
from app.offline import tokens
from app.offline.errors import AllowanceNotFound
from app.offline.models import OfflineAllowance
from app.sales.api import PresentedSchema

blp = Blueprint(
    "offline",
    __name__,
    url_prefix="/v1/pos",
    description="Offline allowances: card money a till may take while it cannot reach the API.",
)


class AllowanceRequestSchema(Schema):
    card = ma.fields.Nested(PresentedSchema, required=True)
    amount = ma.fields.Nested(
        MoneySchema,
        load_default=None,
        allow_none=False,
        metadata={"description": "Default and most: `OMNICARD_OFFLINE_ALLOWANCE_MAX_MINOR`."},
    )


class MatchSchema(Schema):
    salt = ma.fields.String()
    card_number_hmac = ma.fields.String()
    nfc_uid_hmac = ma.fields.String(allow_none=True)


class AllowanceSchema(Schema):
    id = ma.fields.Integer()
    card_id = ma.fields.Integer()
    device_id = ma.fields.Integer()
    amount = ma.fields.Nested(MoneyOutSchema, metadata={"description": "Set aside for this till."})
    used = ma.fields.Nested(MoneyOutSchema, metadata={"description": "Taken by offline sales."})
    released = ma.fields.Nested(
        MoneyOutSchema,
        allow_none=True,
        metadata={"description": "Given back to the card at the release; null while live."},
    )
    status = ma.fields.String(metadata={"description": "`live` or `released`."})
    expires_at = ma.fields.DateTime()
    token = ma.fields.String(
        metadata={"description": "The server's signature on the allowance: send it as "
                  "`offline.allowance` with each offline sale replayed."}
    )  # fmt: skip
    match = ma.fields.Nested(
        MatchSchema,
        metadata={"description": "How the till recognises the card offline without keeping "
                  "its number: hex HMAC-SHA256, keyed by the salt's text, of the card number "
                  "and of the NFC UID (upper-case hex)."},
    )  # fmt: skip
    holder = ma.fields.Nested(HolderSchema, allow_none=True)
    last4 = ma.fields.String()


def allowance_body(allowance: OfflineAllowance) -> dict:
    card = load_card(session(), allowance.card_id)
    c = allowance.currency
    return {
        "id": allowance.id,
        "card_id": allowance.card_id,
        "device_id": allowance.device_id,
        "amount": money(allowance.amount_minor, c),
        "used": money(allowance.used_minor, c),
        "released": (
            money(allowance.released_minor, c) if allowance.released_minor is not None else None
        ),
        "status": allowance.status,
        "expires_at": allowance.expires_at,
        "token": allowances.token_of(allowance),
        "match": {
            "salt": allowance.salt,
            "card_number_hmac": tokens.match_hmac(allowance.salt, card.number),
            "nfc_uid_hmac": (
                tokens.match_hmac(allowance.salt, card.nfc_uid) if card.nfc_uid else None
            ),
        },
        "holder": holder_of(card),
        "last4": card.last4,
    }


@blp.route("/offline-allowances")
class Allowances(MethodView):
    @blp.requires("cashier")
    @blp.idempotent()
    @blp.arguments(AllowanceRequestSchema)
    @blp.response(201, AllowanceSchema)
    @blp.errors(CustomerNotIdentified, PayCodeInvalid, CardInactive, CardFrozen,
                CurrencyMismatch, InsufficientFunds)  # fmt: skip
    def post(self, data):
        """Set aside some of the presented card's balance for this till to take while it
        cannot reach the API (offline), signed by the server, until it expires
        (`OMNICARD_OFFLINE_ALLOWANCE_TTL_S`) or the till releases it. The money leaves the
        card's spendable balance at once (the card's `held`). Asked again while live, the
        answer is the same allowance. A pay code is looked at, not used up."""
        amount = None
        if data["amount"] is not None:
            check_currency(data["amount"]["currency"])
            amount = data["amount"]["amount"]
        allowance, _ = allowances.grant(
            session(), current_principal(), presented=data["card"], amount=amount
        )
        return allowance_body(allowance)


@blp.route("/offline-allowances/<id:allowance_id>/release")
class AllowanceRelease(MethodView):
    @blp.requires("cashier")
    @blp.idempotent()
    @blp.response(200, AllowanceSchema)
    @blp.errors(AllowanceNotFound, BalanceLimitExceeded, AccountFrozen)
    def post(self, allowance_id):
        """Give back to the card what this till's allowance holds and no sale used. Drain the
        till's queue of offline sales first: a sale made after the release is refused."""
        p = current_principal()
        s = session()
        allowance = allowances.tills_allowance(s, p, allowance_id)
        return allowance_body(allowances.release(s, allowance, actor=p.actor))

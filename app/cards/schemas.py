import marshmallow as ma

from app.core.schemas import Id, MoneyOutSchema, MoneySchema, Schema, Text


class CardSchema(Schema):
    id = ma.fields.Integer()
    last4 = ma.fields.String()
    kind = ma.fields.String(metadata={"description": "`digital` or `physical`."})
    status = ma.fields.String(
        metadata={"description": "`active`, `frozen`, or `inactive` (a gift card not sold yet)."}
    )
    primary = ma.fields.Boolean()
    registered = ma.fields.Boolean()
    nfc_bound = ma.fields.Boolean()
    balance = ma.fields.Nested(MoneyOutSchema)
    held = ma.fields.Nested(
        MoneyOutSchema,
        metadata={"description": "Set aside for offline tills (not in `balance`): spendable "
                  "only at those tills until released."},
    )  # fmt: skip
    replaced_by_id = ma.fields.Integer(allow_none=True)


def card_body(card, balance: int, currency: str, held: int = 0) -> dict:
    return {
        "id": card.id,
        "last4": card.last4,
        "kind": card.kind,
        "status": card.status,
        "primary": card.is_primary,
        "registered": card.customer_id is not None,
        "nfc_bound": card.nfc_uid is not None,
        "balance": {"amount": balance, "currency": currency},
        "held": {"amount": held, "currency": currency},
        "replaced_by_id": card.replaced_by_id,
    }


class RegisterCardSchema(Schema):
    number = Text(required=True, validate=ma.validate.Regexp(r"^\d{16}$"))
    security_code = Text(required=True, validate=ma.validate.Regexp(r"^\d{8}$"))


class PayCodeRequestSchema(Schema):
    card_id = Id(load_default=None, metadata={"description": "Default: the primary card."})


class PayCodeSchema(Schema):
    code = ma.fields.String(metadata={"description": "Show as a barcode or QR; works once."})
    card_id = ma.fields.Integer()
    expires_at = ma.fields.DateTime()


class TransferRequestSchema(Schema):
    to_card_id = Id(required=True)
    amount = ma.fields.Nested(MoneySchema, required=True)


class TransferSchema(Schema):
    transaction_id = ma.fields.Integer()
    amount = ma.fields.Nested(MoneyOutSchema)
    from_card = ma.fields.Nested(CardSchema)
    to_card = ma.fields.Nested(CardSchema)


class ReportLostSchema(Schema):
    lost_card = ma.fields.Nested(CardSchema)
    replacement_card = ma.fields.Nested(CardSchema)


class TopUpRequestSchema(Schema):
    amount = ma.fields.Nested(MoneySchema, required=True)
    payment_token = Text(
        load_default=None,
        validate=ma.validate.Length(min=1, max=100),
        metadata={"description": "Shoppers: the payment processor's token for a bank card."},
    )
    tender = Text(
        load_default=None,
        validate=ma.validate.OneOf(["cash", "bank_card"]),
        metadata={"description": "Cashiers: how the shopper paid at the till."},
    )


class TopUpSchema(Schema):
    id = ma.fields.Integer()
    card_id = ma.fields.Integer()
    amount = ma.fields.Nested(MoneyOutSchema)
    status = ma.fields.String(metadata={"description": "`pending`, `succeeded`, `declined`."})
    source = ma.fields.String()
    decline_code = ma.fields.String(allow_none=True)
    card_balance = ma.fields.Nested(MoneyOutSchema)
    created_at = ma.fields.DateTime()


class AutoReloadRequestSchema(Schema):
    threshold = ma.fields.Nested(MoneySchema, required=True)
    amount = ma.fields.Nested(MoneySchema, required=True)
    payment_token = Text(required=True, validate=ma.validate.Length(min=1, max=100))
    enabled = ma.fields.Boolean(load_default=True)


class AutoReloadSchema(Schema):
    card_id = ma.fields.Integer()
    threshold = ma.fields.Nested(MoneyOutSchema)
    amount = ma.fields.Nested(MoneyOutSchema)
    enabled = ma.fields.Boolean()


class BindNfcSchema(Schema):
    uid = Text(
        required=True,
        validate=ma.validate.Length(max=64),
        metadata={"description": "The tag's UID in hex."},
    )


class CardProofSchema(Schema):
    card_number = ma.fields.String(validate=ma.validate.Regexp(r"^\d{16}$"))
    security_code = ma.fields.String(validate=ma.validate.Regexp(r"^\d{8}$"))
    pay_code = ma.fields.String(validate=ma.validate.Regexp(r"^\d{12}$"))

    @ma.validates_schema
    def one_proof(self, data, **kwargs):
        if set(data) not in ({"card_number", "security_code"}, {"pay_code"}):
            raise ma.ValidationError(
                "Give card_number with security_code (a physical card), or pay_code (the app)."
            )


class TillBindNfcSchema(BindNfcSchema):
    card = ma.fields.Nested(
        CardProofSchema,
        required=True,
        metadata={"description": "Proof that the card's holder is at the till."},
    )


class StoreRefSchema(Schema):
    id = ma.fields.Integer()
    name = ma.fields.String()


class ActivitySchema(Schema):
    id = ma.fields.Integer(metadata={"description": "The posting's id."})
    transaction_id = ma.fields.Integer()
    kind = ma.fields.String(
        metadata={"description": "`sale`, `refund`, `top_up`, `card_transfer`, "
                  "`lost_card_move`, `offline_hold`, `offline_release`, ..."}
    )  # fmt: skip
    channel = ma.fields.String(
        allow_none=True,
        metadata={"description": "`app`, `web`, `pos`, `kiosk`, `admin`, `system`."},
    )
    amount = ma.fields.Nested(MoneyOutSchema, metadata={"description": "Signed: + in, - out."})
    store = ma.fields.Nested(
        StoreRefSchema,
        allow_none=True,
        metadata={"description": "Where it happened; null away from a store (app, website)."},
    )
    created_at = ma.fields.DateTime()


class ActivityPageSchema(Schema):
    items = ma.fields.List(ma.fields.Nested(ActivitySchema))
    next_cursor = ma.fields.String(allow_none=True)


class CardLookupRequestSchema(Schema):
    card_number = Text(validate=ma.validate.Regexp(r"^\d{16}$"))
    nfc_uid = Text(validate=ma.validate.Length(min=8, max=40))
    pay_code = Text(
        validate=ma.validate.Regexp(r"^\d{12}$"),
        metadata={"description": "Looked at, not used up: it can still pay."},
    )

    @ma.validates_schema
    def exactly_one(self, data, **kwargs):
        if len(data) != 1:
            raise ma.ValidationError("Give exactly one of card_number, nfc_uid, pay_code.")


class HolderSchema(Schema):
    first_name = ma.fields.String()
    stars = ma.fields.Integer()


class CardLookupSchema(CardSchema):
    holder = ma.fields.Nested(
        HolderSchema,
        allow_none=True,
        metadata={"description": "Who the card belongs to; null for a gift card no one has "
                  "registered."},
    )  # fmt: skip


class PresentedCardSchema(Schema):
    card_number = Text(validate=ma.validate.Regexp(r"^\d{16}$"))
    nfc_uid = Text(validate=ma.validate.Length(min=8, max=40))

    @ma.validates_schema
    def exactly_one(self, data, **kwargs):
        if len(data) != 1:
            raise ma.ValidationError("Give exactly one of card_number, nfc_uid.")


class GiftCardSaleRequestSchema(Schema):
    card = ma.fields.Nested(PresentedCardSchema, required=True)
    amount = ma.fields.Nested(MoneySchema, required=True)
    tender = Text(required=True, validate=ma.validate.OneOf(["cash", "bank_card"]))


class GiftCardSaleSchema(Schema):
    card = ma.fields.Nested(CardSchema)
    top_up = ma.fields.Nested(TopUpSchema)


class BatchRequestSchema(Schema):
    size = ma.fields.Integer(required=True, strict=True, validate=ma.validate.Range(1, 1000))
    note = Text(load_default="", validate=ma.validate.Length(max=200))


class IssuedCardSchema(Schema):
    id = ma.fields.Integer()
    number = ma.fields.String()
    security_code = ma.fields.String(metadata={"description": "Shown only now."})


class BatchSchema(Schema):
    batch_id = ma.fields.Integer()
    cards = ma.fields.List(ma.fields.Nested(IssuedCardSchema))

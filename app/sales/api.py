"""Sales and refunds at the till (cashier sessions only)."""

from __future__ import annotations

import datetime
import logging
import time

import marshmallow as ma
from flask import current_app, request, url_for
from flask.views import MethodView

from app.auth.principal import current_principal
from app.cards.errors import (
    CardFrozen,
    CurrencyMismatch,
    CustomerNotIdentified,
    NfcLimitExceeded,
    PayCodeInvalid,
)
from app.catalog.services import UnknownSku
from app.core.api import Blueprint
from app.core.db import after_commit, after_commit_apart, database, session
from app.core.schemas import (
    List,
    MoneyOutSchema,
    MoneySchema,
    PageArgsSchema,
    Schema,
    Text,
    decode_cursor,
    money,
)
from app.core.settings import settings
from app.core.types import utcnow
from app.kiosk import counts as kiosk_counts
from app.ledger.errors import AccountFrozen, BalanceLimitExceeded, InsufficientFunds
from app.offline import services as allowances
from app.offline.errors import (
    AllowanceExhausted,
    AllowanceExpired,
    AllowanceInvalid,
    AllowanceRequired,
    OfflineSaleRefused,
)
from app.payments import services as payments
from app.sales import receipts
from app.sales import services as sales
from app.sales.errors import (
    CardRequired,
    CashGivenShort,
    NothingToPay,
    NothingToRefund,
    RefundExceedsSale,
    SaleNotFound,
    TendersDoNotMatchTotal,
)
from app.sales.models import Receipt, Refund, Sale
from app.sales.receipts import ReceiptNotFound
from app.sales.rules import number

log = logging.getLogger(__name__)
blp = Blueprint("sales", __name__, url_prefix="/v1", description="Selling at the till.")


class PresentedSchema(Schema):
    card_number = Text(validate=ma.validate.Regexp(r"^\d{16}$"))
    nfc_uid = Text(validate=ma.validate.Length(min=8, max=40))
    pay_code = Text(validate=ma.validate.Regexp(r"^\d{12}$"))

    @ma.validates_schema
    def exactly_one(self, data, **kwargs):
        if len(data) != 1:
            raise ma.ValidationError("Give exactly one of card_number, nfc_uid, pay_code.")


class LineRequestSchema(Schema):
    sku = Text(required=True, validate=ma.validate.Length(min=1, max=40))
    quantity = ma.fields.Integer(required=True, strict=True, validate=ma.validate.Range(1, 999))


class TenderRequestSchema(Schema):
    type = Text(required=True, validate=ma.validate.OneOf(["card_balance", "cash", "bank_card"]))
    amount = ma.fields.Nested(MoneySchema, required=True)
    given = ma.fields.Nested(
        MoneySchema,
        load_default=None,
        metadata={"description": "Cash only: what the shopper handed over, at least `amount` "
                  "(the rest is their change). Omitted: exactly `amount`."},
    )  # fmt: skip


class OfflineSaleSchema(Schema):
    made_at = ma.fields.AwareDateTime(
        required=True, metadata={"description": "When the till made the sale (its clock)."}
    )
    allowance = Text(
        load_default=None,
        allow_none=True,
        validate=ma.validate.Length(min=1, max=1000),
        metadata={"description": "The offline allowance's `token`: required when a card "
                  "balance pays; that card is the allowance's."},
    )  # fmt: skip


class SaleRequestSchema(Schema):
    customer = ma.fields.Nested(PresentedSchema, load_default=None)
    lines = List(ma.fields.Nested(LineRequestSchema), required=True, min_items=1, max_items=200)
    tenders = List(ma.fields.Nested(TenderRequestSchema), required=True, min_items=1, max_items=10)
    offline = ma.fields.Nested(
        OfflineSaleSchema,
        load_default=None,
        allow_none=False,
        metadata={"description": "A sale made at the till while the API could not be "
                  "reached, replayed now."},
    )  # fmt: skip


class ReceiptLineSchema(Schema):
    sku = ma.fields.String()
    name = ma.fields.String()
    quantity = ma.fields.Integer()
    unit_price = ma.fields.Nested(MoneyOutSchema)
    line_total = ma.fields.Nested(MoneyOutSchema)


class SaleLineSchema(ReceiptLineSchema):
    stars_earned = ma.fields.Integer()
    refunded_quantity = ma.fields.Integer()


class TenderSchema(Schema):
    type = ma.fields.String()
    amount = ma.fields.Nested(MoneyOutSchema)
    refunded = ma.fields.Nested(MoneyOutSchema)


class ReceiptLinkSchema(Schema):
    id = ma.fields.String(metadata={"description": "Unguessable: whoever holds it may read it."})
    url = ma.fields.String(metadata={"description": "The receipt's page (for its QR code)."})


class SaleSchema(Schema):
    id = ma.fields.Integer()
    number = ma.fields.String(metadata={"description": "As printed: `S-000123`."})
    shift_id = ma.fields.Integer(allow_none=True)
    store_id = ma.fields.Integer()
    device_id = ma.fields.Integer()
    card_id = ma.fields.Integer(allow_none=True)
    customer_id = ma.fields.Integer(allow_none=True)
    lines = ma.fields.List(ma.fields.Nested(SaleLineSchema))
    total = ma.fields.Nested(MoneyOutSchema)
    tenders = ma.fields.List(ma.fields.Nested(TenderSchema))
    card_balance = ma.fields.Nested(
        MoneyOutSchema, allow_none=True, metadata={"description": "After the sale."}
    )
    stars_earned = ma.fields.Integer()
    created_at = ma.fields.DateTime()
    receipt = ma.fields.Nested(
        ReceiptLinkSchema,
        allow_none=True,
        metadata={"description": "None only for sales rung up before receipts were kept."},
    )


class SalesOfDayArgsSchema(PageArgsSchema):
    date = ma.fields.Date(
        load_default=None,
        # The last day of the calendar has no next day to end it.
        validate=ma.validate.Range(max=datetime.date.max - datetime.timedelta(days=1)),
        metadata={"description": "The UTC day, `YYYY-MM-DD`; today if omitted."},
    )


class SalePageSchema(Schema):
    items = ma.fields.List(ma.fields.Nested(SaleSchema))
    next_cursor = ma.fields.String(allow_none=True)


def receipt_link(receipt: Receipt | None) -> dict | None:
    if receipt is None:
        return None
    return {
        "id": receipt.id,
        "url": url_for("receipt_pages.receipt_page", receipt_id=receipt.id, _external=True),
    }


def sale_body(sale: Sale, receipt: Receipt | None, card_balance: int | None = None) -> dict:
    """The sale as the till shows it; ``card_balance`` is the card's balance after the sale,
    as its receipt says unless given."""
    c = sale.currency
    if card_balance is None and receipt is not None and receipt.body["card"] is not None:
        card_balance = receipt.body["card"]["balance_after"]["amount"]
    return {
        "id": sale.id,
        "number": number("S", sale.id),
        "shift_id": sale.shift_id,
        "store_id": sale.store_id,
        "device_id": sale.device_id,
        "card_id": sale.card_id,
        "customer_id": sale.customer_id,
        "lines": [
            receipts.line_body(line, c)
            | {"stars_earned": line.stars_earned, "refunded_quantity": line.refunded_quantity}
            for line in sale.lines
        ],
        "total": money(sale.total_minor, c),
        "tenders": [
            {
                "type": t.type,
                "amount": money(t.amount_minor, c),
                "refunded": money(t.refunded_minor, c),
            }
            for t in sale.tenders
        ],
        "card_balance": money(card_balance, c) if card_balance is not None else None,
        "stars_earned": sale.stars_earned,
        "created_at": sale.created_at,
        "receipt": receipt_link(receipt),
    }


def _auto_reload(outcome: sales.SaleOutcome) -> None:
    """Write the card's auto-reload down with the sale if the sale crossed its threshold, and
    charge it once the sale has committed, in its own transaction: whatever happens there,
    the sale stands, and a reload whose charge never ran is charged by `flask payments
    settle`. (It runs before the response leaves, so the till's answer waits for the
    gateway; a job queue would free it.) Nothing to do for a card without the rule."""
    if outcome.auto_reload is None or outcome.card_balance_after is None:
        return
    top_up = payments.begin_auto_reload(
        session(), outcome.auto_reload, outcome.card, sale_id=outcome.sale.id,
        balance_before=outcome.card_balance_before, balance_after=outcome.card_balance_after,
    )  # fmt: skip
    if top_up is None:
        return

    def charge():
        try:
            with database().sessions() as s:
                payments.charge_auto_reload(s, top_up.id)
        except Exception:  # the sale stands; the reload stays pending, to be settled
            log.exception("auto-reload %s after sale %s failed", top_up.id, outcome.sale.id)

    after_commit(charge)


#: When this process last counted new sales for the kiosks' suggestions (monotonic seconds).
_counted_at = [0.0]
#: At most this often: a count takes every sale made since, in one go.
COUNT_FOR_KIOSKS_EVERY_S = 1.0


def _count_for_kiosks_now_and_then() -> None:
    """After the sale has committed, at most once a second per process, the sales since go
    into the kiosk suggestions' counts (app.kiosk.counts): in a thread of their own (a
    greenlet under gevent), so that no till's answer waits for them."""
    now = time.monotonic()
    if now - _counted_at[0] < COUNT_FOR_KIOSKS_EVERY_S:
        return
    _counted_at[0] = now
    app = current_app._get_current_object()

    def count():
        try:
            with app.app_context(), database(app).sessions() as s:
                kiosk_counts.count_new_sales(s)
                s.commit()
        except Exception:  # counted by the next one
            log.exception("counting sales for the kiosks failed")

    after_commit_apart(count, "kiosk-counts")


@blp.route("/sales")
class Sales(MethodView):
    @blp.requires("cashier")
    @blp.idempotent()
    @blp.arguments(SaleRequestSchema)
    @blp.response(201, SaleSchema)
    @blp.errors(UnknownSku, CurrencyMismatch, NothingToPay, TendersDoNotMatchTotal,
                CashGivenShort, CardRequired, CustomerNotIdentified, PayCodeInvalid, CardFrozen,
                NfcLimitExceeded, InsufficientFunds, AccountFrozen)  # fmt: skip
    @blp.errors(AllowanceRequired, AllowanceInvalid, AllowanceExpired, AllowanceExhausted)
    def post(self, data):
        """Ring up a sale: prices come from the catalog, tenders must cover the total exactly
        (split tender allowed), and an identified shopper earns Stars. Its receipt is
        written with it: `receipt.url` is the page its QR code opens.

        A sale made offline and replayed (`offline`) takes its card balance part from the
        card's offline allowance; a refused one is recorded for the store to look into.
        """
        config = settings()
        for tender in data["tenders"]:
            for sum_of_money in (tender["amount"], tender["given"]):
                if sum_of_money is not None and sum_of_money["currency"] != config.currency:
                    raise CurrencyMismatch(expected=config.currency, given=sum_of_money["currency"])
        try:
            outcome = sales.make_sale(
                session(),
                config,
                current_principal(),
                presented=data["customer"],
                lines=[(line["sku"], line["quantity"]) for line in data["lines"]],
                tenders=[(t["type"], t["amount"]["amount"]) for t in data["tenders"]],
                given=[t["given"] and t["given"]["amount"] for t in data["tenders"]],
                offline=data["offline"],
            )
        except OfflineSaleRefused as refused:
            allowances.record_refusal(session(), current_principal(), refused, request.json)
            raise
        _auto_reload(outcome)
        _count_for_kiosks_now_and_then()
        return sale_body(outcome.sale, outcome.receipt, outcome.card_balance_after)

    @blp.requires("cashier")
    @blp.arguments(SalesOfDayArgsSchema, location="query")
    @blp.response(200, SalePageSchema)
    def get(self, args):
        """This store's sales of a day (UTC), newest first, a page at a time: for reprints and
        refunds at the till. `card_balance` is the card's balance after each sale."""
        s = session()
        page = sales.sales_of_day(
            s,
            current_principal().store_id,
            args["date"] or utcnow().date(),
            below=decode_cursor(args["cursor"]),
            limit=args["limit"] + 1,
        )
        shown = page[: args["limit"]]
        receipts_of = receipts.sale_receipts(s, [sale.id for sale in shown])
        items = [sale_body(sale, receipts_of.get(sale.id)) for sale in shown]
        more = len(page) > args["limit"]
        return {"items": items, "next_cursor": str(shown[-1].id) if more else None}


@blp.route("/sales/<id:sale_id>")
class SaleView(MethodView):
    @blp.requires("cashier")
    @blp.response(200, SaleSchema)
    @blp.errors(SaleNotFound)
    def get(self, sale_id):
        """A sale of this till's store."""
        s = session()
        sale = sales.sale_in_store(s, sale_id, current_principal().store_id)
        return sale_body(sale, receipts.sale_receipts(s, [sale.id]).get(sale.id))


class RefundRequestSchema(Schema):
    lines = List(
        ma.fields.Nested(LineRequestSchema),
        load_default=None,
        min_items=1,
        max_items=200,
        metadata={"description": "What to refund; everything left when omitted."},
    )


class RefundLineSchema(Schema):
    sku = ma.fields.String()
    quantity = ma.fields.Integer()
    amount = ma.fields.Nested(MoneyOutSchema)
    stars = ma.fields.Integer()


class RefundTenderSchema(Schema):
    type = ma.fields.String()
    amount = ma.fields.Nested(MoneyOutSchema)


class RefundSchema(Schema):
    id = ma.fields.Integer()
    sale_id = ma.fields.Integer()
    amount = ma.fields.Nested(MoneyOutSchema)
    lines = ma.fields.List(ma.fields.Nested(RefundLineSchema))
    tenders = ma.fields.List(ma.fields.Nested(RefundTenderSchema))
    stars_taken_back = ma.fields.Integer()
    receipt = ma.fields.Nested(ReceiptLinkSchema)
    stars_owed = ma.fields.Integer(
        metadata={"description": "Stars these lines earned that were spent already; the "
                  "shopper repays them from the next Stars they earn."}
    )  # fmt: skip
    created_at = ma.fields.DateTime()


def refund_body(refund: Refund, currency: str, receipt: Receipt) -> dict:
    return {
        "id": refund.id,
        "receipt": receipt_link(receipt),
        "sale_id": refund.sale_id,
        "amount": money(refund.amount_minor, currency),
        "lines": [
            {
                "sku": r["sku"],
                "quantity": r["quantity"],
                "amount": money(r["amount_minor"], currency),
                "stars": r["stars"],
            }
            for r in refund.lines
        ],  # fmt: skip
        "tenders": [
            {"type": t["type"], "amount": money(t["amount_minor"], currency)}
            for t in refund.tenders
        ],
        "stars_taken_back": refund.stars_taken_back,
        "stars_owed": refund.stars_owed,
        "created_at": refund.created_at,
    }


@blp.route("/sales/<id:sale_id>/refunds")
class SaleRefunds(MethodView):
    @blp.requires("cashier")
    @blp.idempotent()
    @blp.arguments(RefundRequestSchema)
    @blp.response(201, RefundSchema)
    @blp.errors(SaleNotFound, RefundExceedsSale, NothingToRefund, BalanceLimitExceeded,
                InsufficientFunds, AccountFrozen)  # fmt: skip
    def post(self, data, sale_id):
        """Refund lines of a sale of this store, back to the tenders it was paid with (card
        balance, then bank card, then cash), never more than each paid; the Stars those lines
        earned are taken back."""
        requested = None
        if data["lines"] is not None:
            requested = [(line["sku"], line["quantity"]) for line in data["lines"]]
        principal = current_principal()
        refund, sale, receipt = sales.refund_sale(session(), principal, sale_id, requested)
        return refund_body(refund, sale.currency, receipt)


class StoreNameSchema(Schema):
    name = ma.fields.String()
    address = ma.fields.String()


class ReceiptCardSchema(Schema):
    last4 = ma.fields.String()
    balance_after = ma.fields.Nested(MoneyOutSchema)


class ReceiptStarsSchema(Schema):
    earned = ma.fields.Integer(metadata={"description": "Negative: taken back by a refund."})
    balance = ma.fields.Integer()


class ReceiptSchema(Schema):
    id = ma.fields.String()
    kind = ma.fields.String(metadata={"description": "`sale` or `refund`."})
    url = ma.fields.String()
    number = ma.fields.String(metadata={"description": "`S-000123` or `R-000045`."})
    sale_id = ma.fields.Integer()
    refund_id = ma.fields.Integer(allow_none=True)
    sale_number = ma.fields.String()
    store = ma.fields.Nested(StoreNameSchema)
    till = ma.fields.String()
    cashier = ma.fields.String(metadata={"description": "The cashier's first name."})
    created_at = ma.fields.DateTime()
    currency = ma.fields.String()
    lines = ma.fields.List(ma.fields.Nested(ReceiptLineSchema))
    total = ma.fields.Nested(
        MoneyOutSchema, metadata={"description": "For a refund, the amount given back."}
    )
    tenders = ma.fields.List(ma.fields.Nested(RefundTenderSchema))
    cash_given = ma.fields.Nested(MoneyOutSchema, allow_none=True)
    change = ma.fields.Nested(MoneyOutSchema, allow_none=True)
    card = ma.fields.Nested(ReceiptCardSchema, allow_none=True)
    stars = ma.fields.Nested(ReceiptStarsSchema, allow_none=True)
    offline = ma.fields.Boolean(
        metadata={"description": "Rung up at a till that could not reach Omnicard, sent later."}
    )


def receipt_body(receipt: Receipt) -> dict:
    return {**receipt.body, **receipt_link(receipt), "created_at": receipt.created_at}


@blp.route("/receipts/<receipt_id>")
class ReceiptView(MethodView):
    @blp.response(200, ReceiptSchema)
    @blp.errors(ReceiptNotFound)
    def get(self, receipt_id):
        """A sale's or a refund's receipt, as it was handed over. Anyone who holds its id
        (the link is the secret); it shows the card's last four digits only."""
        return receipt_body(receipts.receipt(session(), receipt_id))

"""Cards: read, activity, top-ups, transfers, report lost, auto-reload, NFC, pay codes."""

from __future__ import annotations

from flask import g, request
from flask.views import MethodView

from app.auth.errors import TooManyAttempts
from app.auth.principal import current_principal
from app.cards import auto_reload, schemas
from app.cards import services as cards
from app.cards.errors import (
    AmountOutOfRange,
    AutoReloadNotSet,
    CardAlreadySold,
    CardFrozen,
    CardInactive,
    CardNotFound,
    CurrencyMismatch,
    CustomerNotIdentified,
    InvalidCardDetails,
    InvalidNfcUid,
    NfcUidInUse,
    NotAGiftCard,
    PayCodeInvalid,
    SameCard,
)
from app.cards.models import AutoReload, Card
from app.core.api import Blueprint
from app.core.db import session
from app.core.errors import ValidationFailed
from app.core.schemas import PageArgsSchema, decode_cursor, money
from app.core.settings import settings
from app.customers import services as customers
from app.events import changes
from app.ledger.errors import AccountFrozen, BalanceLimitExceeded, InsufficientFunds
from app.payments import services as payments
from app.payments import top_ups
from app.payments.errors import PaymentDeclined, TopUpNotFound, TopUpNotLoaded
from app.payments.models import TopUp
from app.stores import services as stores

blp = Blueprint(
    "cards",
    __name__,
    url_prefix="/v1",
    description="A shopper's cards: balances, activity, top-ups, transfers, lost cards.",
)


def card_out(card: Card) -> dict:
    s = session()
    return schemas.card_body(
        card, cards.card_balance(s, card), settings().currency, cards.held_balance(s, card)
    )


def visible_card(card_id: int) -> Card:
    """The card, if the caller may see it: its owner, or an admin. Raises CardNotFound."""
    p = current_principal()
    if p.kind == "customer":
        return cards.owned_card(session(), card_id, p.customer_id)
    return cards.load_card(session(), card_id)


@blp.route("/cards/<id:card_id>")
class CardView(MethodView):
    @blp.requires("customer", "staff", role="admin")
    @blp.response(200, schemas.CardSchema)
    @blp.errors(CardNotFound)
    def get(self, card_id):
        """A card and its balance."""
        return card_out(visible_card(card_id))


@blp.route("/cards/<id:card_id>/activity")
class CardActivity(MethodView):
    @blp.requires("customer", "staff", role="admin")
    @blp.arguments(PageArgsSchema, location="query")
    @blp.response(200, schemas.ActivityPageSchema)
    @blp.errors(CardNotFound)
    def get(self, args, card_id):
        """Everything that moved the card's balance, newest first, a page at a time."""
        card = visible_card(card_id)
        rows = cards.activity(
            session(), card, limit=args["limit"], below=decode_cursor(args["cursor"])
        )
        items = rows[: args["limit"]]
        more = len(rows) > args["limit"]
        return {"items": items, "next_cursor": str(items[-1]["id"]) if more else None}


#: The channels a shopper tops up from, as their clients name themselves.
SHOPPER_CHANNELS = ("app", "web")


def shopper_channel() -> str:
    """Where a shopper's top-up came from (``X-Omnicard-Channel``), recorded with it and shown
    in the card's activity: one of ``SHOPPER_CHANNELS``, and ``app`` for anything else, so a
    client's header never writes free text into the books. The website's session is always
    ``web``."""
    if current_principal().web:
        return "web"
    claimed = request.headers.get("X-Omnicard-Channel", "app")
    return claimed if claimed in SHOPPER_CHANNELS else "app"


def top_up_out(top_up: TopUp, card: Card) -> dict:
    return {
        "id": top_up.id,
        "card_id": top_up.card_id,
        "amount": money(top_up.amount_minor, top_up.currency),
        "status": top_up.status,
        "source": top_up.source,
        "decline_code": top_up.decline_code,
        "card_balance": money(cards.card_balance(session(), card), settings().currency),
        "created_at": top_up.created_at,
    }


@blp.route("/cards/<id:card_id>/top-ups")
class CardTopUps(MethodView):
    @blp.requires("customer", "cashier")
    @blp.idempotent(resumable=True)
    @blp.arguments(schemas.TopUpRequestSchema)
    @blp.response(201, schemas.TopUpSchema)
    @blp.alt_response(202, schema=schemas.TopUpSchema, success=True,
                      description="The gateway did not answer in time: the top-up is pending "
                      "and is settled by a retry with the same Idempotency-Key or by "
                      "`flask payments settle`; it is never credited twice.")  # fmt: skip
    @blp.errors(CardNotFound, CardFrozen, CardInactive, CurrencyMismatch, AmountOutOfRange)
    @blp.errors(BalanceLimitExceeded, PaymentDeclined, TopUpNotLoaded, ValidationFailed)
    def post(self, data, card_id):
        """Load money onto a card.

        A shopper pays with a bank card through the payment gateway (`payment_token`); a
        cashier takes `cash` or a `bank_card` at the till (`tender`), for any card presented,
        registered or not (a gift card). Top-ups earn no Stars.
        """
        p = current_principal()
        s = session()
        amount = data["amount"]
        if p.kind == "cashier":
            if data["tender"] is None or data["payment_token"] is not None:
                raise ValidationFailed(fields={"tender": ["A cashier gives the tender."]})
            card = cards.load_card(s, card_id)
            cards.check_currency(amount["currency"])
            top_up = payments.top_up_at_till(
                s, card=card, amount=amount["amount"], tender=data["tender"],
                store=stores.load_store(s, p.store_id), device_id=p.device_id, principal=p,
                idempotency_key=g.idempotency_key,
            )  # fmt: skip
            return top_up_out(top_up, card)

        if data["payment_token"] is None or data["tender"] is not None:
            raise ValidationFailed(fields={"payment_token": ["A shopper pays with a token."]})
        card = cards.owned_card(s, card_id, p.customer_id)
        earlier = top_ups.begun_under(s, p.key, g.idempotency_key)
        if earlier is None:
            cards.check_currency(amount["currency"])
            payments.check_top_up_amount(s, card, amount["amount"], amount["currency"])
            top_up = payments.begin_gateway_top_up(
                s, card=card, amount=amount["amount"], token=data["payment_token"],
                channel=shopper_channel(),
                principal=p.key, idempotency_key=g.idempotency_key,
            )  # fmt: skip
            s.commit()  # written down before the card is charged
            result = payments.charge(top_up)
        else:
            top_up = earlier
            result = payments.resume(top_up) if top_up.status == "pending" else None
        top_up = payments.settle(s, top_up.id, result)
        if top_up.status == "declined":
            s.commit()
            if top_up.decline_code in (BalanceLimitExceeded.code, AccountFrozen.code):
                raise TopUpNotLoaded(top_up_id=top_up.id, reason=top_up.decline_code)
            raise PaymentDeclined(top_up_id=top_up.id, decline_code=top_up.decline_code)
        body = top_up_out(top_up, card)
        return (body, 201) if top_up.status == "succeeded" else (body, 202)


@blp.route("/top-ups/<id:top_up_id>")
class TopUpView(MethodView):
    @blp.requires("customer")
    @blp.response(200, schemas.TopUpSchema)
    @blp.errors(TopUpNotFound)
    def get(self, top_up_id):
        """A top-up of one's own: see a pending one settle."""
        top_up, card = top_ups.shoppers_top_up(
            session(), top_up_id, current_principal().customer_id
        )
        return top_up_out(top_up, card)


@blp.route("/cards/<id:card_id>/transfers")
class CardTransfers(MethodView):
    @blp.requires("customer")
    @blp.idempotent()
    @blp.arguments(schemas.TransferRequestSchema)
    @blp.response(201, schemas.TransferSchema)
    @blp.errors(CardNotFound, CardFrozen, CardInactive, SameCard, CurrencyMismatch,
                InsufficientFunds, BalanceLimitExceeded, AccountFrozen)  # fmt: skip
    def post(self, data, card_id):
        """Move balance from this card to another card of one's own."""
        p = current_principal()
        s = session()
        source = cards.owned_card(s, card_id, p.customer_id)
        target = cards.owned_card(s, data["to_card_id"], p.customer_id)
        cards.check_currency(data["amount"]["currency"])
        transaction_id = cards.transfer_between(
            s, source, target, data["amount"]["amount"], actor=p.actor, channel=p.channel
        )
        return {
            "transaction_id": transaction_id,
            "amount": data["amount"],
            "from_card": card_out(source),
            "to_card": card_out(target),
        }


@blp.route("/cards/<id:card_id>/report-lost")
class CardReportLost(MethodView):
    @blp.requires("customer")
    @blp.idempotent()
    @blp.response(200, schemas.ReportLostSchema)
    @blp.errors(CardNotFound, CardFrozen)
    def post(self, card_id):
        """Freeze a lost card for good; its whole balance moves to a new digital card."""
        p = current_principal()
        s = session()
        card = cards.owned_card(s, card_id, p.customer_id)
        replacement = cards.report_lost(s, card, actor=p.actor, channel=p.channel)
        s.refresh(card)
        return {"lost_card": card_out(card), "replacement_card": card_out(replacement)}


@blp.route("/cards/<id:card_id>/primary")
class CardPrimary(MethodView):
    @blp.requires("customer")
    @blp.response(200, schemas.CardSchema)
    @blp.errors(CardNotFound, CardFrozen)
    def put(self, card_id):
        """Make this card the primary one (the default for pay codes and the app)."""
        p = current_principal()
        card = cards.owned_card(session(), card_id, p.customer_id)
        return card_out(cards.make_primary(session(), card))


def auto_reload_out(rule: AutoReload) -> dict:
    c = settings().currency
    return {
        "card_id": rule.card_id,
        "threshold": money(rule.threshold_minor, c),
        "amount": money(rule.amount_minor, c),
        "enabled": rule.enabled,
    }


@blp.route("/cards/<id:card_id>/auto-reload")
class CardAutoReload(MethodView):
    @blp.requires("customer")
    @blp.response(200, schemas.AutoReloadSchema)
    @blp.errors(CardNotFound, AutoReloadNotSet)
    def get(self, card_id):
        """The card's auto-reload, if one is set (its saved payment token is never shown)."""
        p = current_principal()
        s = session()
        card = cards.owned_card(s, card_id, p.customer_id)
        return auto_reload_out(auto_reload.auto_reload_of(s, card))

    @blp.requires("customer")
    @blp.arguments(schemas.AutoReloadRequestSchema)
    @blp.response(200, schemas.AutoReloadSchema)
    @blp.errors(CardNotFound, CardFrozen, CurrencyMismatch, AmountOutOfRange)
    def put(self, data, card_id):
        """'When this card drops below `threshold`, add `amount`' from a saved bank card.

        It fires once, after the sale that took the balance below the threshold; if the
        charge fails, the sale still stands.
        """
        p = current_principal()
        s = session()
        card = cards.owned_card(s, card_id, p.customer_id)
        cards.require_active(card)
        for field in ("threshold", "amount"):
            cards.check_currency(data[field]["currency"])
        rule = auto_reload.set_auto_reload(
            s, settings(), card, threshold_minor=data["threshold"]["amount"],
            amount_minor=data["amount"]["amount"], payment_token=data["payment_token"],
            enabled=data["enabled"],
        )  # fmt: skip
        return auto_reload_out(rule)

    @blp.requires("customer")
    @blp.response(204)
    @blp.errors(CardNotFound)
    def delete(self, card_id):
        """Turn auto-reload off and forget its saved payment token."""
        p = current_principal()
        s = session()
        auto_reload.turn_off_auto_reload(s, cards.owned_card(s, card_id, p.customer_id))


@blp.route("/cards/<id:card_id>/nfc")
class CardNfc(MethodView):
    @blp.requires("customer")
    @blp.arguments(schemas.BindNfcSchema)
    @blp.response(200, schemas.CardSchema)
    @blp.errors(CardNotFound, CardFrozen, InvalidNfcUid, NfcUidInUse)
    def put(self, data, card_id):
        """Bind an NFC card or wristband to one of one's own cards (read by the phone).

        A UID alone identifies the card but is easy to copy, so it pays at most
        `NFC_UID_LIMIT_MINOR` (25.00 by default) in one sale; above that the till must scan
        the app's pay code or the card itself. At a till, see `POST /v1/pos/nfc-bindings`.
        """
        p = current_principal()
        card = cards.owned_card(session(), card_id, p.customer_id)
        return card_out(cards.bind_nfc(session(), card, data["uid"]))


@blp.route("/pos/nfc-bindings")
class TillNfcBindings(MethodView):
    @blp.requires("cashier")
    @blp.arguments(schemas.TillBindNfcSchema)
    @blp.response(200, schemas.CardSchema)
    @blp.errors(InvalidCardDetails, PayCodeInvalid, TooManyAttempts, CardFrozen, CardInactive,
                InvalidNfcUid, NfcUidInUse)  # fmt: skip
    def post(self, data):
        """Bind an NFC card or wristband to the card its holder presents at this till.

        The holder proves they are here: the physical card's number with its security code,
        or a pay code from the owner's app (used up). A card's id or number alone is not
        enough, since a tag bound to a card pays from it. The till then watches the card's
        changes for a while, as after `POST /v1/pos/lookups`.
        """
        p = current_principal()
        s = session()
        card, how = cards.prove_presented(s, device_id=p.device_id, **data["card"])
        cards.bind_nfc(s, card, data["uid"])
        changes.card_presented(s, card, device_id=p.device_id, store_id=p.store_id, how=how)
        return card_out(card)


@blp.route("/me/cards")
class MyCards(MethodView):
    @blp.requires("customer")
    @blp.arguments(schemas.RegisterCardSchema)
    @blp.response(201, schemas.CardSchema)
    @blp.errors(InvalidCardDetails, TooManyAttempts, CardInactive)
    def post(self, data):
        """Register a physical card (number and security code) to one's account."""
        p = current_principal()
        card = cards.register_card(
            session(), customer_id=p.customer_id, number=data["number"],
            security_code=data["security_code"], client_ip=request.remote_addr or "unknown",
        )  # fmt: skip
        return card_out(card)


@blp.route("/me/pay-codes")
class MyPayCodes(MethodView):
    @blp.requires("customer")
    @blp.arguments(schemas.PayCodeRequestSchema)
    @blp.response(201, schemas.PayCodeSchema)
    @blp.errors(CardNotFound, CardFrozen)
    def post(self, data):
        """A code that pays from one card, once, for about a minute: show it at the till."""
        p = current_principal()
        s = session()
        card = cards.card_to_pay_with(s, p.customer_id, data["card_id"])
        code, pay_code = cards.issue_pay_code(s, card)
        return {"code": code, "card_id": card.id, "expires_at": pay_code.expires_at}


def holder_of(card: Card) -> dict | None:
    """What the till shows of the card's holder: a first name and the Stars, nothing more."""
    return customers.first_name_and_stars(session(), card.customer_id)


@blp.route("/pos/lookups")
class CardLookup(MethodView):
    @blp.requires("cashier")
    @blp.arguments(schemas.CardLookupRequestSchema)
    @blp.response(200, schemas.CardLookupSchema)
    @blp.errors(CustomerNotIdentified, PayCodeInvalid, CardFrozen)
    def post(self, data):
        """Find the card a shopper presents (its number, an NFC tag, or the app's pay code,
        which stays usable), e.g. to load it or show its balance; a gift card not sold yet
        answers `inactive`, with no balance.

        From now on this till's event stream also shows that card's changes, for a while.
        """
        p = current_principal()
        card, how = cards.identify(session(), looking=True, **data)
        changes.card_presented(session(), card, device_id=p.device_id, store_id=p.store_id,
                               how=how)  # fmt: skip
        return {**card_out(card), "holder": holder_of(card)}


@blp.route("/pos/gift-cards")
class GiftCardSales(MethodView):
    @blp.requires("cashier")
    @blp.idempotent()
    @blp.arguments(schemas.GiftCardSaleRequestSchema)
    @blp.response(201, schemas.GiftCardSaleSchema)
    @blp.errors(CustomerNotIdentified, NotAGiftCard, CardAlreadySold, CardFrozen,
                CurrencyMismatch, AmountOutOfRange, BalanceLimitExceeded)  # fmt: skip
    def post(self, data):
        """Sell a gift card from the box: it becomes active and is loaded with what the
        shopper paid (cash or bank card), together or not at all."""
        p = current_principal()
        s = session()
        card = cards.sell_gift_card(s, **data["card"])
        cards.check_currency(data["amount"]["currency"])
        top_up = payments.top_up_at_till(
            s, card=card, amount=data["amount"]["amount"], tender=data["tender"],
            store=stores.load_store(s, p.store_id), device_id=p.device_id, principal=p,
            idempotency_key=g.idempotency_key,
        )  # fmt: skip
        how = "card_number" if "card_number" in data["card"] else "nfc_uid"
        changes.card_presented(s, card, device_id=p.device_id, store_id=p.store_id, how=how)
        return {"card": card_out(card), "top_up": top_up_out(top_up, card)}


@blp.route("/admin/card-batches")
class CardBatches(MethodView):
    @blp.requires("staff", role="admin")
    @blp.arguments(schemas.BatchRequestSchema)
    @blp.response(201, schemas.BatchSchema)
    def post(self, data):
        """Issue a batch of physical gift cards. Their security codes are shown only now."""
        p = current_principal()
        issued = cards.issue_batch(
            session(), staff_id=p.staff_id, size=data["size"], note=data["note"]
        )
        return {
            "batch_id": issued[0][0].batch_id,
            "cards": [
                {"id": c.id, "number": c.number, "security_code": code} for c, code in issued
            ],
        }

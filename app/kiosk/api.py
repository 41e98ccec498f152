"""The kiosks' API: a kiosk reports taps and asks for pairing codes; its paired screen saves
products for the session's shopper; the shopper reads their saved list and timeline."""

from __future__ import annotations

from flask.views import MethodView

from app.auth.principal import current_principal
from app.catalog.services import ProductNotFound
from app.core.api import Blueprint
from app.core.db import session
from app.core.errors import ValidationFailed
from app.core.settings import settings
from app.kiosk import services as kiosk
from app.kiosk.errors import (
    KioskSessionNotFound,
    NoShopper,
    NotSaved,
    SessionOver,
)
from app.kiosk.schemas import (
    PairingCodeSchema,
    SaveArgsSchema,
    SavedListSchema,
    SavedSchema,
    TapAnswerSchema,
    TapArgsSchema,
    TimelineArgsSchema,
    TimelineSchema,
)
from app.stores import services as stores
from app.stores.models import Device

blp = Blueprint(
    "kiosk", __name__, url_prefix="/v1", description="NFC product kiosks and saved products."
)


def _kiosk() -> Device:
    return stores.load_device(session(), current_principal().device_id)


@blp.route("/kiosk/taps")
class Taps(MethodView):
    @blp.requires("device", device_kind="kiosk")
    @blp.arguments(TapArgsSchema)
    @blp.response(201, TapAnswerSchema)
    def post(self, data):
        """A tag tapped on the kiosk's reader: what it is (a product, a shelf sign, a loyalty
        card, or unknown or refused, with the reason), recorded once per `tap_ref` in the
        kiosk's current session, and the screen's payload, also sent to the kiosk's event
        stream as `kiosk.screen`. A garbled tag, an unknown one, another store's product or
        a frozen card are answered 201 too: the screen says what happened.

        A tap moves no value: it needs no `Idempotency-Key` (one sent is ignored). Its
        `tap_ref` makes a replay safe: the tap recorded first is answered again, with its
        screen as it would show now, and nothing more is recorded or sent."""
        read = kiosk.TapRead(
            tap_ref=data["tap_ref"],
            tapped_at=data["tapped_at"],
            uid=data["uid"],
            uris=tuple(data["uris"]),
            texts=tuple(data["texts"]),
            unreadable=data["unreadable"],
        )
        idle_s = settings().kiosk_session_idle_s
        tap, screen = kiosk.record_tap(session(), _kiosk(), read, idle_s=idle_s)
        return {"tap": tap, "screen": screen}


@blp.route("/kiosk/pairing-codes")
class PairingCodes(MethodView):
    @blp.requires("device", device_kind="kiosk")
    @blp.response(201, PairingCodeSchema)
    def post(self):
        """A one-use code, valid for ten minutes, that pairs a screen to this kiosk: staff
        type it on the screen's pairing page."""
        ttl_s = settings().kiosk_pairing_code_ttl_s
        code, row = kiosk.new_pairing_code(session(), _kiosk(), ttl_s)
        return {"code": code, "expires_at": row.expires_at}


@blp.route("/kiosk/saved")
class SaveForLater(MethodView):
    @blp.requires("kiosk_screen")
    @blp.arguments(SaveArgsSchema)
    @blp.response(201, SavedSchema)
    @blp.errors(KioskSessionNotFound, SessionOver, NoShopper, ProductNotFound)
    def post(self, data):
        """Save a product for later for the shopper who joined this kiosk session by tapping
        their card; it appears in their saved list on the website at once (`saved.added`)."""
        p = current_principal()
        saved = kiosk.save_for_later(
            session(),
            device_id=p.device_id,
            kiosk_session_id=data["session_id"],
            product_id=data["product_id"],
            idle_s=settings().kiosk_session_idle_s,
        )
        [item] = [i for i in kiosk.saved_of(session(), saved.customer_id)
                  if i["product"]["id"] == saved.product_id]  # fmt: skip
        return item


@blp.route("/me/saved")
class MySaved(MethodView):
    @blp.requires("customer")
    @blp.response(200, SavedListSchema)
    def get(self):
        """The products the shopper saved for later at a kiosk, newest first, each with its
        price now, the store where it was saved, and when."""
        return {"items": kiosk.saved_of(session(), current_principal().customer_id)}


@blp.route("/me/saved/<id:product_id>")
class MySavedProduct(MethodView):
    @blp.requires("customer")
    @blp.response(204)
    @blp.errors(NotSaved)
    def delete(self, product_id):
        """Take a product off the saved list."""
        kiosk.unsave(session(), current_principal().customer_id, product_id)


@blp.route("/me/timeline")
class MyTimeline(MethodView):
    @blp.requires("customer")
    @blp.arguments(TimelineArgsSchema, location="query")
    @blp.response(200, TimelineSchema)
    @blp.errors(ValidationFailed)
    def get(self, args):
        """The shopper's purchases, refunds, top-ups and kiosk taps in one list, newest
        first, a page at a time."""
        after = None
        if args["cursor"] is not None:
            after = kiosk.TimelineCursor.decode(args["cursor"])
            if after is None:
                raise ValidationFailed(
                    "That cursor is not one we gave out.", fields={"cursor": ["Unknown cursor."]}
                )
        items, more = kiosk.timeline(
            session(), current_principal().customer_id, limit=args["limit"], after=after
        )
        return {"items": items, "next_cursor": more.encode() if more else None}

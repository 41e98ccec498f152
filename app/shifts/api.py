"""Shifts at the till (cashier sessions): open with the float, close with the count."""

from __future__ import annotations

import marshmallow as ma
from flask.views import MethodView

from app.auth import services as auth
from app.auth.api import StaffSchema, staff_body
from app.auth.principal import current_principal
from app.cards.errors import CurrencyMismatch
from app.cards.services import check_currency
from app.core.api import Blueprint
from app.core.db import session
from app.core.schemas import MAX_AMOUNT_MINOR, MoneyOutSchema, MoneySchema, Schema, money
from app.core.settings import settings
from app.sales.api import StoreNameSchema
from app.shifts import services as shifts
from app.shifts.errors import NoOpenShift, ShiftClosed, ShiftNotFound, ShiftOpen
from app.shifts.models import Shift

blp = Blueprint("shifts", __name__, url_prefix="/v1", description="Shifts at the till.")


class CashSchema(MoneySchema):
    """Cash in a drawer: zero is an amount too."""

    amount = ma.fields.Integer(
        required=True,
        strict=True,
        validate=ma.validate.Range(min=0, max=MAX_AMOUNT_MINOR),
        metadata={"description": "Minor units (cents), a whole number, 0 or more."},
    )


class OpenShiftSchema(Schema):
    float = ma.fields.Nested(
        CashSchema, required=True, metadata={"description": "The cash in the drawer now."}
    )


class CloseShiftSchema(Schema):
    counted = ma.fields.Nested(
        CashSchema, required=True, metadata={"description": "The cash counted in the drawer."}
    )


class TallySchema(Schema):
    count = ma.fields.Integer()
    total = ma.fields.Nested(MoneyOutSchema)
    by_tender = ma.fields.Dict(keys=ma.fields.String(), values=ma.fields.Nested(MoneyOutSchema))


class ReportSchema(Schema):
    store = ma.fields.Nested(StoreNameSchema)
    till = ma.fields.String()
    cashier = ma.fields.String(metadata={"description": "Who opened the shift (first name)."})
    closed_by = ma.fields.String(metadata={"description": "Who closed it (first name)."})
    opened_at = ma.fields.String(metadata={"description": "ISO 8601, UTC."})
    closed_at = ma.fields.String(metadata={"description": "ISO 8601, UTC."})
    float = ma.fields.Nested(MoneyOutSchema)
    sales = ma.fields.Nested(TallySchema)
    refunds = ma.fields.Nested(TallySchema)
    top_ups = ma.fields.Nested(TallySchema, metadata={"description": "Gift cards sold too."})
    expected_cash = ma.fields.Nested(
        MoneyOutSchema,
        metadata={"description": "float + cash sales - cash refunds + cash top-ups"},
    )
    counted_cash = ma.fields.Nested(MoneyOutSchema)
    difference = ma.fields.Nested(
        MoneyOutSchema, metadata={"description": "counted - expected: negative is short."}
    )


class ShiftSchema(Schema):
    id = ma.fields.Integer()
    device_id = ma.fields.Integer()
    store_id = ma.fields.Integer()
    cashier = ma.fields.Nested(StaffSchema)
    opened_at = ma.fields.DateTime()
    float = ma.fields.Nested(MoneyOutSchema)
    status = ma.fields.String(metadata={"description": "`open` or `closed`."})
    closed_at = ma.fields.DateTime(allow_none=True)
    report = ma.fields.Nested(ReportSchema, allow_none=True)


def shift_body(shift: Shift) -> dict:
    return {
        "id": shift.id,
        "device_id": shift.device_id,
        "store_id": shift.store_id,
        "cashier": staff_body(auth.load_staff(session(), shift.cashier_id)),
        "opened_at": shift.opened_at,
        "float": money(shift.float_minor, shift.currency),
        "status": shift.status,
        "closed_at": shift.closed_at,
        "report": shift.report,
    }


@blp.route("/pos/shifts")
class Shifts(MethodView):
    @blp.requires("cashier")
    @blp.idempotent()
    @blp.arguments(OpenShiftSchema)
    @blp.response(201, ShiftSchema)
    @blp.errors(ShiftOpen, CurrencyMismatch)
    def post(self, data):
        """Open a shift at this till with the cash float in the drawer. One open shift per
        till: `shift_open` names the open one in `details.shift_id`."""
        check_currency(data["float"]["currency"])
        shift = shifts.open_shift(
            session(), current_principal(), data["float"]["amount"], currency=settings().currency
        )
        return shift_body(shift)


@blp.route("/pos/shifts/current")
class CurrentShift(MethodView):
    @blp.requires("cashier")
    @blp.response(200, ShiftSchema)
    @blp.errors(NoOpenShift)
    def get(self):
        """This till's open shift."""
        return shift_body(shifts.current_shift(session(), current_principal()))


@blp.route("/pos/shifts/<id:shift_id>")
class ShiftView(MethodView):
    @blp.requires("cashier")
    @blp.response(200, ShiftSchema)
    @blp.errors(ShiftNotFound)
    def get(self, shift_id):
        """A shift of this store's tills, with its report once closed."""
        return shift_body(shifts.shift_in_store(session(), current_principal(), shift_id))


@blp.route("/pos/shifts/<id:shift_id>/close")
class CloseShift(MethodView):
    @blp.requires("cashier")
    @blp.idempotent()
    @blp.arguments(CloseShiftSchema)
    @blp.response(200, ShiftSchema)
    @blp.errors(ShiftNotFound, ShiftClosed, CurrencyMismatch)
    def post(self, data, shift_id):
        """Close this till's open shift with the cash counted in the drawer. The report (sales,
        refunds and top-ups by tender, expected and counted cash, the difference) is kept
        with the shift. The cashier session that closes it ends with it: sign in again to
        open the next."""
        check_currency(data["counted"]["currency"])
        shift = shifts.close_shift(
            session(), current_principal(), shift_id, data["counted"]["amount"]
        )
        return shift_body(shift)

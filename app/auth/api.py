"""Signing up, logging in and out; cashiers signing in on a till."""

from __future__ import annotations

import marshmallow as ma
from flask import request
from flask.views import MethodView

from app.auth import services as auth
from app.auth.errors import (
    EmailTaken,
    InvalidCredentials,
    InvalidStaffPin,
    TooManyAttempts,
    WeakPassword,
)
from app.auth.principal import current_principal
from app.core.api import Blueprint
from app.core.db import session
from app.core.schemas import Email, Schema, Text
from app.core.settings import settings
from app.customers import services as customers
from app.customers.api import MeSchema, me_body
from app.stores import services as stores

blp = Blueprint("auth", __name__, url_prefix="/v1", description="Logins and sessions.")


class SignupSchema(Schema):
    email = Email(required=True, validate=ma.validate.Length(max=254))
    password = Text(required=True, validate=ma.validate.Length(min=10, max=200))
    name = Text(required=True, validate=ma.validate.Length(min=1, max=200))


class LoginSchema(Schema):
    email = Text(required=True, validate=ma.validate.Length(max=254))
    password = Text(required=True, validate=ma.validate.Length(max=200))
    account = Text(
        load_default="shopper",
        validate=ma.validate.OneOf(["shopper", "staff"]),
        metadata={"description": "`shopper` (default) or `staff`."},
    )


class StaffSchema(Schema):
    id = ma.fields.Integer()
    name = ma.fields.String()
    email = ma.fields.String()
    role = ma.fields.String()
    store_id = ma.fields.Integer(allow_none=True)


class SessionSchema(Schema):
    token = ma.fields.String(metadata={"description": "Send as `Authorization: Bearer ...`."})
    customer = ma.fields.Nested(MeSchema)
    staff = ma.fields.Nested(StaffSchema)


def staff_body(staff) -> dict:
    return {
        "id": staff.id,
        "name": staff.name,
        "email": staff.email,
        "role": staff.role,
        "store_id": staff.store_id,
    }


@blp.route("/auth/signup")
class Signup(MethodView):
    @blp.arguments(SignupSchema)
    @blp.response(201, SessionSchema)
    @blp.errors(EmailTaken, WeakPassword)
    def post(self, data):
        """Create a shopper account, with a digital card and a Stars balance. Anyone.

        The password needs 10 characters or more, and no rules of composition; it is refused
        (`weak_password`, with `details.reason`) when it is one of the most common or breached
        passwords or a dictionary word, repetitive or sequential, or close to one's email or
        name.
        """
        token, customer = customers.sign_up(session(), settings(), **data)
        return {"token": token, "customer": me_body(customer)}


@blp.route("/auth/login")
class Login(MethodView):
    @blp.arguments(LoginSchema)
    @blp.response(200, SessionSchema)
    @blp.errors(InvalidCredentials, TooManyAttempts)
    def post(self, data):
        """Log in with email and password, as a shopper or as staff. Anyone."""
        ip = request.remote_addr or "unknown"
        if data["account"] == "staff":
            token, staff = auth.log_in_staff(
                session(), settings(), data["email"], data["password"], ip
            )
            return {"token": token, "staff": staff_body(staff)}
        token, customer = auth.log_in_customer(
            session(), settings(), data["email"], data["password"], ip
        )
        return {"token": token, "customer": me_body(customer)}


@blp.route("/auth/logout")
class Logout(MethodView):
    @blp.requires("customer", "staff", "cashier")
    @blp.response(204)
    def post(self):
        """End this login (or cashier session): its token stops working at once."""
        auth.revoke(session(), current_principal().token_id)


class CashierSignInSchema(Schema):
    staff_code = Text(required=True, validate=ma.validate.Length(min=1, max=16))
    pin = Text(required=True, validate=ma.validate.Regexp(r"^\d{4,8}$"))


class CashierSessionSchema(Schema):
    token = ma.fields.String()
    expires_at = ma.fields.DateTime()
    cashier = ma.fields.Nested(StaffSchema)
    store_id = ma.fields.Integer()
    device_id = ma.fields.Integer()


@blp.route("/pos/sessions")
class CashierSessions(MethodView):
    @blp.requires("device", device_kind="pos")
    @blp.arguments(CashierSignInSchema)
    @blp.response(201, CashierSessionSchema)
    @blp.errors(InvalidStaffPin, TooManyAttempts)
    def post(self, data):
        """A cashier signs in on this till with staff code and PIN.

        The session is bound to this device, its store and the cashier; every till call
        (sales, refunds, top-ups) uses it.
        """
        p = current_principal()
        s = session()
        device = stores.load_device(s, p.device_id)
        token, row, staff = auth.sign_in_cashier(
            s, settings(), device, data["staff_code"], data["pin"]
        )
        return {
            "token": token,
            "expires_at": row.expires_at,
            "cashier": staff_body(staff),
            "store_id": device.store_id,
            "device_id": device.id,
        }

"""Stores and devices: listed for everyone, managed by admins."""

from __future__ import annotations

import marshmallow as ma
from flask.views import MethodView
from sqlalchemy.exc import IntegrityError

from app.core.api import Blueprint
from app.core.db import session
from app.core.errors import Conflict
from app.core.schemas import Id, Schema, Text
from app.core.settings import settings
from app.stores import services as stores
from app.stores.services import DeviceNotFound, StoreNotFound

blp = Blueprint("stores", __name__, url_prefix="/v1", description="Stores and their devices.")


class StoreSchema(Schema):
    id = ma.fields.Integer(dump_only=True)
    code = Text(
        required=True, validate=ma.validate.Regexp(r"^[a-z0-9-]{1,40}$", error="a-z, 0-9, -")
    )
    name = Text(required=True, validate=ma.validate.Length(min=1, max=200))
    address = Text(load_default="", validate=ma.validate.Length(max=400))


class StoreListSchema(Schema):
    items = ma.fields.List(ma.fields.Nested(StoreSchema))


class DeviceRequestSchema(Schema):
    store_id = Id(required=True)
    kind = Text(required=True, validate=ma.validate.OneOf(["pos", "kiosk"]))
    name = Text(required=True, validate=ma.validate.Length(min=1, max=200))


class DeviceSchema(Schema):
    id = ma.fields.Integer()
    store_id = ma.fields.Integer()
    kind = ma.fields.String()
    name = ma.fields.String()
    secret = ma.fields.String(
        metadata={"description": "The device's credential, shown only now: "
                  "`Authorization: Bearer <secret>`."}
    )  # fmt: skip


class DeviceStateSchema(Schema):
    id = ma.fields.Integer()
    store_id = ma.fields.Integer()
    kind = ma.fields.String()
    name = ma.fields.String()
    active = ma.fields.Boolean()


class StoreCodeTaken(Conflict):
    code = "store_code_taken"
    message = "Another store has that code."


@blp.route("/stores")
class Stores(MethodView):
    @blp.response(200, StoreListSchema)
    def get(self):
        """Every store. Anyone."""
        return {"items": stores.stores(session())}


@blp.route("/admin/stores")
class AdminStores(MethodView):
    @blp.requires("staff", role="admin")
    @blp.arguments(StoreSchema)
    @blp.response(201, StoreSchema)
    @blp.errors(StoreCodeTaken)
    def post(self, data):
        """Open a store, with its own ledger accounts for takings, cash and bank cards."""
        s = session()
        try:
            with s.begin_nested():
                return stores.create_store(s, currency=settings().currency, **data)
        except IntegrityError:
            raise StoreCodeTaken() from None


@blp.route("/admin/devices")
class AdminDevices(MethodView):
    @blp.requires("staff", role="admin")
    @blp.arguments(DeviceRequestSchema)
    @blp.response(201, DeviceSchema)
    @blp.errors(StoreNotFound)
    def post(self, data):
        """Register a POS terminal or a kiosk to one store; its secret is shown once."""
        device, secret = stores.register_device(session(), **data)
        return {
            "id": device.id,
            "store_id": device.store_id,
            "kind": device.kind,
            "name": device.name,
            "secret": secret,
        }


@blp.route("/admin/devices/<id:device_id>/deactivate")
class AdminDeviceDeactivate(MethodView):
    @blp.requires("staff", role="admin")
    @blp.response(200, DeviceStateSchema)
    @blp.errors(DeviceNotFound)
    def post(self, device_id):
        """Switch a device off (lost, stolen, retired): its secret and every cashier session
        on it stop working at once."""
        return stores.deactivate_device(session(), device_id)

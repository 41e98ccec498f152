"""Webhooks for outside systems: admins register them and watch their deliveries."""

from __future__ import annotations

import marshmallow as ma
from flask import Flask
from flask.views import MethodView
from sqlalchemy.engine import Engine

from app.auth.principal import current_principal
from app.core.api import Blueprint
from app.core.db import session
from app.core.schemas import List, PageArgsSchema, Schema, Text, Url, decode_cursor
from app.events.api import run_beside_hub
from app.events.changes import EVENT_TYPES
from app.webhooks import services as webhooks
from app.webhooks.models import WebhookAttempt, WebhookDelivery
from app.webhooks.services import DeliveryNotFound, WebhookNotFound
from app.webhooks.worker import WebhookWorker

blp = Blueprint(
    "webhooks", __name__, url_prefix="/v1/admin",
    description="Webhooks: events pushed to outside systems, signed and retried.",
)  # fmt: skip


class WebhookRequestSchema(Schema):
    url = Url(
        required=True,
        schemes={"http", "https"},
        require_tld=False,
        validate=ma.validate.Length(max=500),
    )
    event_types = List(
        Text(validate=ma.validate.OneOf(EVENT_TYPES)),
        required=True,
        min_items=1,
        max_items=len(EVENT_TYPES),
    )


class WebhookSchema(Schema):
    id = ma.fields.Integer()
    url = ma.fields.String()
    event_types = ma.fields.List(ma.fields.String())
    active = ma.fields.Boolean()
    created_at = ma.fields.DateTime()


class NewWebhookSchema(WebhookSchema):
    secret = ma.fields.String(
        metadata={"description": "Signs every delivery; shown only now. See the "
                  "`Omnicard-Signature` header: `t=<unix>,v1=HMAC-SHA256(secret, t.body)`."}
    )  # fmt: skip


class WebhookListSchema(Schema):
    items = ma.fields.List(ma.fields.Nested(WebhookSchema))


class AttemptSchema(Schema):
    at = ma.fields.DateTime()
    status_code = ma.fields.Integer(allow_none=True)
    error = ma.fields.String(allow_none=True)
    duration_ms = ma.fields.Integer()


class DeliverySchema(Schema):
    id = ma.fields.Integer()
    event_id = ma.fields.Integer()
    event_type = ma.fields.String()
    account_key = ma.fields.String()
    status = ma.fields.String(metadata={"description": "`pending`, `delivered`, `failed`."})
    attempts = ma.fields.Integer()
    next_attempt_at = ma.fields.DateTime()
    replay_of_id = ma.fields.Integer(allow_none=True)
    delivered_at = ma.fields.DateTime(allow_none=True)
    attempt_log = ma.fields.List(ma.fields.Nested(AttemptSchema))


class DeliveryPageSchema(Schema):
    items = ma.fields.List(ma.fields.Nested(DeliverySchema))
    next_cursor = ma.fields.String(allow_none=True)


def delivery_body(d: WebhookDelivery, attempts: list[WebhookAttempt]) -> dict:
    return {
        "id": d.id, "event_id": d.event_id, "event_type": d.event_type,
        "account_key": d.account_key, "status": d.status, "attempts": d.attempts,
        "next_attempt_at": d.next_attempt_at, "replay_of_id": d.replay_of_id,
        "delivered_at": d.delivered_at,
        "attempt_log": [{"at": a.at, "status_code": a.status_code, "error": a.error,
                         "duration_ms": a.duration_ms} for a in attempts],
    }  # fmt: skip


@blp.route("/webhooks")
class Webhooks(MethodView):
    @blp.requires("staff", role="admin")
    @blp.arguments(WebhookRequestSchema)
    @blp.response(201, NewWebhookSchema)
    def post(self, data):
        """Register a webhook for some event types; its signing secret is shown once."""
        return webhooks.register(session(), staff_id=current_principal().staff_id, **data)

    @blp.requires("staff", role="admin")
    @blp.response(200, WebhookListSchema)
    def get(self):
        """Every webhook."""
        return {"items": webhooks.every_webhook(session())}


@blp.route("/webhooks/<id:webhook_id>")
class WebhookView(MethodView):
    @blp.requires("staff", role="admin")
    @blp.response(204)
    @blp.errors(WebhookNotFound)
    def delete(self, webhook_id):
        """Switch a webhook off: nothing new is queued for it, and what waits is dropped."""
        webhooks.switch_off(session(), webhook_id)


@blp.route("/webhooks/<id:webhook_id>/deliveries")
class Deliveries(MethodView):
    @blp.requires("staff", role="admin")
    @blp.arguments(PageArgsSchema, location="query")
    @blp.response(200, DeliveryPageSchema)
    @blp.errors(WebhookNotFound)
    def get(self, args, webhook_id):
        """Deliveries with every attempt, newest first, a page at a time."""
        s = session()
        webhooks.load(s, webhook_id)
        rows = webhooks.deliveries(
            s, webhook_id, limit=args["limit"], below=decode_cursor(args["cursor"])
        )
        page = rows[: args["limit"]]
        return {
            "items": [delivery_body(d, attempts) for d, attempts in page],
            "next_cursor": str(page[-1][0].id) if len(rows) > args["limit"] else None,
        }


@blp.route("/webhooks/<id:webhook_id>/deliveries/<id:delivery_id>/replay")
class Replay(MethodView):
    @blp.requires("staff", role="admin")
    @blp.response(201, DeliverySchema)
    @blp.errors(WebhookNotFound, DeliveryNotFound)
    def post(self, webhook_id, delivery_id):
        """Send a delivery again (as a new delivery, after the account's others)."""
        webhooks.load(session(), webhook_id)
        return delivery_body(webhooks.replay(session(), webhook_id, delivery_id), [])


def init_app(app: Flask) -> None:
    """Every serving process sends due deliveries, from a worker beside its event hub."""

    def worker(engine: Engine) -> WebhookWorker:
        cfg = app.config
        return WebhookWorker(engine, {
            "base_s": cfg["WEBHOOK_BACKOFF_BASE_S"], "cap_s": cfg["WEBHOOK_BACKOFF_CAP_S"],
            "max_attempts": cfg["WEBHOOK_MAX_ATTEMPTS"], "timeout_s": cfg["WEBHOOK_TIMEOUT_S"],
        })  # fmt: skip

    run_beside_hub(app, worker)

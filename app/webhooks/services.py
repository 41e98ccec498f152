"""Webhooks: signed, retried, ordered per account, visible and replayable.

Deliveries are written by the event sequencer in the same transaction that gives events their
positions (this module's ``enqueue`` follows every sequencing round), so every event reaches
every matching webhook exactly once (replays aside). A
worker sends what is due; a delivery waits while an earlier one for the same account and
webhook is still pending, so an outside system sees each account's events in order.

Each request carries ``Omnicard-Signature: t=<unix time>,v1=<hex>``, where ``v1`` is
HMAC-SHA256 of ``"<t>.<body>"`` under the webhook's secret: check it, and refuse a ``t`` far
from now, to reject forgeries and replays by a third party.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
import urllib.error
import urllib.request
from datetime import timedelta

from sqlalchemy import and_, exists, func, insert, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session, aliased

from app.core.db import read_only
from app.core.errors import NotFound
from app.core.types import utcnow
from app.events.outbox import Delivered
from app.events.sequencing import Follower, follow_sequencing
from app.webhooks.models import Webhook, WebhookAttempt, WebhookDelivery

SIGNATURE_HEADER = "Omnicard-Signature"


class WebhookNotFound(NotFound):
    code = "webhook_not_found"
    message = "No such webhook."


class DeliveryNotFound(NotFound):
    code = "delivery_not_found"
    message = "No such delivery for this webhook."


def sign(secret: str, timestamp: int, body: str) -> str:
    digest = hmac.new(secret.encode(), f"{timestamp}.{body}".encode(), hashlib.sha256)
    return f"t={timestamp},v1={digest.hexdigest()}"


def verify_signature(secret: str, header: str, body: str, *, tolerance_s: int = 300) -> bool:
    """What a receiver does (and the tests): check the MAC and that it is recent."""
    parts = dict(part.split("=", 1) for part in header.split(",") if "=" in part)
    try:
        timestamp = int(parts["t"])
    except (KeyError, ValueError):
        return False
    expected = sign(secret, timestamp, body).split("v1=", 1)[1]
    fresh = abs(time.time() - timestamp) <= tolerance_s
    return fresh and hmac.compare_digest(expected, parts.get("v1", ""))


def register(s: Session, *, url: str, event_types: list[str], staff_id: int) -> Webhook:
    hook = Webhook(
        url=url, event_types=sorted(set(event_types)), secret="whsec_" + secrets.token_urlsafe(32),
        created_by_staff_id=staff_id,
    )  # fmt: skip
    s.add(hook)
    s.flush()
    return hook


#: Whose events a delivery belongs to, for keeping each account's deliveries in order: the
#: first of these the event names ("customer:7"), else "all".
ACCOUNT_KEYS = ("customer", "store", "device")


def account_key(e: Delivered) -> str:
    for name in ACCOUNT_KEYS:
        if (value := getattr(e, f"{name}_id")) is not None:
            return f"{name}:{value}"
    return "all"


def deliveries_for(events: list[Delivered], hooks) -> list[dict]:
    """The delivery rows for ``events``, given the active webhooks as (id, event types)."""
    rows = []
    for e in events:
        matching = [hook_id for hook_id, types in hooks if e.type in types]
        if not matching:
            continue
        body = json.dumps(e.wire(), separators=(",", ":"))
        rows += [
            {"webhook_id": hook_id, "event_id": e.position, "event_type": e.type,
             "account_key": account_key(e), "body": body, "status": "pending",
             "attempts": 0, "next_attempt_at": utcnow(), "created_at": utcnow()}
            for hook_id in matching
        ]  # fmt: skip
    return rows


def enqueue(connection: Connection, events: list[Delivered]) -> int:
    """Deliveries for ``events``, just sequenced, inside the sequencer's transaction (on
    SQLite; on PostgreSQL the sequencing statement writes them with ``ENQUEUE_SQL``). Returns
    how many were written."""
    if not events:
        return 0
    hooks = connection.execute(select(Webhook.id, Webhook.event_types).where(Webhook.active)).all()
    rows = deliveries_for(events, hooks)
    if rows:
        connection.execute(insert(WebhookDelivery), rows)
    return len(rows)


#: ``enqueue`` as a part of the sequencing statement on PostgreSQL (a round there is one
#: statement: see ``app.events.sequencing``), over the events it has just ``logged``: the same
#: webhooks, account key and body, the body being the event as a stream sends it.
_ACCOUNT_KEY_SQL = " ".join(
    f"WHEN logged.{name}_id IS NOT NULL THEN '{name}:' || logged.{name}_id" for name in ACCOUNT_KEYS
)
ENQUEUE_SQL = f"""
    INSERT INTO webhook_deliveries (webhook_id, event_id, event_type, account_key, body, status,
                                    attempts, next_attempt_at, created_at)
    SELECT hook.id, logged.position, logged.type,
           CASE {_ACCOUNT_KEY_SQL} ELSE 'all' END,
           json_build_object(
               'id', logged.position, 'type', logged.type,
               'created_at', to_char(logged.created_at AT TIME ZONE 'UTC',
                                     'YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"'),
               'data', logged.payload)::text,
           'pending', 0, now(), now()
    FROM logged JOIN webhooks AS hook ON hook.active AND hook.event_types ? logged.type
    ORDER BY logged.position, hook.id  -- a delivery's id orders it within its account
    RETURNING id"""

follow_sequencing(Follower(sql=ENQUEUE_SQL, write=enqueue))


def _next_of_its_account():
    """A pending delivery that may go when due: none of its account's earlier ones waits."""
    earlier = aliased(WebhookDelivery)
    return ~exists().where(
        and_(
            earlier.webhook_id == WebhookDelivery.webhook_id,
            earlier.account_key == WebhookDelivery.account_key,
            earlier.id < WebhookDelivery.id,
            earlier.status == "pending",
        )
    )


def _due(connection: Connection, limit: int) -> list:
    query = (
        select(WebhookDelivery.id)
        .where(
            WebhookDelivery.status == "pending",
            WebhookDelivery.next_attempt_at <= utcnow(),
            _next_of_its_account(),
        )
        .order_by(WebhookDelivery.id)
        .limit(limit)
    )
    if connection.dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True, of=WebhookDelivery)
    return list(connection.execute(query).scalars())


def seconds_until_next_due(engine) -> float | None:
    """How long until a pending delivery may be sent (None: nothing pending). One that waits
    for an earlier one of its account does not count: that one's time counts."""
    with read_only(engine) as c:
        soonest = c.execute(
            select(func.min(WebhookDelivery.next_attempt_at)).where(
                WebhookDelivery.status == "pending", _next_of_its_account()
            )
        ).scalar()
    if soonest is None:
        return None
    return max(0.0, (soonest - utcnow()).total_seconds())


def backoff(attempts: int, base_s: float, cap_s: float) -> timedelta:
    return timedelta(seconds=min(cap_s, base_s * 2 ** (attempts - 1)))


def deliver_due(engine, *, base_s: float, cap_s: float, max_attempts: int,
                timeout_s: float, limit: int = 50) -> int:  # fmt: skip
    """Send what is due now. Returns how many deliveries were tried.

    A delivery is claimed (leased for the length of a request) in one short transaction, sent
    with no transaction open, and its outcome recorded in another: a slow receiver holds no
    lock, and a worker that dies mid-send leaves a lease that runs out and is retried.
    """
    tried = 0
    while tried < limit:
        with engine.begin() as c:
            ids = _due(c, 1)
            if not ids:
                return tried
            delivery = c.execute(
                select(WebhookDelivery.id, WebhookDelivery.webhook_id, WebhookDelivery.body,
                       WebhookDelivery.event_type, WebhookDelivery.attempts)
                .where(WebhookDelivery.id == ids[0])
            ).one()  # fmt: skip
            hook = c.execute(select(Webhook.url, Webhook.secret, Webhook.active)
                             .where(Webhook.id == delivery.webhook_id)).one()  # fmt: skip
            lease = utcnow() + timedelta(seconds=2 * timeout_s + 1)  # outlives the request
            c.execute(update(WebhookDelivery).where(WebhookDelivery.id == delivery.id)
                      .values(next_attempt_at=lease))  # fmt: skip

        status_code, error, took_ms = _send(hook.url, hook.secret, delivery, timeout_s)

        attempts = delivery.attempts + 1
        values: dict = {"attempts": attempts}
        if status_code is not None and 200 <= status_code < 300:
            values |= {"status": "delivered", "delivered_at": utcnow()}
        elif attempts >= max_attempts or not hook.active:
            values |= {"status": "failed"}
        else:
            values |= {"next_attempt_at": utcnow() + backoff(attempts, base_s, cap_s)}
        with engine.begin() as c:
            c.execute(insert(WebhookAttempt), {
                "delivery_id": delivery.id, "at": utcnow(), "status_code": status_code,
                "error": error, "duration_ms": took_ms})  # fmt: skip
            c.execute(update(WebhookDelivery).where(WebhookDelivery.id == delivery.id)
                      .values(**values))  # fmt: skip
        tried += 1
    return tried


def _send(url: str, secret: str, delivery, timeout_s: float) -> tuple[int | None, str | None, int]:
    body = delivery.body
    request = urllib.request.Request(url, data=body.encode(), method="POST", headers={
        "Content-Type": "application/json",
        "User-Agent": "Omnicard-Webhooks/1",
        "Omnicard-Event": delivery.event_type,
        "Omnicard-Delivery": str(delivery.id),
        SIGNATURE_HEADER: sign(secret, int(time.time()), body),
    })  # fmt: skip
    started = time.monotonic()
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            status, error = response.status, None
    except urllib.error.HTTPError as refused:
        status, error = refused.code, f"HTTP {refused.code}"
    except (urllib.error.URLError, OSError, ValueError) as failed:
        status, error = None, str(getattr(failed, "reason", failed))[:300]
    return status, error, int((time.monotonic() - started) * 1000)


def replay(s: Session, webhook_id: int, delivery_id: int) -> WebhookDelivery:
    """Send a delivery again, as a new delivery at the end of its account's queue.

    Raises DeliveryNotFound."""
    original = s.get(WebhookDelivery, delivery_id)
    if original is None or original.webhook_id != webhook_id:
        raise DeliveryNotFound()
    again = WebhookDelivery(
        webhook_id=webhook_id, event_id=original.event_id, event_type=original.event_type,
        account_key=original.account_key, body=original.body, status="pending", attempts=0,
        next_attempt_at=utcnow(), replay_of_id=original.id,
    )  # fmt: skip
    s.add(again)
    s.flush()
    return again


def load(s: Session, webhook_id: int) -> Webhook:
    hook = s.get(Webhook, webhook_id)
    if hook is None:
        raise WebhookNotFound()
    return hook


def every_webhook(s: Session) -> list[Webhook]:
    return list(s.scalars(select(Webhook).order_by(Webhook.id)))


def switch_off(s: Session, webhook_id: int) -> Webhook:
    """Nothing new is queued for it, and what waits is dropped. Raises WebhookNotFound."""
    hook = load(s, webhook_id)
    hook.active = False
    return hook


def deliveries(
    s: Session, webhook_id: int, *, limit: int, below: int | None = None
) -> list[tuple[WebhookDelivery, list[WebhookAttempt]]]:
    """The webhook's deliveries, newest first, each with its attempts (oldest first): up to
    ``limit + 1`` (one more than asked, so the caller knows whether a next page exists),
    each with an id below ``below``."""
    query = (
        select(WebhookDelivery)
        .where(WebhookDelivery.webhook_id == webhook_id)
        .order_by(WebhookDelivery.id.desc())
        .limit(limit + 1)
    )
    if below is not None:
        query = query.where(WebhookDelivery.id < below)
    rows = list(s.scalars(query))
    attempts: dict[int, list[WebhookAttempt]] = {d.id: [] for d in rows[:limit]}
    for a in s.scalars(
        select(WebhookAttempt)
        .where(WebhookAttempt.delivery_id.in_(list(attempts)))
        .order_by(WebhookAttempt.id)
    ):
        attempts[a.delivery_id].append(a)
    return [(d, attempts.get(d.id, [])) for d in rows]

"""``GET /v1/events``: the live stream of what the caller may see, as Server-Sent Events.

Resume after a dropped connection with the ``Last-Event-ID`` header (browsers send it by
themselves) or ``?last_event_id=``: the stream first replays every event after it, then goes
live, with no gap and no duplicate. Idle streams get a heartbeat comment.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator
from contextlib import nullcontext, suppress

import marshmallow as ma
from flask import Flask, current_app, request
from flask.views import MethodView
from sqlalchemy import and_, or_, select
from sqlalchemy.engine import Engine

from app.auth.principal import Principal, current_principal
from app.core.api import Blueprint
from app.core.db import database, read_only
from app.core.errors import ValidationFailed
from app.core.schemas import MAX_ID, Schema
from app.core.types import utcnow
from app.events.fanout import PRESENTED_FOR, LiveSocket, Subscriber
from app.events.hub import Companion, EventHub
from app.events.models import Event
from app.events.outbox import Delivered, fetch_after

blp = Blueprint("events", __name__, url_prefix="/v1", description="The live event stream.")


class StreamArgsSchema(Schema):
    last_event_id = ma.fields.Integer(
        load_default=None,
        validate=ma.validate.Range(min=0, max=MAX_ID),
        metadata={"description": "Resume after this event (or send `Last-Event-ID`)."},
    )


def hub(app: Flask | None = None) -> EventHub | None:
    """This process's event hub, started on first use (after any fork)."""
    app = app or current_app
    holder = app.extensions["omnicard.events"]
    if holder["hub"] is None and holder["enabled"]:
        with holder["lock"]:
            if holder["hub"] is None:
                engine = database(app).engine
                dsn = None
                if engine.dialect.name == "postgresql":
                    dsn = engine.url.set(drivername="postgresql").render_as_string(
                        hide_password=False
                    )
                cfg = app.config
                holder["hub"] = EventHub(
                    engine, dsn, companions=[make(engine) for make in holder["companions"]],
                    heartbeat_s=cfg["EVENTS_HEARTBEAT_S"], queue_limit=cfg["EVENTS_QUEUE_LIMIT"],
                    poll_s=cfg["EVENTS_POLL_S"], asks_host=cfg["EVENTS_ASKS_HOST"],
                ).start()  # fmt: skip
    return holder["hub"]


def run_beside_hub(app: Flask, make: Callable[[Engine], Companion]) -> None:
    """Have ``make(engine)`` give a thread to run as long as this process's hub (the webhook
    worker): called by the part that owns it, which the events do not know."""
    app.extensions["omnicard.events"]["companions"].append(make)


def subscriber_for(p: Principal) -> Subscriber:
    if p.kind == "customer":
        return Subscriber(customer_id=p.customer_id)
    if p.kind == "staff":
        return Subscriber(everything=True)
    if p.kind == "kiosk_screen" or p.device_kind == "kiosk":
        return Subscriber(device_id=p.device_id)
    return Subscriber(store_id=p.store_id, device_id=p.device_id)


def presented_here(connection, device_id: int) -> dict[int, object]:
    rows = connection.execute(
        select(Event.card_id, Event.created_at).where(
            Event.type == "card.presented",
            Event.device_id == device_id,
            Event.created_at > utcnow() - PRESENTED_FOR,
        )
    )
    return {card_id: at for card_id, at in rows}


def visible_to(sub: Subscriber):
    """The SQL twin of ``Subscriber.may_see``, for replaying from the database."""
    if sub.everything:
        return []
    clauses = []
    if sub.customer_id is not None:
        clauses.append(Event.customer_id == sub.customer_id)
    if sub.device_id is not None:
        clauses.append(Event.device_id == sub.device_id)
    if sub.store_id is not None:
        clauses.append(and_(Event.store_id == sub.store_id, Event.type != "card.presented"))
    if sub.watched:
        clauses.append(and_(Event.card_id.in_(list(sub.watched)), Event.type != "card.presented"))
    return [or_(*clauses)]


def stream(
    app: Flask, environ: dict, event_hub: EventHub, sub: Subscriber, last: int | None
) -> Iterator[bytes]:
    """The response body: what was missed after ``last`` (None: from now on), then live
    events as the hub hands them over. It subscribes when the server starts sending it (a
    response that is never sent, to a HEAD request, leaves no subscriber behind)."""
    heartbeat_s = app.config["EVENTS_HEARTBEAT_S"]
    engine = database(app).engine

    def replay(after: int) -> Iterator[Delivered]:
        while True:
            with read_only(engine) as c:
                if sub.device_id is not None and not sub.everything:
                    event_hub.watch(sub, presented_here(c, sub.device_id))
                page = fetch_after(c, after, 500, *visible_to(sub))
            yield from page
            if len(page) < 500:
                return
            after = page[-1].position

    event_hub.subscribe(sub)
    try:
        sub.last = event_hub.sequenced_position() if last is None else last
        yield b"retry: 1000\n\n"  # the server has sent the headers once this has gone
        for e in replay(sub.last):
            yield e.sse
            sub.last = e.position
        sub.sent_at = time.monotonic()
        out = sub.out = live_socket(app, environ)  # from now on the hub may write to it
        while True:
            sub.ready.wait()
            with out.lock if out is not None else nullcontext():
                events, behind = sub.take()
                if sub.closed:
                    if out is not None:  # the end of a chunk the hub began, if any
                        with suppress(OSError):
                            out.send(b"")
                    return
                if behind:
                    events = list(replay(sub.last))
                fresh = [e for e in events if e.position > sub.last]
                if fresh:  # all that waited, in one write
                    body = b"".join([e.sse for e in fresh])
                    sub.last = fresh[-1].position
                elif sub.idle_for(time.monotonic()) >= heartbeat_s:
                    body = b": heartbeat\n\n"
                elif out is not None and out.unsent:
                    body = b""
                else:
                    continue
                if out is not None:
                    try:
                        out.send(body)
                    except OSError:  # the client has gone
                        return
            if out is None:
                yield body
            sub.sent_at = time.monotonic()
    finally:
        event_hub.unsubscribe(sub)


def write_streams_directly(app: Flask) -> None:
    """For a server known to send a streamed response to an HTTP/1.1 client as chunks on
    the plain socket it puts in the environ as ``gunicorn.socket``: gunicorn speaking HTTP
    without TLS (``gunicorn.conf.py`` says so, for each worker)."""
    app.extensions["omnicard.events"]["direct"] = True


def close_streams(app: Flask) -> None:
    """For a server that is shutting down: end this process's streams now (see
    ``EventHub.close_streams``)."""
    event_hub = app.extensions["omnicard.events"]["hub"]
    if event_hub is not None:
        event_hub.close_streams()


def live_socket(app: Flask, environ: dict) -> LiveSocket | None:
    """The stream's connection, for writing to directly, where the server allows it (see
    ``write_streams_directly``; no other server is known to: there every write goes through
    the server, from the stream's own thread)."""
    sock = environ.get("gunicorn.socket")
    if not app.extensions["omnicard.events"]["direct"] or sock is None:
        return None
    if environ.get("SERVER_PROTOCOL") != "HTTP/1.1" or not hasattr(socket, "MSG_DONTWAIT"):
        return None  # not chunked, or no send that is sure not to wait
    if sock.gettimeout() not in (None, 0.0):
        return None  # a send on it waits for writable space first, up to the timeout
    return LiveSocket(sock)


@blp.route("/events")
class Events(MethodView):
    @blp.requires("customer", "cashier", "device", "kiosk_screen", "staff", role="admin")
    @blp.arguments(StreamArgsSchema, location="query")
    @blp.doc(
        responses={
            "200": {
                "description": "`text/event-stream`: each event is `id: <position>`, "
                '`event: <type>`, `data: {"id", "type", "created_at", "data"}`; '
                "idle streams get `: heartbeat` comments.",
                "content": {"text/event-stream": {"schema": {"type": "string"}}},
            }
        }
    )
    @blp.errors(ValidationFailed)
    def get(self, args):
        """Live events: a shopper sees their own; a till, its store's and the cards presented
        to it; a kiosk and its paired screen, the kiosk's own; an admin, everything."""
        last = args["last_event_id"]
        header = request.headers.get("Last-Event-ID")
        if header is not None:
            if not header.isascii() or not header.isdigit() or len(header) > 18:
                raise ValidationFailed(fields={"Last-Event-ID": ["Not an event id."]})
            last = int(header)
        event_hub = hub()
        if event_hub is None:
            raise ValidationFailed("The live stream is switched off on this server.")
        sub = subscriber_for(current_principal())
        app = current_app._get_current_object()
        # The body is bytes already: passed straight to the server, chunk by chunk.
        response = app.response_class(
            stream(app, request.environ, event_hub, sub, last), mimetype="text/event-stream",
            direct_passthrough=True,
        )  # fmt: skip
        response.headers["Cache-Control"] = "no-cache"
        response.headers["X-Accel-Buffering"] = "no"
        return response


def init_app(app: Flask) -> None:
    import threading

    from app.events.outbox import wake_after_commit

    app.extensions["omnicard.events"] = {
        "hub": None,
        "enabled": app.config["EVENTS_HUB"],
        "lock": threading.Lock(),
        "direct": False,  # see write_streams_directly
        "companions": [],  # see run_beside_hub
    }
    # A serving process runs its hub from its first request on (sequencing and webhooks need
    # one somewhere even when no stream is open); commands such as `flask demo load` do not,
    # and what they commit is sequenced by the next hub to start.
    app.before_request(lambda: hub(app) and None)
    wake_after_commit(database(app).sessions, lambda: app.extensions["omnicard.events"]["hub"])

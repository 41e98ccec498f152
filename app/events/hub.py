"""The event hub: one per app process. It sequences committed events, learns of new ones, and
hands each to the local subscribers allowed to see it.

One background thread does the work and, on PostgreSQL, one more holds the process's single
LISTEN connection (not one per subscriber). A wake-up is only a hint: the thread also looks
once a second, and the database rows are the truth. Each subscriber has a bounded queue; one
that cannot keep up is told to catch up from the database instead, so a slow or stalled client
never delays the others and never misses an event.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import psycopg
from sqlalchemy import text
from sqlalchemy.engine import Engine

from app.core.db import read_only
from app.core.types import utcnow
from app.events.outbox import (
    EVENTS_CHANNEL,
    PENDING_CHANNEL,
    SEQUENCER_LOCK,
    Delivered,
    fetch_after,
    sequence_committed,
)
from app.webhooks.services import deliver_due, seconds_until_next_due
from app.webhooks.services import enqueue as enqueue_webhooks

log = logging.getLogger(__name__)

#: How long a card presented at a till keeps that till watching it.
PRESENTED_FOR = timedelta(minutes=30)
QUEUE_LIMIT = 1000
SAFETY_POLL_S = 1.0
#: A process asks the sequencer again after this long without an answer.
ASK_AGAIN_S = 0.05


@dataclass(eq=False)
class Subscriber:
    """What one open stream may see, and the events waiting for it."""

    everything: bool = False
    customer_id: int | None = None
    store_id: int | None = None
    device_id: int | None = None
    #: Cards presented at this till: their events come here too, for a while.
    watched: dict[int, datetime] = field(default_factory=dict)
    queue: list[Delivered] = field(default_factory=list)
    behind: bool = False
    closed: bool = False
    ready: threading.Condition = field(default_factory=threading.Condition)

    def may_see(self, e: Delivered) -> bool:
        if self.everything:
            return True
        if e.type == "card.presented":  # only the till it was presented to
            return self.device_id is not None and e.device_id == self.device_id
        if self.customer_id is not None and e.customer_id == self.customer_id:
            return True
        if self.device_id is not None and e.device_id == self.device_id:
            return True
        if self.store_id is not None and e.store_id == self.store_id:
            return True
        if e.card_id is not None and e.card_id in self.watched:
            return self.watched[e.card_id] > utcnow() - PRESENTED_FOR
        return False

    def offer(self, e: Delivered) -> None:
        presented_here = e.type == "card.presented" and e.device_id == self.device_id
        if presented_here and self.device_id is not None:
            self.watched[e.payload["card_id"]] = e.created_at
        with self.ready:
            if len(self.queue) >= QUEUE_LIMIT:
                self.behind = True  # catch up from the database instead
                self.queue.clear()
            elif not self.behind:
                self.queue.append(e)
            self.ready.notify()

    def take(self, timeout_s: float) -> tuple[list[Delivered], bool]:
        """Wait up to ``timeout_s`` for events; also whether the stream fell behind."""
        with self.ready:
            if not self.queue and not self.behind and not self.closed:
                self.ready.wait(timeout_s)
            events, self.queue = self.queue, []
            behind, self.behind = self.behind, False
            return events, behind

    def close(self) -> None:
        with self.ready:
            self.closed = True
            self.ready.notify()


class WebhookWorker:
    """Sends due webhook deliveries from this process (any number of processes may)."""

    def __init__(self, engine: Engine, settings: dict) -> None:
        self.engine, self.settings = engine, settings
        self.wake = threading.Event()
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, name="omnicard-webhooks", daemon=True)

    def _run(self) -> None:
        wait_s = SAFETY_POLL_S
        while not self.stopping.is_set():
            self.wake.wait(wait_s)
            self.wake.clear()
            try:
                while deliver_due(self.engine, **self.settings) and not self.stopping.is_set():
                    pass
                due_in = seconds_until_next_due(self.engine)
                wait_s = SAFETY_POLL_S if due_in is None else min(SAFETY_POLL_S, due_in)
            except Exception:
                log.exception("webhook delivery round failed")
                wait_s = 0.5


class EventHub:
    def __init__(
        self, engine: Engine, listen_dsn: str | None, webhook_settings: dict | None = None
    ) -> None:
        self.engine = engine
        self.webhooks = WebhookWorker(engine, webhook_settings) if webhook_settings else None
        self.listen_dsn = listen_dsn  # a libpq URL on PostgreSQL; None on SQLite
        self.wake = threading.Event()
        self.stopping = threading.Event()
        self.subscribers: set[Subscriber] = set()
        self.lock = threading.Lock()
        self.last_position = 0
        self.leader = False
        self.listener: psycopg.Connection | None = None
        self.threads: list[threading.Thread] = []
        self.ready = threading.Event()

    # --- life cycle --------------------------------------------------------------------

    def start(self) -> EventHub:
        if self.listen_dsn is None:
            self._sequence_if_leader()  # the one process: what committed before is history
        self.last_position = self._max_position()
        worker = threading.Thread(target=self._run, name="omnicard-event-hub", daemon=True)
        self.threads.append(worker)
        if self.listen_dsn is not None:
            listener = threading.Thread(target=self._listen, name="omnicard-listen", daemon=True)
            self.threads.append(listener)
            listener.start()
        else:
            self.ready.set()
        worker.start()
        if self.webhooks is not None:
            self.webhooks.thread.start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        self.wake.set()
        if self.webhooks is not None:
            self.webhooks.stopping.set()
            self.webhooks.wake.set()
            self.webhooks.thread.join(timeout=10)
        for t in self.threads:
            t.join(timeout=5)
        with self.lock:
            for sub in self.subscribers:
                sub.close()

    def poke(self) -> None:
        """Something committed here: look now."""
        self._pending_here = True
        self.wake.set()

    # --- subscribers -------------------------------------------------------------------

    def subscribe(self, sub: Subscriber) -> Subscriber:
        with self.lock:
            if not self.subscribers:
                # Nobody was listening, so nothing was fetched: start from now (each new
                # stream replays what it missed from the database itself).
                self.last_position = self._max_position()
            self.subscribers.add(sub)
        return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        with self.lock:
            self.subscribers.discard(sub)
        sub.close()

    # --- the work ----------------------------------------------------------------------

    _pending_here = False
    #: The newest position the sequencer has announced (PostgreSQL) or given (SQLite).
    known_top = 0
    #: When this process last asked the sequencer to look, if it has not answered since.
    asked_at: float | None = None

    def _run(self) -> None:
        while not self.stopping.is_set():
            woken = self.wake.wait(self._next_look_s())
            self.wake.clear()
            if self.stopping.is_set():
                return
            try:
                self._sequence_if_leader()
                self._dispatch_new(look_anyway=not woken)
            except Exception:  # keep serving; the next round retries from the database
                log.exception("event hub round failed")
                time.sleep(0.1)

    def _sequence_if_leader(self) -> None:
        if self.listen_dsn is not None and not self.leader:
            self._ask_sequencer()
            return
        self._pending_here = False
        with self.engine.begin() as c:
            before, top = sequence_committed(c)
            if top == before:
                return
            # Webhook deliveries are written with the positions: each event, once.
            if enqueue_webhooks(c, before, top) and self.webhooks is not None:
                self.webhooks.wake.set()
            if self.listen_dsn is not None:
                c.execute(text("SELECT pg_notify(:channel, :top)"),
                          {"channel": EVENTS_CHANNEL, "top": str(top)})  # fmt: skip
        self.known_top = max(self.known_top, top)

    def _ask_sequencer(self) -> None:
        """Tell the sequencing process that something committed here, at most once per
        round of its: one NOTIFY, outside any sale's transaction, however many sales."""
        if not self._pending_here:
            return
        waiting = self.asked_at is not None and time.monotonic() - self.asked_at < ASK_AGAIN_S
        if waiting:
            return  # it has been asked; its answer wakes us and then we ask again if need be
        self._pending_here = False
        self.asked_at = time.monotonic()
        self._notify(PENDING_CHANNEL, "")

    def _next_look_s(self) -> float:
        """Sleep until woken, or until a deferred request to the sequencer may be repeated."""
        if self._pending_here and self.asked_at is not None:
            return max(0.0, ASK_AGAIN_S - (time.monotonic() - self.asked_at))
        return SAFETY_POLL_S

    def _sequenced(self, top: int) -> None:
        """The sequencer announced ``top`` (from the listener thread)."""
        self.known_top = max(self.known_top, top)
        self.asked_at = None
        self.wake.set()

    def _dispatch_new(self, *, look_anyway: bool = False) -> None:
        with self.lock:
            subscribers = list(self.subscribers)
        if not subscribers:
            return
        if self.known_top <= self.last_position and not look_anyway:
            return  # nothing announced beyond what was dispatched
        while True:
            with read_only(self.engine) as c:
                events = fetch_after(c, self.last_position, 1000)
            if not events:
                return
            for e in events:
                for sub in subscribers:
                    if sub.may_see(e):
                        sub.offer(e)
            self.last_position = events[-1].position
            if len(events) < 1000:
                return

    def sequenced_position(self) -> int:
        """The newest event delivered to anyone so far (from the database)."""
        return self._max_position()

    def _max_position(self) -> int:
        with read_only(self.engine) as c:
            return c.execute(text("SELECT COALESCE(MAX(position), 0) FROM events")).scalar()

    # --- PostgreSQL: one LISTEN connection per process -----------------------------------

    def _notify(self, channel: str, payload: str) -> None:
        with self.engine.begin() as c:
            c.execute(text("SELECT pg_notify(:channel, :payload)"),
                      {"channel": channel, "payload": payload})  # fmt: skip

    def _listen(self) -> None:
        while not self.stopping.is_set():
            try:
                with psycopg.connect(self.listen_dsn, autocommit=True) as conn:
                    self.listener = conn
                    conn.execute(f"LISTEN {EVENTS_CHANNEL}")
                    conn.execute(f"LISTEN {PENDING_CHANNEL}")
                    self.ready.set()
                    tried_at = 0.0
                    while not self.stopping.is_set():
                        if not self.leader and time.monotonic() - tried_at >= SAFETY_POLL_S:
                            tried_at = time.monotonic()
                            self.leader = conn.execute(
                                "SELECT pg_try_advisory_lock(%s)", (SEQUENCER_LOCK,)
                            ).fetchone()[0]
                            if self.leader:
                                self.wake.set()  # whatever waited for a sequencer
                        for note in conn.notifies(timeout=SAFETY_POLL_S, stop_after=1):
                            if note.channel == EVENTS_CHANNEL and note.payload.isdigit():
                                self._sequenced(int(note.payload))
                            else:
                                self.wake.set()
            except psycopg.Error:
                log.exception("event listener lost its connection; reconnecting")
                self.leader = False
                time.sleep(0.5)
        self.leader = False

"""The event hub: one per app process. It sequences committed events, learns of new ones, and
hands each to the local subscribers allowed to see it.

One background thread does the work and, on PostgreSQL, one more holds the process's single
listening connection (not one per subscriber), which LISTENs only for what the process must
hear: asks, in the sequencer; announcements, in a process with streams open. A wake-up is only
a hint: the thread also looks once a second, and the database rows are the truth. Each
subscriber has a bounded queue; one that cannot keep up is told to catch up from the database
instead, so a slow or stalled client never delays the others and never misses an event.
Under gunicorn the hub writes each event to the streams' connections itself, as far as their
buffers take it (see ``LiveSocket``): a thousand streams are then a thousand sends, not a
thousand thread switches.
"""

from __future__ import annotations

import logging
import math
import secrets
import socket
import threading
import time
from collections import defaultdict, deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import psycopg
from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine

from app.core.db import POSTGRESQL_OPTIONS, read_only
from app.core.types import utcnow
from app.events.outbox import (
    EVENTS_CHANNEL,
    PENDING_CHANNEL,
    SEQUENCE_BATCH,
    SEQUENCE_SQL,
    SEQUENCER_LOCK,
    Delivered,
    fetch_after,
    sequence_committed,
)
from app.webhooks.services import deliver_due, seconds_until_next_due

log = logging.getLogger(__name__)

#: How long a card presented at a till keeps that till watching it.
PRESENTED_FOR = timedelta(minutes=30)
SAFETY_POLL_S = 1.0
#: A process asks the sequencer again after this long without an answer (a process with no
#: open stream hears no answers: it asks at most this often).
ASK_AGAIN_S = 0.01
#: Under load, the sequencer's rounds wait for the commits that follow, so that more events
#: share a round's fixed cost (its transaction and COMMIT, its NOTIFY, every streaming hub's
#: wake-up). While fewer than QUIET_EVENTS_PER_S events a second are being sequenced, a round
#: starts as soon as it is asked for; above that, the gap between round starts grows with the
#: rate, to ROUND_GAP_MAX_S at BUSY_EVENTS_PER_S and beyond: at most 10 rounds a second,
#: however busy, and an event waits at most that long for its round.
QUIET_EVENTS_PER_S = 80.0
BUSY_EVENTS_PER_S = 320.0
ROUND_GAP_MAX_S = 0.1
#: How quickly the estimate of the rate follows a change of load, in seconds.
RATE_TIME_CONSTANT_S = 0.25
#: How the sequencer is asked to look: its listening connection's ``application_name`` names
#: a UDP port of its own and a token (PostgreSQL keeps at most 63 bytes of it).
ASKS_NAME = "omnicard-asks {host} {port} {token}"
#: One statement tries for the sequencer's lock and, failing, finds where the one who holds it
#: hears asks (a PostgreSQL advisory lock on one 32-bit key shows in ``pg_locks`` as ``objid``).
#: Advisory locks belong to a database but ``pg_locks`` shows the whole server's: another
#: Omnicard on the same server (staging beside production) holds the same key in its own
#: database, and asks sent to its sequencer would leave ours waiting for its own look.
TRY_TO_SEQUENCE_SQL = (
    "SELECT pg_try_advisory_lock(%(key)s), "
    "(SELECT activity.application_name FROM pg_locks AS held "
    " JOIN pg_stat_activity AS activity ON activity.pid = held.pid "
    " WHERE held.locktype = 'advisory' AND held.classid = 0 AND held.objid = %(key)s "
    " AND held.objsubid = 1 AND held.granted AND held.pid <> pg_backend_pid() "
    " AND held.database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
    " LIMIT 1)"
)


class LiveSocket:
    """A live stream's connection, which the server sends the response on as HTTP/1.1 chunks,
    written to directly: by the hub, at once and only as far as the connection's buffer takes
    it; by the stream's own thread, waiting as long as it must, for the rest. Writers take
    turns on ``lock``, so chunks never interleave and events go out in order."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        # gevent's cooperative socket wraps the OS socket: the hub sends on that one, which
        # never waits (and never switches to another greenlet).
        self._os_socket = getattr(sock, "_sock", sock)
        self.lock = threading.Lock()
        #: The end of a chunk the hub began to send: the stream's thread sends it first.
        self.unsent = b""

    def send_now(self, body: bytes) -> bool:
        """With ``lock`` held and nothing unsent: send ``body`` as far as the connection takes
        it now, without waiting. Whether all of it went (the rest is ``unsent``)."""
        chunk = _chunk(body)
        try:
            sent = self._os_socket.send(chunk, socket.MSG_DONTWAIT)
        except BlockingIOError:
            sent = 0
        self.unsent = chunk[sent:]
        return not self.unsent

    def send(self, body: bytes) -> None:
        """With ``lock`` held: send what is unsent, then ``body``, waiting as long as it takes."""
        data = self.unsent + _chunk(body) if body else self.unsent
        self.unsent = b""
        if data:
            self.sock.sendall(data)


def _chunk(body: bytes) -> bytes:
    return b"%X\r\n%s\r\n" % (len(body), body)


@dataclass(eq=False)
class Subscriber:
    """What one open stream may see, and the events waiting for it.

    The hub's thread offers, the stream's own thread (a greenlet under gevent) takes. The
    hand-over needs no lock: a deque's append and popleft are atomic, and the stream drops
    anything at or before the last position it sent, so a race can only repeat an event
    (which is dropped) or leave it for the next wake-up, never lose it. Nothing is allocated
    per wait, so thousands of idle streams cost the garbage collector nothing new. Once the
    hub may write to the stream's connection itself (``out``), it does so only with nothing
    queued, nothing half-sent and the connection's lock free; the stream's thread takes the
    queue and writes under that lock, so everything goes out in order.
    """

    everything: bool = False
    customer_id: int | None = None
    store_id: int | None = None
    device_id: int | None = None
    #: Cards presented at this till, and when: their events come here too, for a while.
    watched: dict[int, datetime] = field(default_factory=dict)
    queue: deque[Delivered] = field(default_factory=deque)
    #: Set when the queue overflowed: the stream catches up from the database instead.
    behind: bool = False
    closed: bool = False
    #: When the stream last wrote anything (``time.monotonic()``): heartbeats go to idle ones.
    sent_at: float = field(default_factory=time.monotonic)
    ready: threading.Event = field(default_factory=threading.Event)
    #: The position of the last event written to the stream.
    last: int = 0
    #: The stream's connection, once it is live and may be written to directly; until then,
    #: and where it may not, the hub only queues and the stream's thread writes.
    out: LiveSocket | None = None

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

    def offer(self, events: list[Delivered], limit: int) -> None:
        """Events this stream may see, in order."""
        out = self.out
        # Written at once if nothing waits to go before them, and the stream's thread is not
        # writing: it then holds the lock (and whatever it holds goes first).
        if out is not None and not (self.queue or self.behind) and out.lock.acquire(False):
            try:
                if self._send_now(out, events):
                    return
            finally:
                out.lock.release()
        if self.behind:
            pass  # the catch-up from the database will bring them
        elif len(self.queue) + len(events) > limit:
            self.behind = True
            self.queue.clear()
        else:
            self.queue.extend(events)
        self.ready.set()

    def _send_now(self, out: LiveSocket, events: list[Delivered]) -> bool:
        """With ``out.lock`` held: write ``events`` to the connection now, in one chunk. False
        if the end of earlier events is still to go: then these wait their turn in the queue."""
        if out.unsent:
            return False
        fresh = [e for e in events if e.position > self.last]  # not written by the replay
        if not fresh:
            return True
        try:
            complete = out.send_now(b"".join([e.sse for e in fresh]))
        except OSError:  # the client has gone
            complete, self.closed = False, True
        self.last = fresh[-1].position
        if complete:
            self.sent_at = time.monotonic()
        else:
            self.ready.set()  # the rest, or the end of the stream, is for the stream's thread
        return True

    def take(self) -> tuple[list[Delivered], bool]:
        """After a wake-up (``ready``): the events waiting, and whether the stream fell
        behind. Both may be empty: a heartbeat is due, or the stream is closing."""
        self.ready.clear()  # before draining: whatever comes after this sets it again
        behind, self.behind = self.behind, False
        queue, events = self.queue, []
        while queue:
            events.append(queue.popleft())
        return events, behind

    def idle_for(self, now: float) -> float:
        return now - self.sent_at

    def close(self) -> None:
        self.closed = True
        self.ready.set()


class Audience:
    """Open streams indexed by who they are, so that an event is offered to the streams that
    may see it and not checked against every stream in the process."""

    def __init__(self) -> None:
        self.everything: set[Subscriber] = set()
        self.by_customer: dict[int, set[Subscriber]] = defaultdict(set)
        self.by_store: dict[int, set[Subscriber]] = defaultdict(set)
        self.by_device: dict[int, set[Subscriber]] = defaultdict(set)
        #: Tills watching a card presented to them.
        self.by_card: dict[int, set[Subscriber]] = defaultdict(set)
        self.all: set[Subscriber] = set()

    def _indexes(self, sub: Subscriber):
        if sub.everything:
            yield self.everything, None
        for index, key in (
            (self.by_customer, sub.customer_id),
            (self.by_store, sub.store_id),
            (self.by_device, sub.device_id),
        ):
            if key is not None:
                yield index, key
        for card_id in sub.watched:
            yield self.by_card, card_id

    def add(self, sub: Subscriber) -> None:
        self.all.add(sub)
        for index, key in self._indexes(sub):
            (index if key is None else index[key]).add(sub)

    def remove(self, sub: Subscriber) -> None:
        self.all.discard(sub)
        for index, key in self._indexes(sub):
            if key is None:
                index.discard(sub)
            else:
                self._drop(index, key, sub)

    @staticmethod
    def _drop(index: dict[int, set[Subscriber]], key: int, sub: Subscriber) -> None:
        if key in index:
            index[key].discard(sub)
            if not index[key]:
                del index[key]

    def watch(self, sub: Subscriber, card_id: int, at: datetime) -> None:
        if sub.watched.get(card_id, at) <= at:
            sub.watched[card_id] = at
        if sub in self.all:
            self.by_card[card_id].add(sub)
        cutoff = utcnow() - PRESENTED_FOR  # a till's watch list only holds the recent cards
        for expired in [c for c, seen_at in sub.watched.items() if seen_at <= cutoff]:
            del sub.watched[expired]
            self._drop(self.by_card, expired, sub)

    def candidates(self, e: Delivered) -> set[Subscriber]:
        """The streams that may see ``e`` (``may_see`` has the last word)."""
        found = set(self.everything)
        if e.device_id is not None:
            found.update(self.by_device.get(e.device_id, ()))
        if e.type != "card.presented":
            for index, key in (
                (self.by_customer, e.customer_id),
                (self.by_store, e.store_id),
                (self.by_card, e.card_id),
            ):
                if key is not None:
                    found.update(index.get(key, ()))
        return found


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
                # While nothing is due, a look is one short read: it runs every second in
                # every serving process, beside the streams.
                due_in = seconds_until_next_due(self.engine)
                if due_in == 0:
                    while deliver_due(self.engine, **self.settings):
                        if self.stopping.is_set():
                            return
                    due_in = seconds_until_next_due(self.engine)
                # Due again at once only if another process claimed it meanwhile (and has
                # not yet leased it): look again shortly, not in a loop.
                wait_s = SAFETY_POLL_S if due_in is None else min(SAFETY_POLL_S, max(due_in, 0.05))
            except Exception:
                log.exception("webhook delivery round failed")
                wait_s = 0.5


class EventHub:
    def __init__(
        self,
        engine: Engine,
        listen_dsn: str | None,
        webhook_settings: dict | None = None,
        *,
        heartbeat_s: float = 15.0,
        queue_limit: int = 1000,
        poll_s: float = SAFETY_POLL_S,
        asks_host: str | None = None,
    ) -> None:
        self.engine = engine
        #: How often the hub looks for new events without being woken (a lost wake-up only
        #: delays an event by this much).
        self.poll_s = poll_s
        self.heartbeat_s = heartbeat_s
        #: Events a stream may have waiting before it is sent to catch up from the database.
        self.queue_limit = queue_limit
        self.webhooks = WebhookWorker(engine, webhook_settings) if webhook_settings else None
        self.listen_dsn = listen_dsn  # a libpq URL on PostgreSQL; None on SQLite
        #: Where this process hears asks while it sequences: the address it binds (None: the
        #: one PostgreSQL sees it connect from, as the other processes can likely reach it).
        self.asks_host = asks_host
        #: Where the sequencer hears asks ((host, port), token), if this process knows.
        self.sequencer_asks: tuple[tuple[str, int], bytes] | None = None
        #: Asks this process heard as the sequencer, by datagram.
        self.asks_heard = 0
        self._asks_in: socket.socket | None = None
        self._asks_out: socket.socket | None = None
        self.wake = threading.Event()
        self.stopping = threading.Event()
        self.audience = Audience()
        self.lock = threading.Lock()  # guards the audience
        self.last_position = 0
        self.leader = False
        self.listener: psycopg.Connection | None = None
        #: Set when a first stream opens: the listener must LISTEN for the announcements now.
        self.listen_changed = threading.Event()
        #: Look in the database next round even if nothing was announced.
        self._look_now = False
        self.threads: list[threading.Thread] = []
        self.ready = threading.Event()

    # --- life cycle --------------------------------------------------------------------

    def start(self) -> EventHub:
        if self.listen_dsn is None:
            self._sequence_if_leader()  # the one process: what committed before is history
        self.last_position = self._max_position()
        worker = threading.Thread(target=self._run, name="omnicard-event-hub", daemon=True)
        beat = threading.Thread(target=self._beat, name="omnicard-heartbeat", daemon=True)
        self.threads += [worker, beat]
        beat.start()
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
        self.listen_changed.set()
        if self.webhooks is not None:
            self.webhooks.stopping.set()
            self.webhooks.wake.set()
            self.webhooks.thread.join(timeout=10)
        for t in self.threads:
            t.join(timeout=5)
        with self.lock:
            for sub in self.audience.all:
                sub.close()
        if self._own is not None:
            self._own.close()
        self._drop_plain_connection()
        if self._asks_out is not None:
            self._asks_out.close()

    def close_streams(self) -> None:
        """The server is shutting down: end every open stream now, and any that opens from now
        on as soon as it has replayed (its client resumes from its ``Last-Event-ID``, on
        another server or this one's successor). The hub itself goes on sequencing, for the
        requests that are still finishing."""
        with self.lock:
            self.streams_closed = True
            for sub in self.audience.all:
                sub.close()

    def poke(self) -> None:
        """Something committed here: look now. A process that neither sequences nor serves
        streams only has to ask the sequencer: by datagram it asks from the committing thread
        itself, without waking its hub's thread, unless it asked a moment ago (then the hub's
        thread asks again when the moment has passed)."""
        asks = self.sequencer_asks
        if asks is not None and not self.leader and not self.audience.all:
            now = time.monotonic()
            if self.asked_at is None or now - self.asked_at >= ASK_AGAIN_S:
                self.asked_at = now
                if self._send_ask(asks):
                    return
        self._pending_here = True
        self.wake.set()

    # --- subscribers -------------------------------------------------------------------

    #: Set by ``close_streams``.
    streams_closed = False

    def subscribe(self, sub: Subscriber) -> Subscriber:
        with self.lock:
            if self.streams_closed:
                sub.close()
            if not self.audience.all:
                # Nobody was listening, so nothing was fetched: start from now (each new
                # stream replays what it missed from the database itself).
                self.last_position = self._max_position()
                if self.listen_dsn is not None and not self.leader:
                    self.listen_changed.set()  # it must now hear the sequencer's news
            self.audience.add(sub)
        return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        with self.lock:
            self.audience.remove(sub)
        sub.close()

    def watch(self, sub: Subscriber, presented: dict[int, datetime]) -> None:
        """Cards presented to ``sub``'s till (found in the database on a replay)."""
        with self.lock:
            for card_id, at in presented.items():
                self.audience.watch(sub, card_id, at)

    def _beat(self) -> None:
        """Wake the streams that have sent nothing for a heartbeat's time (and only those:
        a busy stream needs none). Idle streams are looked for twice a period."""
        while not self.stopping.wait(self.heartbeat_s / 2):
            now = time.monotonic()
            with self.lock:
                idle = [s for s in self.audience.all if s.idle_for(now) >= self.heartbeat_s]
            for sub in idle:
                sub.ready.set()

    # --- the work ----------------------------------------------------------------------

    _pending_here = False
    #: The newest position the sequencer has announced (PostgreSQL) or given (SQLite).
    known_top = 0
    #: When this process last asked the sequencer to look, if it has not answered since.
    asked_at: float | None = None

    def _run(self) -> None:
        while not self.stopping.is_set():
            woken = self.wake.wait(self._next_look_s())
            if woken and self.sequencing() and not self._backlog:
                # Under load, let the commits of the next few milliseconds join this round:
                # one transaction and one NOTIFY for them all.
                now = time.monotonic()
                time.sleep(max(0.0, self.round_gap_s(now) - (now - self.round_at)))
            self.wake.clear()
            if self.stopping.is_set():
                return
            try:
                sequenced = self._sequence_if_leader()
                look, self._look_now = self._look_now, False
                self._dispatch_new(sequenced, look_anyway=look or not woken)
            except Exception:  # keep serving; the next round retries from the database
                log.exception("event hub round failed")
                time.sleep(0.1)

    def _sequence_if_leader(self) -> list[Delivered]:
        """Sequence what has committed, if this process is the sequencer: the events it
        numbered, in order. Otherwise ask the sequencer, and return nothing."""
        if not self.sequencing():
            self._ask_sequencer()
            return []
        self._pending_here = False
        started = time.monotonic()
        if self.listen_dsn is None:
            sequenced, deliveries = self._sequence_here()
        else:
            sequenced, deliveries = self._sequence_in_postgresql()
        self.count_round(started, len(sequenced))
        if deliveries and self.webhooks is not None:
            self.webhooks.wake.set()
        if sequenced:
            self.known_top = max(self.known_top, sequenced[-1].position)
        return sequenced

    def _sequence_here(self) -> tuple[list[Delivered], int]:
        """A round on SQLite, through the hub's own SQLAlchemy connection."""
        c = self._own_connection()
        try:
            with c.begin():
                return sequence_committed(c)
        except Exception:
            self._pending_here = True  # look again next round, on a fresh connection
            self._own = None
            c.invalidate()
            raise

    def _sequence_in_postgresql(self) -> tuple[list[Delivered], int]:
        """A round on PostgreSQL: one prepared statement, one round trip, on the hub's own
        connection, with no ORM (this is the sequencer's hot loop; under gevent a pipelined
        transaction of four statements cost it several times the CPU). The statement numbers
        a batch, writes its webhook deliveries and announces the new top."""
        try:
            rows = (
                self._plain_connection()
                .execute(
                    SEQUENCE_SQL, {"batch": SEQUENCE_BATCH, "channel": EVENTS_CHANNEL}, prepare=True
                )
                .fetchall()
            )
        except psycopg.Error:
            self._pending_here = True  # look again next round, on a fresh connection
            self._drop_plain_connection()
            raise
        sequenced = sorted((Delivered(*row[:-1]) for row in rows), key=lambda e: e.position)
        # A full batch of transactions, or more: more may be waiting, so another round at once.
        self._backlog = len(sequenced) >= SEQUENCE_BATCH
        if self._backlog:
            self._pending_here = True
            self.wake.set()
        return sequenced, rows[0][-1] if rows else 0

    #: When the last sequencing round began.
    round_at = 0.0
    #: Events sequenced per second lately (a moving average over RATE_TIME_CONSTANT_S).
    events_per_s = 0.0
    #: The last round left committed transactions in the outbox.
    _backlog = False

    def count_round(self, started: float, events: int) -> None:
        """A round that began at ``started`` sequenced ``events``: those committed since the
        previous round began."""
        elapsed = started - self.round_at
        if elapsed > 0:
            weight = 1.0 - math.exp(-elapsed / RATE_TIME_CONSTANT_S)
            self.events_per_s += weight * (events / elapsed - self.events_per_s)
        self.round_at = started

    def round_gap_s(self, now: float) -> float:
        """How long after the last round's start the next one may start: nothing while the
        system is quiet, up to ROUND_GAP_MAX_S under load (a lull since the last round
        counts as quiet)."""
        rate = self.events_per_s * math.exp(-(now - self.round_at) / RATE_TIME_CONSTANT_S)
        share = (rate - QUIET_EVENTS_PER_S) / (BUSY_EVENTS_PER_S - QUIET_EVENTS_PER_S)
        return ROUND_GAP_MAX_S * min(1.0, max(0.0, share))

    def sequencing(self) -> bool:
        """Whether this process is the sequencer (on SQLite, each process is its own)."""
        return self.listen_dsn is None or self.leader

    #: The hub's own connections, held for its life (no pool checkout and ping per round).
    #: On SQLite, a SQLAlchemy one for sequencing; on PostgreSQL, a plain psycopg one, for
    #: sequencing rounds while this process is the sequencer and for asking it otherwise.
    _own: Connection | None = None
    _plain: psycopg.Connection | None = None

    def _own_connection(self) -> Connection:
        if self._own is None:
            self._own = self.engine.connect()
        return self._own

    def _plain_connection(self) -> psycopg.Connection:
        if self._plain is None:
            # Timestamps come back in UTC, as through the app's engine.
            self._plain = psycopg.connect(
                self.listen_dsn, autocommit=True, options=f"-c TimeZone=UTC {POSTGRESQL_OPTIONS}"
            )
        return self._plain

    def _drop_plain_connection(self) -> None:
        if self._plain is not None:
            self._plain.close()
            self._plain = None

    def _ask_sequencer(self) -> None:
        """Tell the sequencing process that something committed here, at most once per
        round of its: one ask (a datagram, or a NOTIFY), outside any sale's transaction."""
        if not self._pending_here:
            return
        waiting = self.asked_at is not None and time.monotonic() - self.asked_at < ASK_AGAIN_S
        if waiting:
            return  # it has been asked; its answer wakes us and then we ask again if need be
        self._pending_here = False
        self.asked_at = time.monotonic()
        try:
            self._ask(PENDING_CHANNEL)
        except psycopg.Error:
            self._pending_here, self.asked_at = True, None  # ask again next round
            raise

    def _ask(self, channel: str) -> None:
        """A datagram to the sequencer's port, if this process knows it; else a plain NOTIFY
        on the hub's own connection. A datagram costs PostgreSQL nothing: a NOTIFY is a
        transaction of its own, and they queue on one lock."""
        if self.sequencer_asks is not None and self._send_ask(self.sequencer_asks):
            return
        try:
            self._plain_connection().execute(f"NOTIFY {channel}")
        except psycopg.Error:
            self._drop_plain_connection()
            raise

    def _send_ask(self, asks: tuple[tuple[str, int], bytes]) -> bool:
        address, token = asks
        try:
            if self._asks_out is None:
                self._asks_out = socket.socket(_family(address[0]), socket.SOCK_DGRAM)
            self._asks_out.sendto(token, address)
            return True
        except OSError:  # then a NOTIFY; a lost datagram only delays (the sequencer's own look)
            log.warning("could not send an ask to the sequencer at %s", address)
            return False

    def _next_look_s(self) -> float:
        """Sleep until woken, or until a deferred request to the sequencer may be repeated."""
        if self._pending_here and self.asked_at is not None:
            return max(0.0, ASK_AGAIN_S - (time.monotonic() - self.asked_at))
        return self.poll_s

    def _sequenced(self, top: int) -> None:
        """The sequencer announced ``top`` (from the listener thread). A process with no
        stream open and nothing to ask has nothing to do about it."""
        self.known_top = max(self.known_top, top)
        self.asked_at = None
        if self.audience.all or self._pending_here:
            self.wake.set()

    def _dispatch_new(self, sequenced: list[Delivered], *, look_anyway: bool = False) -> None:
        """Hand the events after the last one dispatched to the streams that may see them:
        those this process just sequenced, if they follow on, else read from the database."""
        if not self.audience.all:
            return
        if sequenced and sequenced[0].position == self.last_position + 1:
            self._hand_out(sequenced)
        if self.known_top <= self.last_position and not look_anyway:
            return  # nothing announced beyond what was dispatched
        while True:
            with read_only(self.engine) as c:
                events = fetch_after(c, self.last_position, 1000)
            if not events:
                return
            self._hand_out(events)
            if len(events) < 1000:
                return

    def _hand_out(self, events: list[Delivered]) -> None:
        """Each stream gets its share of ``events`` at once: one write, however many."""
        shares: dict[Subscriber, list[Delivered]] = {}
        for e in events:
            for sub in self._audience_of(e):
                if (share := shares.get(sub)) is None:
                    shares[sub] = [e]
                else:
                    share.append(e)
        for sub, share in shares.items():
            sub.offer(share, self.queue_limit)
        self.last_position = events[-1].position

    def _audience_of(self, e: Delivered) -> list[Subscriber]:
        with self.lock:
            audience = [sub for sub in self.audience.candidates(e) if sub.may_see(e)]
            if e.type == "card.presented":  # that till now watches the card
                for sub in audience:
                    if sub.device_id == e.device_id:
                        self.audience.watch(sub, e.card_id, e.created_at)
        return audience

    def sequenced_position(self) -> int:
        """The newest event delivered to anyone so far (from the database)."""
        return self._max_position()

    def _max_position(self) -> int:
        with read_only(self.engine) as c:
            return c.execute(text("SELECT COALESCE(MAX(position), 0) FROM events")).scalar()

    # --- PostgreSQL: one LISTEN connection per process -----------------------------------

    def _listen(self) -> None:
        while not self.stopping.is_set():
            try:
                with psycopg.connect(
                    self.listen_dsn, autocommit=True, options=POSTGRESQL_OPTIONS
                ) as conn:
                    self.listener = conn
                    hearing = False  # the sequencer's announcements
                    self.ready.set()
                    tried_at = 0.0
                    while not self.stopping.is_set():
                        # Only a process with streams to serve, and not sequencing itself,
                        # needs the announcements: the others are not woken by every round.
                        wanted = bool(self.audience.all) and not self.leader
                        if wanted != hearing:
                            conn.execute(f"{'' if wanted else 'UN'}LISTEN {EVENTS_CHANNEL}")
                            hearing = wanted
                            if hearing:  # what was announced before it listened
                                self._look_now = True
                                self.wake.set()
                        if not self.leader and time.monotonic() - tried_at >= SAFETY_POLL_S:
                            tried_at = time.monotonic()
                            self.leader, holder = conn.execute(
                                TRY_TO_SEQUENCE_SQL, {"key": SEQUENCER_LOCK}
                            ).fetchone()
                            if self.leader:
                                # Only the sequencer is asked; then whatever waited for one.
                                conn.execute(f"LISTEN {PENDING_CHANNEL}")
                                try:
                                    self._open_asks_port(conn)
                                except OSError:  # then asks come by NOTIFY only
                                    log.exception("could not open a port for asks")
                                self.wake.set()
                            else:
                                self.sequencer_asks = _asks_address(holder)
                        if not (hearing or self.leader):
                            # LISTENing for nothing: PostgreSQL wakes every listening backend
                            # of the database at every NOTIFY, whatever its channels.
                            self.listen_changed.wait(SAFETY_POLL_S)
                            self.listen_changed.clear()
                            continue
                        for note in conn.notifies(timeout=SAFETY_POLL_S, stop_after=1):
                            if note.channel == EVENTS_CHANNEL and note.payload.isdigit():
                                self._sequenced(int(note.payload))
                            elif note.channel == PENDING_CHANNEL:
                                self.wake.set()
            except psycopg.Error:
                log.exception("event listener lost its connection; reconnecting")
                self.leader = False
                time.sleep(0.5)
            finally:
                self._close_asks_port()  # the lock went with the connection
        self.leader = False

    def _open_asks_port(self, conn: psycopg.Connection) -> None:
        """As the new sequencer: a UDP port for asks, named where the others look for it
        (unless told "none": then the others ask by NOTIFY)."""
        if self.asks_host == "none":
            return
        host = (
            self.asks_host
            or conn.execute("SELECT COALESCE(host(inet_client_addr()), '127.0.0.1')").fetchone()[0]
        )
        sock = socket.socket(_family(host), socket.SOCK_DGRAM)
        sock.bind((host, 0))
        sock.settimeout(SAFETY_POLL_S)  # to notice, now and then, that it was closed
        token = secrets.token_hex(6)
        name = ASKS_NAME.format(host=host, port=sock.getsockname()[1], token=token)
        conn.execute("SELECT set_config('application_name', %s, false)", (name,))
        self._asks_in = sock
        hear = threading.Thread(
            target=self._hear_asks, args=(sock, token.encode()), name="omnicard-asks", daemon=True
        )
        hear.start()

    def _hear_asks(self, sock: socket.socket, token: bytes) -> None:
        while self._asks_in is sock:
            try:
                ask = sock.recv(64)
            except TimeoutError:
                continue
            except OSError:
                return  # closed: no longer the sequencer
            if ask == token:  # anything else is not from this cluster's processes
                self.asks_heard += 1
                self.wake.set()

    def _close_asks_port(self) -> None:
        if self._asks_in is not None:
            self._asks_in.close()
            self._asks_in = None


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def _asks_address(application_name: str | None) -> tuple[tuple[str, int], bytes] | None:
    """Where the sequencer hears asks, from its connection's ``application_name``."""
    words = (application_name or "").split(" ")
    if len(words) != 4 or words[0] != "omnicard-asks" or not words[2].isdigit():
        return None  # an older version, or a name cut short: asks go by NOTIFY
    return (words[1], int(words[2])), words[3].encode()

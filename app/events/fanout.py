"""The fan-out: which open stream may see which event, and handing each its share. All in
memory, no database: the hub gives it events in order and it offers each stream those it may
see.

Each subscriber has a bounded queue; one that cannot keep up is told to catch up from the
database instead, so a slow or stalled client never delays the others and never misses an
event. Under gunicorn the hub writes each event to the streams' connections itself, as far as
their buffers take it (see ``LiveSocket``): a thousand streams are then a thousand sends, not
a thousand thread switches.
"""

from __future__ import annotations

import socket
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from app.core.types import utcnow
from app.events.outbox import Delivered

#: How long a card presented at a till keeps that till watching it.
PRESENTED_FOR = timedelta(minutes=30)


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


class Fanout:
    """This process's open streams, and the position of the last event handed to them. The
    hub's thread hands events out; the streams' threads come and go (under ``lock``)."""

    def __init__(self, queue_limit: int) -> None:
        #: Events a stream may have waiting before it is sent to catch up from the database.
        self.queue_limit = queue_limit
        self.audience = Audience()
        self.lock = threading.Lock()  # guards the audience
        #: The position of the last event handed out (or the start, when the first opened).
        self.last_position = 0
        #: Set by ``close_all(for_good=True)``: the server is shutting down.
        self.closed_for_good = False

    def add(self, sub: Subscriber, *, first: Callable[[], None]) -> None:
        """Open ``sub``; ``first`` runs before it if no other stream is open. Once closed for
        good, a new stream is closed at once: it ends as soon as it has replayed."""
        with self.lock:
            if self.closed_for_good:
                sub.close()
            if not self.audience.all:
                first()
            self.audience.add(sub)

    def remove(self, sub: Subscriber) -> None:
        with self.lock:
            self.audience.remove(sub)
        sub.close()

    def watch(self, sub: Subscriber, presented: dict[int, datetime]) -> None:
        """Cards presented to ``sub``'s till (found in the database on a replay)."""
        with self.lock:
            for card_id, at in presented.items():
                self.audience.watch(sub, card_id, at)

    def idle(self, now: float, heartbeat_s: float) -> list[Subscriber]:
        """The streams that have sent nothing for ``heartbeat_s``."""
        with self.lock:
            return [s for s in self.audience.all if s.idle_for(now) >= heartbeat_s]

    def close_all(self, *, for_good: bool = False) -> None:
        """End every open stream (and, ``for_good``, every one that opens from now on)."""
        with self.lock:
            self.closed_for_good = self.closed_for_good or for_good
            for sub in self.audience.all:
                sub.close()

    def hand_out(self, events: list[Delivered]) -> None:
        """Each stream gets its share of ``events`` (the ones after ``last_position``, in
        order) at once: one write, however many."""
        shares: dict[Subscriber, list[Delivered]] = {}
        for e in events:
            for sub in self.audience_of(e):
                if (share := shares.get(sub)) is None:
                    shares[sub] = [e]
                else:
                    share.append(e)
        for sub, share in shares.items():
            sub.offer(share, self.queue_limit)
        self.last_position = events[-1].position

    def audience_of(self, e: Delivered) -> list[Subscriber]:
        with self.lock:
            audience = [sub for sub in self.audience.candidates(e) if sub.may_see(e)]
            if e.type == "card.presented":  # that till now watches the card
                for sub in audience:
                    if sub.device_id == e.device_id:
                        self.audience.watch(sub, e.card_id, e.created_at)
        return audience

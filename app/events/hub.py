"""The event hub: one per app process. It sequences committed events, learns of new ones, and
hands each to the local streams allowed to see it.

It is the loop that joins the parts, each in a module of its own and readable alone:

- ``app.events.fanout``: the open streams and who may see what, all in memory;
- ``app.events.sequencing``: the sequencing statement and its rounds, paced under load;
- ``app.events.election``: which process sequences, the listening connection, and the asks
  the others send it.

One background thread does the work and, on PostgreSQL, one more holds the process's single
listening connection (see ``Election``). A wake-up is only a hint: the thread also looks once
a second, and the database rows are the truth. Threads that must run as long as the hub and
hear of its rounds (the webhook worker) run beside it as its ``companions``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

import psycopg
from sqlalchemy import text
from sqlalchemy.engine import Engine

from app.core.db import read_only
from app.events.election import Election
from app.events.fanout import Audience, Fanout, Subscriber
from app.events.outbox import Delivered, fetch_after
from app.events.sequencing import PlainConnection, Sequencer

log = logging.getLogger(__name__)

SAFETY_POLL_S = 1.0
#: A process asks the sequencer again after this long without an answer (a process with no
#: open stream hears no answers: it asks at most this often).
ASK_AGAIN_S = 0.01


class Companion(Protocol):
    """A thread that runs as long as the hub does, and hears when a sequencing round in this
    process wrote rows for the followers (``app.events.sequencing.Follower``)."""

    def start(self) -> None: ...

    def rows_written(self) -> None: ...

    def stop(self) -> None: ...


class EventHub:
    """This process's hub: its fan-out, its sequencing rounds (while it sequences) and, on
    PostgreSQL, its part in the election; started on first use (``app.events.api.hub``)."""

    def __init__(
        self,
        engine: Engine,
        listen_dsn: str | None,
        *,
        companions: Sequence[Companion] = (),
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
        self.companions = list(companions)
        self.listen_dsn = listen_dsn  # a libpq URL on PostgreSQL; None on SQLite
        self.wake = threading.Event()
        self.stopping = threading.Event()
        self.fanout = Fanout(queue_limit)
        plain = PlainConnection(listen_dsn) if listen_dsn is not None else None
        self.sequencer = Sequencer(engine, plain)
        self.election: Election | None = None
        if listen_dsn is not None:
            self.election = Election(
                listen_dsn, plain, asks_host, self.stopping,
                streams_open=lambda: bool(self.fanout.audience.all), wake=self.wake.set,
                look=self._look_anyway, announced=self._sequenced, moved=self._ask_again,
            )  # fmt: skip
        #: Look in the database next round even if nothing was announced.
        self._look_now = False
        self.threads: list[threading.Thread] = []
        self.ready = self.election.ready if self.election is not None else threading.Event()

    # --- life cycle --------------------------------------------------------------------

    def start(self) -> EventHub:
        if self.listen_dsn is None:
            self._sequence_if_leader()  # the one process: what committed before is history
        self.fanout.last_position = self._max_position()
        worker = threading.Thread(target=self._run, name="omnicard-event-hub", daemon=True)
        beat = threading.Thread(target=self._beat, name="omnicard-heartbeat", daemon=True)
        self.threads += [worker, beat]
        beat.start()
        if self.election is not None:
            self.threads.append(self.election.thread)
            self.election.thread.start()
        else:
            self.ready.set()
        worker.start()
        for companion in self.companions:
            companion.start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        self.wake.set()
        if self.election is not None:
            self.election.listen_changed.set()
        for companion in self.companions:
            companion.stop()
        for t in self.threads:
            t.join(timeout=5)
        self.fanout.close_all()
        self.sequencer.close()
        if self.election is not None:
            self.election.close()

    def close_streams(self) -> None:
        """The server is shutting down: end every open stream now, and any that opens from now
        on as soon as it has replayed (its client resumes from its ``Last-Event-ID``, on
        another server or this one's successor). The hub itself goes on sequencing, for the
        requests that are still finishing."""
        self.fanout.close_all(for_good=True)

    @property
    def audience(self) -> Audience:
        """The streams open in this process (the fan-out's)."""
        return self.fanout.audience

    @property
    def leader(self) -> bool:
        """Whether this process holds the sequencer's lock (PostgreSQL)."""
        return self.election is not None and self.election.leader

    def poke(self) -> None:
        """Something committed here: look now. A process that neither sequences nor serves
        streams only has to ask the sequencer: by datagram it asks from the committing thread
        itself, without waking its hub's thread, unless it asked a moment ago (then the hub's
        thread asks again when the moment has passed)."""
        election = self.election
        if election is not None:
            asks = election.sequencer_asks
            if asks is not None and not election.leader and not self.fanout.audience.all:
                now = time.monotonic()
                if self.asked_at is None or now - self.asked_at >= ASK_AGAIN_S:
                    self.asked_at = now
                    if election.send_datagram(asks):
                        return
        self._pending_here = True
        self.wake.set()

    # --- subscribers -------------------------------------------------------------------

    def subscribe(self, sub: Subscriber) -> Subscriber:
        def first() -> None:
            # Nobody was listening, so nothing was fetched: start from now (each new stream
            # replays what it missed from the database itself).
            self.fanout.last_position = self._max_position()
            if self.election is not None and not self.election.leader:
                self.election.listen_changed.set()  # it must now hear the sequencer's news

        self.fanout.add(sub, first=first)
        return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        self.fanout.remove(sub)

    def watch(self, sub: Subscriber, presented: dict[int, datetime]) -> None:
        """Cards presented to ``sub``'s till (found in the database on a replay)."""
        self.fanout.watch(sub, presented)

    def _beat(self) -> None:
        """Wake the streams that have sent nothing for a heartbeat's time (and only those:
        a busy stream needs none). Idle streams are looked for twice a period."""
        while not self.stopping.wait(self.heartbeat_s / 2):
            for sub in self.fanout.idle(time.monotonic(), self.heartbeat_s):
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
            if woken and self.sequencing() and not self.sequencer.backlog:
                # Under load, let the commits of the next few milliseconds join this round:
                # one transaction and one NOTIFY for them all.
                time.sleep(self.sequencer.pacer.wait_s(time.monotonic()))
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
        try:
            sequenced, written = self.sequencer.round()
        except Exception:
            self._pending_here = True  # look again next round, on a fresh connection
            raise
        if self.sequencer.backlog:
            self._pending_here = True
            self.wake.set()
        if written:
            for companion in self.companions:
                companion.rows_written()
        if sequenced:
            self.known_top = max(self.known_top, sequenced[-1].position)
        return sequenced

    def sequencing(self) -> bool:
        """Whether this process is the sequencer (on SQLite, each process is its own)."""
        return self.election is None or self.election.leader

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
            self.election.ask()
        except psycopg.Error:
            self._pending_here, self.asked_at = True, None  # ask again next round
            raise

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
        if self.fanout.audience.all or self._pending_here:
            self.wake.set()

    def _ask_again(self) -> None:
        """Ask the sequencer at once, whatever was asked before (from the listener thread:
        the sequencer has changed)."""
        self._pending_here, self.asked_at = True, None
        self.wake.set()

    def _look_anyway(self) -> None:
        """Look in the database next round, announced or not (from the listener thread)."""
        self._look_now = True
        self.wake.set()

    def _dispatch_new(self, sequenced: list[Delivered], *, look_anyway: bool = False) -> None:
        """Hand the events after the last one dispatched to the streams that may see them:
        those this process just sequenced, if they follow on, else read from the database."""
        fanout = self.fanout
        if not fanout.audience.all:
            return
        if sequenced and sequenced[0].position == fanout.last_position + 1:
            fanout.hand_out(sequenced)
        if self.known_top <= fanout.last_position and not look_anyway:
            return  # nothing announced beyond what was dispatched
        while True:
            with read_only(self.engine) as c:
                events = fetch_after(c, fanout.last_position, 1000)
            if not events:
                return
            fanout.hand_out(events)
            if len(events) < 1000:
                return

    def sequenced_position(self) -> int:
        """The newest event delivered to anyone so far (from the database)."""
        return self._max_position()

    def _max_position(self) -> int:
        with read_only(self.engine) as c:
            return c.execute(text("SELECT COALESCE(MAX(position), 0) FROM events")).scalar()

"""Sequencing: moving committed events from the outbox into the log, numbered in commit order.

One process at a time sequences (see ``app.events.election``; on SQLite, the one process). A
round takes a batch of committed transactions' events out of the outbox, gives each the next
position, writes it to the log, writes what other parts of Omnicard keep for every event (the
``Follower`` rows: webhook deliveries), and announces the new top. On PostgreSQL a round is one
prepared statement, one round trip, on the sequencer's own connection: this is its hot loop,
and a pipelined transaction of four statements cost it several times the CPU (see
docs/benchmarks.md). Under load the rounds are paced (``RoundPacer``) so that more events share
a round's fixed cost.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import psycopg
from sqlalchemy import Integer, Text, column, delete, func, insert, select, text
from sqlalchemy.engine import Connection, Engine

from app.core.db import POSTGRESQL_OPTIONS
from app.events.models import Event, OutboxEntry
from app.events.outbox import EVENT_COLUMNS, Delivered

#: The sequencer announces the newest position on this channel after each round.
EVENTS_CHANNEL = "omnicard_events"
#: Transactions whose events are numbered in one sequencing round at the most.
SEQUENCE_BATCH = 1000

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


@dataclass(frozen=True)
class Follower:
    """Rows another part of Omnicard writes for sequenced events, in the round's own
    transaction, so that each event gets them exactly once and only if it is logged. The part
    keeps its rule in one place and gives it in the two forms a round takes:

    - ``sql``: for PostgreSQL, the body of a data-modifying ``WITH`` query over ``logged``
      (the events just logged: position, type, created_at, customer_id, store_id, device_id,
      card_id, payload as jsonb), returning one row per row written; with no ``%`` (psycopg's
      parameters) and no ``:name`` after a space (SQLAlchemy's);
    - ``write(connection, events)``: for SQLite, the same rows for ``events`` just logged,
      written on ``connection``; returns how many.
    """

    sql: str
    write: Callable[[Connection, list[Delivered]], int]


_followers: list[Follower] = []


def follow_sequencing(follower: Follower) -> None:
    """Have every sequencing round from now on write ``follower``'s rows too."""
    if "%" in follower.sql:  # psycopg would read it as a parameter
        raise ValueError("a follower's SQL may not hold a %")
    if follower not in _followers:
        _followers.append(follower)
        _statements.clear()


def sequence_committed(
    connection: Connection, batch: int = SEQUENCE_BATCH
) -> tuple[list[Delivered], int]:
    """Move every committed transaction's events from the outbox into the log, in outbox
    order, giving each its position, and write their followers' rows (one sequencer at a
    time holds the lock, so positions only grow; a second one's positions would collide with
    the first's and its round roll back). Returns the events just sequenced, in order (the
    sequencing process hands them on without reading them back), and how many followers'
    rows were written."""
    sequenced: list[Delivered] = []
    written = 0
    while True:
        if connection.dialect.name == "postgresql":
            rows = connection.execute(
                _statement("sqlalchemy"), {"batch": batch, "channel": EVENTS_CHANNEL}
            ).all()
            page = sorted((Delivered(*row[:-1]) for row in rows), key=lambda e: e.position)
            written += rows[0].written if rows else 0
        else:
            page = _sequence_in_python(connection, batch)
            written += sum(follower.write(connection, page) for follower in _followers)
        sequenced += page
        if len(page) < batch:
            return sequenced, written


def _sequence_in_python(connection: Connection, batch: int) -> list[Delivered]:
    """The sequencing statement's work, step by step (SQLite has no data-modifying WITH)."""
    taken = connection.execute(
        select(OutboxEntry.id, OutboxEntry.events).order_by(OutboxEntry.id).limit(batch)
    ).all()
    if not taken:
        return []
    top = connection.execute(select(func.coalesce(func.max(Event.position), 0))).scalar()
    rows = [
        {**event, "position": top + n, "created_at": datetime.fromisoformat(event["created_at"])}
        for n, event in enumerate((e for _, events in taken for e in events), start=1)
    ]
    connection.execute(delete(OutboxEntry).where(OutboxEntry.id.in_([id for id, _ in taken])))
    connection.execute(insert(Event), rows)
    return [
        Delivered(r["position"], r["type"], r["created_at"], r["customer_id"], r["store_id"],
                  r["device_id"], r["card_id"], json.dumps(r["payload"]))
        for r in rows
    ]  # fmt: skip


#: A sequencing round on PostgreSQL, in one statement and so one transaction: take a batch of
#: committed transactions' events out of the outbox; number them after the newest position and
#: write them to the log; write the followers' rows for them; and, if it numbered anything,
#: announce the new top to the listening processes (the NOTIFY goes out with the COMMIT). It
#: returns the events, and how many followers' rows it wrote.
_SEQUENCE_SQL = """
WITH taken AS (
    DELETE FROM event_outbox
    WHERE id IN (SELECT id FROM event_outbox ORDER BY id LIMIT {batch})
    RETURNING id, events
), logged AS (
    INSERT INTO events (position, type, created_at, customer_id, store_id, device_id, card_id,
                        payload)
    SELECT newest.top + row_number() OVER (ORDER BY taken.id, e.n), e.event->>'type',
           (e.event->>'created_at')::timestamptz, (e.event->>'customer_id')::bigint,
           (e.event->>'store_id')::bigint, (e.event->>'device_id')::bigint,
           (e.event->>'card_id')::bigint, (e.event->'payload')::jsonb
    FROM (SELECT COALESCE(MAX(position), 0) AS top FROM events) AS newest, taken,
         json_array_elements(taken.events) WITH ORDINALITY AS e(event, n)
    RETURNING position, type, created_at, customer_id, store_id, device_id, card_id, payload
), {followers}announced AS (
    SELECT pg_notify({channel}, MAX(position)::text) FROM logged HAVING COUNT(*) > 0
)
SELECT logged.position, logged.type, logged.created_at, logged.customer_id, logged.store_id,
       logged.device_id, logged.card_id, logged.payload::text, {written} AS written
FROM logged, announced
"""

#: The statement for the followers registered so far, by the driver it goes through.
_statements: dict[str, object] = {}


def _statement(through: str):
    """The round's statement: for "psycopg" (the sequencer's own connection) or for
    "sqlalchemy"."""
    if not _statements:
        followers = "".join(f"follower_{n} AS (\n{f.sql}\n), " for n, f in enumerate(_followers))
        written = (
            " + ".join(f"(SELECT COUNT(*) FROM follower_{n})" for n in range(len(_followers)))
            or "0"
        )

        def sql(batch: str, channel: str) -> str:
            return (
                _SEQUENCE_SQL.replace("{batch}", batch)
                .replace("{channel}", channel)
                .replace("{written}", written)
                .replace("{followers}", followers)  # last: its text is not a template
            )

        _statements["psycopg"] = sql("%(batch)s", "%(channel)s")
        _statements["sqlalchemy"] = text(sql(":batch", ":channel")).columns(
            *EVENT_COLUMNS[:-1], column("payload_json", Text), column("written", Integer)
        )
    return _statements[through]


def sequence_sql() -> str:
    """The round's statement for psycopg, with the followers registered so far."""
    return _statement("psycopg")


@dataclass
class RoundPacer:
    """How long the sequencer lets the next round wait, from the rate of events lately."""

    #: When the last sequencing round began.
    round_at: float = 0.0
    #: Events sequenced per second lately (a moving average over RATE_TIME_CONSTANT_S).
    events_per_s: float = 0.0

    def count(self, started: float, events: int) -> None:
        """A round that began at ``started`` sequenced ``events``: those committed since the
        previous round began."""
        elapsed = started - self.round_at
        if elapsed > 0:
            weight = 1.0 - math.exp(-elapsed / RATE_TIME_CONSTANT_S)
            self.events_per_s += weight * (events / elapsed - self.events_per_s)
        self.round_at = started

    def gap_s(self, now: float) -> float:
        """How long after the last round's start the next one may start: nothing while the
        system is quiet, up to ROUND_GAP_MAX_S under load (a lull since the last round
        counts as quiet)."""
        rate = self.events_per_s * math.exp(-(now - self.round_at) / RATE_TIME_CONSTANT_S)
        share = (rate - QUIET_EVENTS_PER_S) / (BUSY_EVENTS_PER_S - QUIET_EVENTS_PER_S)
        return ROUND_GAP_MAX_S * min(1.0, max(0.0, share))

    def wait_s(self, now: float) -> float:
        """How much longer the next round waits, at ``now``."""
        return max(0.0, self.gap_s(now) - (now - self.round_at))


class PlainConnection:
    """A hub's own psycopg connection to PostgreSQL, held for its life (no pool checkout and
    ping per round), in autocommit: for sequencing rounds while its process is the sequencer,
    and for asking the sequencer by NOTIFY otherwise. Opened when first wanted, and again
    after it was dropped."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        #: The connection, while it is open.
        self.opened: psycopg.Connection | None = None

    def get(self) -> psycopg.Connection:
        if self.opened is None:
            # Timestamps come back in UTC, as through the app's engine.
            self.opened = psycopg.connect(
                self.dsn, autocommit=True, options=f"-c TimeZone=UTC {POSTGRESQL_OPTIONS}"
            )
        return self.opened

    def drop(self) -> None:
        if self.opened is not None:
            self.opened.close()
            self.opened = None


class Sequencer:
    """This process's sequencing rounds, on its own connection: a SQLAlchemy one on SQLite,
    a plain psycopg one (``plain``) on PostgreSQL."""

    def __init__(self, engine: Engine, plain: PlainConnection | None) -> None:
        self.engine, self.plain = engine, plain
        self.pacer = RoundPacer()
        #: The last round took a full batch: more committed transactions may be waiting.
        self.backlog = False
        self._own: Connection | None = None

    def round(self) -> tuple[list[Delivered], int]:
        """Sequence what has committed: the events numbered, in order, and how many
        followers' rows were written. On failure the connection is dropped (the next round
        opens a fresh one) and the error raised."""
        started = time.monotonic()
        if self.plain is None:
            sequenced, written = self._round_here()
        else:
            sequenced, written = self._round_in_postgresql()
        self.pacer.count(started, len(sequenced))
        return sequenced, written

    def _round_here(self) -> tuple[list[Delivered], int]:
        """A round on SQLite, through the sequencer's own SQLAlchemy connection."""
        if self._own is None:
            self._own = self.engine.connect()
        c = self._own
        try:
            with c.begin():
                return sequence_committed(c)
        except Exception:
            self._own = None
            c.invalidate()
            raise

    def _round_in_postgresql(self) -> tuple[list[Delivered], int]:
        """A round on PostgreSQL: one prepared statement, one round trip, with no ORM."""
        try:
            rows = (
                self.plain.get()
                .execute(
                    sequence_sql(),
                    {"batch": SEQUENCE_BATCH, "channel": EVENTS_CHANNEL},
                    prepare=True,
                )  # fmt: skip
                .fetchall()
            )
        except psycopg.Error:
            self.plain.drop()
            raise
        sequenced = sorted((Delivered(*row[:-1]) for row in rows), key=lambda e: e.position)
        # A full batch of transactions, or more: more may be waiting, so another round at once.
        self.backlog = len(sequenced) >= SEQUENCE_BATCH
        return sequenced, rows[0][-1] if rows else 0

    def close(self) -> None:
        if self._own is not None:
            self._own.close()
            self._own = None
        if self.plain is not None:
            self.plain.drop()

"""What the app says to PostgreSQL, read off the wire: libpq's own trace of every connection
the app checks out of its pool while a block runs.

A round trip is a run of messages from the app followed by the server's answer: the app
waited. A statement is an Execute (extended protocol) or a Query (simple protocol).
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import psycopg
from sqlalchemy import event
from sqlalchemy.engine import Engine


@dataclass
class Wire:
    #: Each checkout's messages, in order: (sender "F" (the app) or "B" (the server), type).
    checkouts: list[list[tuple[str, str]]] = field(default_factory=list)

    @property
    def flights(self) -> list[list[str]]:
        """The app's messages of each round trip: what it sent before it waited for an answer."""
        found = []
        for messages in self.checkouts:
            sent: list[str] = []
            for who, kind in messages:
                if who == "F":
                    sent.append(kind)
                elif sent:
                    found.append(sent)
                    sent = []
        return found

    @property
    def round_trips(self) -> int:
        return len(self.flights)

    @property
    def preparations(self) -> int:
        """Round trips that only prepared a statement: psycopg prepares one on a connection
        once it has run five times, outside a pipeline with a round trip of its own (a Parse
        of a named statement, then a Sync); inside one, with the statement."""
        return sum(1 for sent in self.flights if set(sent) <= {"Parse named", "Sync"})

    @property
    def statements(self) -> list[str]:
        return [
            kind for messages in self.checkouts for who, kind in messages
            if who == "F" and kind in ("Execute", "Query")
        ]  # fmt: skip


def _messages(path: str) -> list[tuple[str, str]]:
    found = []
    with open(path, encoding="utf-8", errors="replace") as trace:
        for line in trace:
            parts = line.split("\t")
            if len(parts) >= 3 and parts[0] in ("F", "B"):
                kind = parts[2].strip()
                if kind == "Parse" and len(parts) > 3 and not parts[3].startswith(' ""'):
                    kind = "Parse named"
                found.append((parts[0], kind))
    return found


@contextmanager
def wire(engine: Engine) -> Iterator[Wire]:
    seen = Wire()
    tracing: dict[int, object] = {}

    def checkout(dbapi_connection, _record, _proxy) -> None:
        trace = tempfile.NamedTemporaryFile("w", suffix=".trace", delete=False)  # noqa: SIM115
        tracing[id(dbapi_connection)] = trace
        dbapi_connection.pgconn.trace(trace.fileno())
        dbapi_connection.pgconn.set_trace_flags(psycopg.pq.Trace.SUPPRESS_TIMESTAMPS)

    def checkin(dbapi_connection, _record) -> None:
        trace = tracing.pop(id(dbapi_connection), None)
        if trace is None:
            return
        dbapi_connection.pgconn.untrace()
        trace.close()
        seen.checkouts.append(_messages(trace.name))

    event.listen(engine, "checkout", checkout)
    event.listen(engine, "checkin", checkin)
    try:
        yield seen
    finally:
        event.remove(engine, "checkout", checkout)
        event.remove(engine, "checkin", checkin)

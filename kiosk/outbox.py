"""The kiosk's outbox of taps: one SQLite file in the state folder.

Each tap is written here with its tap_ref (a fresh uuid, the request's Idempotency-Key)
before it is first sent. The sender takes the oldest unsent tap, sends it, and marks it sent
when the API answered; a tap that got no answer is sent again with the same ref, and the
server counts it once. So taps made while the API is away, or before a crash, are sent once,
in the order they were made.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

PENDING, SENT, REFUSED = "pending", "sent", "refused"

SCHEMA = """
CREATE TABLE IF NOT EXISTS taps (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    tap_ref TEXT NOT NULL UNIQUE,
    tapped_at TEXT NOT NULL,
    body TEXT NOT NULL,
    -- pending: to send (again); sent: the API took it; refused: the API refused it for good.
    state TEXT NOT NULL DEFAULT 'pending',
    attempts INTEGER NOT NULL DEFAULT 0,
    status INTEGER,
    response TEXT,
    last_error TEXT,
    answered_at TEXT
);
CREATE INDEX IF NOT EXISTS taps_pending ON taps (state, id);
"""


def now_iso() -> str:
    return datetime.now(UTC).isoformat()


@dataclass
class QueuedTap:
    id: int
    tap_ref: str
    tapped_at: str
    body: dict
    state: str
    attempts: int
    status: int | None
    response: dict | None
    last_error: dict | None

    def summary(self) -> dict:
        return {
            "id": self.id, "tap_ref": self.tap_ref, "tapped_at": self.tapped_at,
            "state": self.state, "attempts": self.attempts, "status": self.status,
            "uid": self.body.get("uid"), "uris": self.body.get("uris"),
            "texts": self.body.get("texts"), "unreadable": self.body.get("unreadable"),
            "tap": (self.response or {}).get("tap"), "error": self.last_error,
        }  # fmt: skip


class Outbox:
    """Shared by the kiosk's threads (one connection, a lock)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(
            self.path, timeout=10, check_same_thread=False, isolation_level=None
        )
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")  # a written tap survives power loss
        self._db.executescript(SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def add(self, *, uid: str | None, uris=(), texts=(), unreadable: bool = False,
            tapped_at: str | None = None) -> QueuedTap:  # fmt: skip
        """Writes a tap down (durably) with a fresh tap_ref; the body is what will be sent."""
        tap_ref = str(uuid.uuid4())
        tapped_at = tapped_at or now_iso()
        body = {
            "tap_ref": tap_ref, "tapped_at": tapped_at, "uid": uid, "uris": list(uris),
            "texts": list(texts), "unreadable": bool(unreadable),
        }  # fmt: skip
        with self._lock:
            cur = self._db.execute(
                "INSERT INTO taps (tap_ref, tapped_at, body) VALUES (?, ?, ?)",
                (tap_ref, tapped_at, json.dumps(body)),
            )
            return self._get(cur.lastrowid)

    def _get(self, tap_id: int) -> QueuedTap:
        row = self._db.execute(
            "SELECT id, tap_ref, tapped_at, body, state, attempts, status, response, last_error "
            "FROM taps WHERE id = ?",
            (tap_id,),
        ).fetchone()
        if row is None:
            raise KeyError(tap_id)
        return QueuedTap(*row[:3], json.loads(row[3]), row[4], row[5], row[6],
                         _load(row[7]), _load(row[8]))  # fmt: skip

    def next_pending(self) -> QueuedTap | None:
        """The oldest tap not sent yet."""
        with self._lock:
            row = self._db.execute(
                "SELECT id FROM taps WHERE state = 'pending' ORDER BY id LIMIT 1"
            ).fetchone()
            return None if row is None else self._get(row[0])

    def attempted(self, tap_id: int) -> None:
        with self._lock:
            self._db.execute("UPDATE taps SET attempts = attempts + 1 WHERE id = ?", (tap_id,))

    def sent(self, tap_id: int, status: int, response: dict | None) -> None:
        self._answer(tap_id, SENT, status, response=response)

    def refused(self, tap_id: int, status: int, error: dict) -> None:
        self._answer(tap_id, REFUSED, status, error=error)

    def _answer(self, tap_id, state, status, *, response=None, error=None) -> None:
        with self._lock:
            self._db.execute(
                "UPDATE taps SET state = ?, status = ?, response = ?, last_error = ?, "
                "answered_at = ? WHERE id = ?",
                (state, status, _dump(response), _dump(error), now_iso(), tap_id),
            )

    def failed_attempt(self, tap_id: int, error: dict) -> None:
        """Still pending: note why."""
        with self._lock:
            self._db.execute(
                "UPDATE taps SET last_error = ? WHERE id = ?", (json.dumps(error), tap_id)
            )

    def taps(self, states: tuple[str, ...] | None = None, limit: int = 200) -> list[QueuedTap]:
        """The newest *limit* taps (in those states), oldest first."""
        with self._lock:
            where, args = "", ()
            if states:
                where = f" WHERE state IN ({','.join('?' * len(states))})"
                args = states
            ids = self._db.execute(
                f"SELECT id FROM taps{where} ORDER BY id DESC LIMIT ?", (*args, limit)
            ).fetchall()
            return [self._get(i) for (i,) in reversed(ids)]

    def pending_count(self) -> int:
        with self._lock:
            return self._db.execute("SELECT count(*) FROM taps WHERE state = 'pending'").fetchone()[
                0
            ]


def _load(text):
    return None if text is None else json.loads(text)


def _dump(value):
    return None if value is None else json.dumps(value)

"""The till's outbox: one SQLite file in the state folder.

Every request that moves value is written here, with a fresh Idempotency-Key, before it is
first sent, and its answer is written when it comes. So a till that crashes, loses power or
loses the network between the two still knows what it asked, and sends it again with the same
key: the server does it once and answers the first outcome again. Requests queued while the
API was unreachable are replayed in the order they were made.

It also keeps the offline allowances the server granted this till: what is left of each, and
how to recognise its card (HMACs of the card number and NFC UID, never the card itself).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import sqlite3
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS requests (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    method TEXT NOT NULL,
    path TEXT NOT NULL,
    body TEXT,
    idempotency_key TEXT NOT NULL UNIQUE,
    token TEXT,
    created_at TEXT NOT NULL,
    -- pending: to send (again); done: answered 2xx; refused: answered 4xx on replay (kept,
    -- shown); rejected: answered 4xx at once; cancelled: never reached the server (the
    -- cashier was told it failed).
    state TEXT NOT NULL DEFAULT 'pending',
    offline INTEGER NOT NULL DEFAULT 0,
    attempts INTEGER NOT NULL DEFAULT 0,
    claimed_until REAL NOT NULL DEFAULT 0,
    claimed_pid INTEGER,
    status INTEGER,
    response TEXT,
    local TEXT,
    last_error TEXT,
    answered_at TEXT
);
CREATE INDEX IF NOT EXISTS requests_pending ON requests (state, id);
CREATE TABLE IF NOT EXISTS allowances (
    id INTEGER PRIMARY KEY,
    card_id INTEGER NOT NULL,
    token TEXT NOT NULL,
    amount_minor INTEGER NOT NULL,
    left_minor INTEGER NOT NULL,
    expires_at TEXT NOT NULL,
    salt TEXT NOT NULL,
    card_number_hmac TEXT,
    nfc_uid_hmac TEXT,
    last4 TEXT,
    holder TEXT,
    status TEXT NOT NULL DEFAULT 'live'
);
"""

PENDING, DONE, REFUSED, CANCELLED = "pending", "done", "refused", "cancelled"
REJECTED = "rejected"  # refused at its first attempt, while the cashier waited


def now_iso() -> str:
    return datetime.now(UTC).isoformat()


def match_hmac(salt: str, value: str) -> str:
    """How the server fingerprints a card for an allowance: hex HMAC-SHA256 under the salt."""
    return hmac.new(salt.encode(), value.encode(), hashlib.sha256).hexdigest()


@dataclass
class Entry:
    id: int
    kind: str
    method: str
    path: str
    body: dict | None
    idempotency_key: str
    token: str | None
    created_at: str
    state: str
    offline: bool
    attempts: int
    status: int | None
    response: dict | None
    local: dict | None
    last_error: dict | None

    def summary(self) -> dict:
        return {
            "id": self.id, "kind": self.kind, "path": self.path, "state": self.state,
            "offline": self.offline, "attempts": self.attempts, "created_at": self.created_at,
            "idempotency_key": self.idempotency_key, "status": self.status,
            "error": self.last_error if self.state in (REFUSED, REJECTED, CANCELLED) else None,
            "last_error": self.last_error, "response": self.response, "local": self.local,
        }  # fmt: skip


@dataclass
class Allowance:
    id: int
    card_id: int
    token: str
    amount_minor: int
    left_minor: int
    expires_at: str
    last4: str | None
    holder: dict | None
    status: str

    def body(self) -> dict:
        return {
            "id": self.id, "card_id": self.card_id, "amount_minor": self.amount_minor,
            "left_minor": self.left_minor, "expires_at": self.expires_at, "last4": self.last4,
            "holder": self.holder, "status": self.status,
        }  # fmt: skip

    @property
    def expired(self) -> bool:
        return datetime.fromisoformat(self.expires_at.replace("Z", "+00:00")) <= datetime.now(UTC)


def _load(text):
    return None if text is None else json.loads(text)


class Outbox:
    """The outbox file. Safe to share between the till's threads (one connection, a lock) and
    between processes on one till (SQLite's own locking; claims keep two from sending one
    request at once, and the shared key makes even that harmless)."""

    def __init__(self, path: str | os.PathLike, *, claim_s: float = 30.0):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)  # it holds session tokens
        os.close(fd)
        self.claim_s = claim_s
        self._lock = threading.RLock()
        self._db = sqlite3.connect(
            self.path, timeout=10, check_same_thread=False, isolation_level=None
        )
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")  # a written request survives power loss
        self._db.executescript(SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _tx(self):
        return _Tx(self)

    # requests -----------------------------------------------------------------------------

    def add(
        self, kind: str, method: str, path: str, body: dict | None, *, token: str | None,
        offline: bool = False, local: dict | None = None, claim: bool = True,
        allowance_use: tuple[int, int] | None = None,
    ) -> Entry:  # fmt: skip
        """Write a request down with a fresh key (durably, before anything is sent). With
        `claim`, this process is about to send it and the replayer leaves it alone for a while.
        `allowance_use` (allowance id, amount) takes that much from what is left of an offline
        allowance in the same transaction, or raises `AllowanceExhausted`."""
        key = f"pos-{uuid.uuid4()}"
        with self._tx() as db:
            if allowance_use is not None:
                allowance_id, amount = allowance_use
                cur = db.execute(
                    "UPDATE allowances SET left_minor = left_minor - ? WHERE id = ? AND "
                    "status = 'live' AND left_minor >= ?",
                    (amount, allowance_id, amount),
                )
                if cur.rowcount != 1:
                    raise AllowanceExhausted(allowance_id)
            cur = db.execute(
                "INSERT INTO requests (kind, method, path, body, idempotency_key, token, "
                "created_at, offline, local, claimed_until, claimed_pid) "
                "VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                (kind, method, path, json.dumps(body), key, token, now_iso(), int(offline),
                 json.dumps(local) if local is not None else None,
                 time.time() + self.claim_s if claim else 0, os.getpid()),
            )  # fmt: skip
            return self._get(db, cur.lastrowid)

    def get(self, entry_id: int) -> Entry:
        with self._lock:
            return self._get(self._db, entry_id)

    def _get(self, db, entry_id: int) -> Entry:
        row = db.execute(
            "SELECT id, kind, method, path, body, idempotency_key, token, created_at, state, "
            "offline, attempts, status, response, local, last_error FROM requests WHERE id = ?",
            (entry_id,),
        ).fetchone()
        if row is None:
            raise KeyError(entry_id)
        return Entry(
            row[0], row[1], row[2], row[3], _load(row[4]), row[5], row[6], row[7], row[8],
            bool(row[9]), row[10], row[11], _load(row[12]), _load(row[13]), _load(row[14]),
        )  # fmt: skip

    def attempted(self, entry_id: int) -> None:
        """About to send: from now on the body is what the server may have seen."""
        with self._tx() as db:
            db.execute("UPDATE requests SET attempts = attempts + 1 WHERE id = ?", (entry_id,))

    def go_offline(self, entry_id: int, body: dict, local: dict | None,
                   allowance_use: tuple[int, int] | None = None) -> Entry:  # fmt: skip
        """A request that never reached the server becomes an offline one (its body gains the
        offline marker; safe because the server has never seen this key)."""
        with self._tx() as db:
            if allowance_use is not None:
                allowance_id, amount = allowance_use
                cur = db.execute(
                    "UPDATE allowances SET left_minor = left_minor - ? WHERE id = ? AND "
                    "status = 'live' AND left_minor >= ?",
                    (amount, allowance_id, amount),
                )
                if cur.rowcount != 1:
                    raise AllowanceExhausted(allowance_id)
            db.execute(
                "UPDATE requests SET body = ?, local = ?, offline = 1, claimed_until = 0 "
                "WHERE id = ? AND state = 'pending'",
                (json.dumps(body), json.dumps(local) if local is not None else None, entry_id),
            )
            return self._get(db, entry_id)

    def answered(self, entry_id: int, status: int, response: dict | None) -> Entry:
        with self._tx() as db:
            db.execute(
                "UPDATE requests SET state = 'done', status = ?, response = ?, answered_at = ?, "
                "claimed_until = 0 WHERE id = ?",
                (status, json.dumps(response), now_iso(), entry_id),
            )
            return self._get(db, entry_id)

    def refused(self, entry_id: int, status: int, error: dict, *, replayed: bool) -> Entry:
        """The API refused it: kept, and shown in the queue if it was refused on replay (the
        cashier who made it has moved on); refused at once, the cashier saw it then."""
        with self._tx() as db:
            db.execute(
                "UPDATE requests SET state = ?, status = ?, last_error = ?, "
                "answered_at = ?, claimed_until = 0 WHERE id = ?",
                (REFUSED if replayed else REJECTED, status, json.dumps(error), now_iso(),
                 entry_id),
            )  # fmt: skip
            return self._get(db, entry_id)

    def cancel(self, entry_id: int, reason: str) -> None:
        """The request never reached the server and will not be sent (the cashier was told)."""
        with self._tx() as db:
            db.execute(
                "UPDATE requests SET state = 'cancelled', last_error = ?, claimed_until = 0 "
                "WHERE id = ? AND state = 'pending'",
                (json.dumps({"code": "unreachable", "message": reason}), entry_id),
            )

    def failed_attempt(self, entry_id: int, error: dict) -> None:
        """Still pending (no answer, or the server could not decide): note why, free it."""
        with self._tx() as db:
            db.execute(
                "UPDATE requests SET last_error = ?, claimed_until = 0 WHERE id = ?",
                (json.dumps(error), entry_id),
            )

    def claim_next(self) -> Entry | None:
        """The oldest pending request nobody is sending, claimed for this process."""
        with self._tx() as db:
            row = db.execute(
                "SELECT id, claimed_until, claimed_pid FROM requests WHERE state = 'pending' "
                "ORDER BY id LIMIT 1"
            ).fetchone()
            if row is None:
                return None
            if row[1] > time.time() and row[2] != os.getpid() and _alive(row[2]):
                return None  # in order: never pass the oldest while someone sends it
            db.execute(
                "UPDATE requests SET claimed_until = ?, claimed_pid = ? WHERE id = ?",
                (time.time() + self.claim_s, os.getpid(), row[0]),
            )
            return self._get(db, row[0])

    def release(self, entry_id: int) -> None:
        with self._tx() as db:
            db.execute("UPDATE requests SET claimed_until = 0 WHERE id = ?", (entry_id,))

    def entries(self, states: tuple[str, ...] | None = None, limit: int = 200) -> list[Entry]:
        with self._lock:
            if states:
                marks = ",".join("?" * len(states))
                ids = self._db.execute(
                    f"SELECT id FROM requests WHERE state IN ({marks}) ORDER BY id DESC LIMIT ?",
                    (*states, limit),
                ).fetchall()
            else:
                ids = self._db.execute(
                    "SELECT id FROM requests ORDER BY id DESC LIMIT ?", (limit,)
                ).fetchall()
            return [self._get(self._db, i) for (i,) in reversed(ids)]

    def pending_count(self) -> int:
        with self._lock:
            return self._db.execute(
                "SELECT count(*) FROM requests WHERE state = 'pending'"
            ).fetchone()[0]

    def refused_unseen(self) -> list[Entry]:
        return self.entries((REFUSED,))

    # offline allowances -------------------------------------------------------------------

    def keep_allowance(self, body: dict) -> Allowance:
        """Keep (or refresh) an allowance the server granted; what is left counts what the
        server says was used, and never grows back from what this till spent offline."""
        left = body["amount"]["amount"] - body.get("used", {}).get("amount", 0)
        match = body["match"]
        with self._tx() as db:
            db.execute(
                "INSERT INTO allowances (id, card_id, token, amount_minor, left_minor, "
                "expires_at, salt, card_number_hmac, nfc_uid_hmac, last4, holder) "
                "VALUES (?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT (id) DO UPDATE SET "
                "left_minor = min(allowances.left_minor, excluded.left_minor), "
                "token = excluded.token, holder = excluded.holder",
                (body["id"], body["card_id"], body["token"], body["amount"]["amount"], left,
                 body["expires_at"], match["salt"], match.get("card_number_hmac"),
                 match.get("nfc_uid_hmac"), body.get("last4"),
                 json.dumps(body.get("holder"))),
            )  # fmt: skip
            return self._allowance(db, body["id"])

    def _allowance(self, db, allowance_id: int) -> Allowance:
        row = db.execute(
            "SELECT id, card_id, token, amount_minor, left_minor, expires_at, last4, holder, "
            "status FROM allowances WHERE id = ?",
            (allowance_id,),
        ).fetchone()
        return Allowance(*row[:7], _load(row[7]), row[8])

    def allowances(self, status: str | None = "live") -> list[Allowance]:
        with self._lock:
            query = "SELECT id FROM allowances"
            args: tuple = ()
            if status:
                query, args = query + " WHERE status = ?", (status,)
            ids = self._db.execute(query + " ORDER BY id", args).fetchall()
            return [self._allowance(self._db, i) for (i,) in ids]

    def allowance_for_card(self, card_id: int) -> Allowance | None:
        for allowance in self.allowances():
            if allowance.card_id == card_id and not allowance.expired:
                return allowance
        return None

    def match_allowance(self, *, card_number: str | None = None,
                        nfc_uid: str | None = None) -> Allowance | None:  # fmt: skip
        """The live allowance of the card presented, recognised by its HMACs."""
        with self._lock:
            rows = self._db.execute(
                "SELECT id, salt, card_number_hmac, nfc_uid_hmac FROM allowances "
                "WHERE status = 'live' ORDER BY id DESC"
            ).fetchall()
            for allowance_id, salt, number_mac, uid_mac in rows:
                if (
                    card_number
                    and number_mac
                    and hmac.compare_digest(match_hmac(salt, card_number), number_mac)
                    or nfc_uid
                    and uid_mac
                    and hmac.compare_digest(match_hmac(salt, nfc_uid.upper()), uid_mac)
                ):
                    found = self._allowance(self._db, allowance_id)
                else:
                    continue
                if not found.expired:
                    return found
            return None

    def allowance_released(self, allowance_id: int) -> None:
        with self._tx() as db:
            db.execute("UPDATE allowances SET status = 'released' WHERE id = ?", (allowance_id,))


def _alive(pid: int | None) -> bool:
    """Whether the process that claimed a request still runs (a till killed mid-send leaves
    its claim behind; the next start must not wait it out)."""
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class AllowanceExhausted(Exception):
    """What is left of the card's offline allowance does not cover the card-balance tender."""


class _Tx:
    def __init__(self, outbox: Outbox):
        self.outbox = outbox

    def __enter__(self):
        self.outbox._lock.acquire()
        self.outbox._db.execute("BEGIN IMMEDIATE")
        return self.outbox._db

    def __exit__(self, kind, value, tb):
        try:
            self.outbox._db.execute("ROLLBACK" if kind else "COMMIT")
        finally:
            self.outbox._lock.release()

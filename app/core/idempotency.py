"""Idempotency keys: a value-moving request carries ``Idempotency-Key``; a replay of it returns
the first answer, and the same key with a different request is refused.

The key is claimed by inserting its row at the start of the request's own database transaction,
so a concurrent request with the same key waits on that row until the first commits, then
replays its answer; if the first fails and rolls back, its claim vanishes with it and the retry
runs afresh. Exactly one effect per key, whatever the timing.

On PostgreSQL the claim costs no round trip of its own: it is sent ahead, with the view's first
statement, and heard before that statement's answer. A claim that finds the key taken stops the
view there (``KeyHeld``), before anything it did is kept, and the request replays instead.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from dataclasses import dataclass
from datetime import datetime

from flask import Response, current_app, g, request
from sqlalchemy import String, Text, bindparam, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Mapped, Session, mapped_column

from app.core.db import Base, send_ahead, send_ahead_now, session, write_at_commit
from app.core.errors import DomainError
from app.core.types import UtcDateTime, utcnow

HEADER = "Idempotency-Key"
MAX_KEY_LENGTH = 255
#: What a key may be: visible ASCII, no spaces. Every HTTP stack passes these bytes unchanged,
#: so the key a client stored is the key the server compares, and a character is a byte.
KEY_PATTERN = f"^[!-~]{{1,{MAX_KEY_LENGTH}}}$"
KEY_RULE = f"1-{MAX_KEY_LENGTH} visible ASCII characters (! to ~, no spaces)"


class IdempotencyKeyMissing(DomainError):
    code = "idempotency_key_missing"
    http_status = 400
    message = f"This request moves value: send an {HEADER} header of {KEY_RULE}."


class IdempotencyKeyInvalid(DomainError):
    code = "idempotency_key_invalid"
    http_status = 400
    message = f"An {HEADER} is {KEY_RULE}."


class IdempotencyKeyReused(DomainError):
    code = "idempotency_key_reused"
    http_status = 409
    message = "This Idempotency-Key was already used for a different request."


class RequestInProgress(DomainError):
    code = "request_in_progress"
    http_status = 409
    message = "A request with this Idempotency-Key is still being carried out; retry shortly."


class IdempotencyRecord(Base):
    __tablename__ = "idempotency_keys"

    #: Who sent it, as ``kind:id``: keys are scoped to their sender.
    principal: Mapped[str] = mapped_column(String(80), primary_key=True)
    key: Mapped[str] = mapped_column(String(MAX_KEY_LENGTH), primary_key=True)
    #: SHA-256 of the method, path and canonical JSON body.
    request_hash: Mapped[str] = mapped_column(String(64))
    status_code: Mapped[int | None]
    #: The first answer's body exactly as it was sent, so that a replay is the same bytes.
    response_body: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class KeyHeld(Exception):
    """Raised where the view stands when its claim comes back refused: the key was taken (by a
    request that has committed, or that committed part of its work). Not an answer: the
    decorator rolls the view back and replays."""


@dataclass(frozen=True)
class Replay:
    """What the first request with the key answered; ``status_code`` None while unfinished
    (the first request committed part of its work and has not answered yet)."""

    status_code: int | None
    body: str | None


def request_fingerprint(method: str, path: str, body: object) -> str:
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    # JSON can spell a lone surrogate (\ud800), which UTF-8 cannot: the schema refuses it
    # after this, and until then it must not stop the hashing.
    text = f"{method} {path}\n{canonical}"
    return hashlib.sha256(text.encode(errors="surrogatepass")).hexdigest()


def claim(s: Session, principal: str, key: str, fingerprint: str) -> Replay | None:
    """Claim ``key`` for this request, or return the answer of the request that holds it.

    Raises IdempotencyKeyReused when the key was used for a different request.
    """
    claiming = _CLAIM[s.get_bind().dialect.name == "postgresql"]
    values = {"principal": principal, "key": key, "request_hash": fingerprint, "at": utcnow()}
    inserted = s.execute(claiming, values).scalar()
    if inserted is not None:
        return None
    return held(s, principal, key, fingerprint)


def claim_ahead(s: Session, principal: str, key: str, fingerprint: str) -> Connection:
    """Claim ``key`` with the next statement the request sends (on PostgreSQL; elsewhere now),
    on the connection it returns.

    Raises KeyHeld, from that statement, when the key is taken.
    """
    connection = s.connection()
    if connection.dialect.name != "postgresql":
        if claim(s, principal, key, fingerprint) is not None:
            raise KeyHeld()
    else:
        send_ahead(connection, _CLAIM_SQL, (principal, key, fingerprint, utcnow()), _claimed)
    return connection


def _claimed(rows: list[tuple]) -> None:
    if not rows:
        raise KeyHeld()


def held(s: Session, principal: str, key: str, fingerprint: str) -> Replay:
    """The answer of the request that holds ``key``. Raises IdempotencyKeyReused when it was
    another request."""
    table = IdempotencyRecord.__table__
    held = s.execute(
        select(table.c.request_hash, table.c.status_code, table.c.response_body).where(
            table.c.principal == principal, table.c.key == key
        )
    ).one()
    if held.request_hash != fingerprint:
        raise IdempotencyKeyReused(key=key)
    return Replay(held.status_code, held.response_body)


def _claiming(dialect) -> object:
    table = IdempotencyRecord.__table__
    return (
        dialect.insert(table)
        .values(created_at=bindparam("at"))
        .on_conflict_do_nothing()
        .returning(table.c.key)
    )


#: The claim's statement, built once (by "is it PostgreSQL?").
_CLAIM = {True: _claiming(postgresql), False: _claiming(sqlite)}
#: The same, as psycopg's SQL, to be sent ahead.
_CLAIM_SQL = (
    "INSERT INTO idempotency_keys (principal, key, request_hash, created_at) "
    "VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING RETURNING key"
)


def record(s: Session, principal: str, key: str, status_code: int, body: str) -> None:
    """The answer, kept for replays: written with the commit, with everything else it answers."""
    write_at_commit(
        s,
        _RECORD,
        {"who": principal, "the_key": key, "status_code": status_code, "response_body": body},
    )


_RECORD = (
    update(IdempotencyRecord.__table__)
    .where(
        IdempotencyRecord.__table__.c.principal == bindparam("who"),
        IdempotencyRecord.__table__.c.key == bindparam("the_key"),
    )
    .values(status_code=bindparam("status_code"), response_body=bindparam("response_body"))
)


def key_of_request() -> str:
    """The request's ``Idempotency-Key``.

    Raises IdempotencyKeyMissing when there is none, IdempotencyKeyInvalid when it is not
    ``KEY_RULE``.
    """
    key = request.headers.get(HEADER, "")
    if not key:
        raise IdempotencyKeyMissing()
    if not re.fullmatch(KEY_PATTERN, key):
        raise IdempotencyKeyInvalid()
    return key


def idempotent(principal_of, *, resumable: bool = False):
    """Make a view idempotent per (principal, ``Idempotency-Key``).

    ``principal_of()`` names the caller as ``kind:id``. Only final successes (200, 201) are
    stored; an error rolls the claim back with everything else, so the key may be tried
    again. A ``resumable`` view may commit part of its work early (a top-up written down as
    pending before the bank card is charged); a retry then runs the view again, which finds
    its own earlier work through ``g.idempotency_key`` and carries on from there.
    """

    def decorator(view):
        @functools.wraps(view)
        def wrapper(*args, **kwargs):
            key = key_of_request()
            principal = principal_of()
            body = request.get_json(silent=True)
            fingerprint = request_fingerprint(request.method, request.path, body)
            s = session()
            g.idempotency_key = key
            if resumable:  # it commits early: the claim must be known before anything
                replay = claim(s, principal, key, fingerprint)
                if replay is not None and replay.status_code is not None:
                    return _replayed(replay)
                response = current_app.make_response(view(*args, **kwargs))
            else:
                try:
                    response = _claimed_and_run(s, principal, key, fingerprint, view, args, kwargs)
                except KeyHeld:
                    s.rollback()  # whatever the view had begun
                    replay = held(s, principal, key, fingerprint)
                    if replay.status_code is None:
                        raise RequestInProgress() from None
                    return _replayed(replay)
            if response.status_code in (200, 201):
                record(s, principal, key, response.status_code, response.get_data(as_text=True))
            return response

        return wrapper

    return decorator


def _claimed_and_run(s: Session, principal: str, key: str, fingerprint: str, view, args, kwargs):
    """The view's answer, its claim sent with its first statement. Raises KeyHeld."""
    connection = claim_ahead(s, principal, key, fingerprint)
    try:
        response = current_app.make_response(view(*args, **kwargs))
    except KeyHeld:
        raise
    except Exception:
        # A view that failed before it sent anything: the claim decides whether the answer
        # is this error, or the first request's (a replay, a key reused).
        send_ahead_now(connection)
        raise
    send_ahead_now(connection)
    return response


def _replayed(replay: Replay) -> Response:
    response = current_app.response_class(
        replay.body, status=replay.status_code, mimetype="application/json"
    )
    response.headers["Idempotent-Replayed"] = "true"
    return response

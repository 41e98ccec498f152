"""Counting failures to slow down guessing (passwords, PINs, card security codes).

The guesser is throttled, never the guessed: a limit that a stranger's failures could fill
would let anyone lock a shopper out of their account, or a cashier out of their till, by
failing on purpose. So each guess is counted against its *own* subject, the pair of what is
guessed and who guesses it (an account and a client address, a staff code and a till), and
only the pair's own failures can refuse it outright. Wider counts (every address's failures
at one account, one address's failures at every account, one card's failures anywhere) only
make a pair that has failed itself a few times wait: a pair with a clean record still gets
through, so the owner at home logs in while their account is under attack, and a shop's
shared network stays open while someone in it sprays guesses.

A failure is written and committed at once, on its own, before the error goes back: the
request's rollback must not erase the evidence of a wrong guess.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Index, String, func, insert, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from app.auth.errors import TooManyAttempts
from app.core.db import Base
from app.core.types import BigId, UtcDateTime, utcnow

#: What a pair that has failed this often may no longer try while a wider count is over.
MOST_WHILE_UNDER_ATTACK = 3
SUBJECT_MAX = 120


class FailedAttempt(Base):
    __tablename__ = "failed_attempts"
    __table_args__ = (Index("ix_failed_attempts_scope_subject_at", "scope", "subject", "at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    #: What was guessed and by whom: ``login:pair``, ``login:account``, ``pin:pair``, ...
    scope: Mapped[str] = mapped_column(String(40))
    #: Who or what, as given when short enough; a SHA-256 otherwise (see ``subject``).
    subject: Mapped[str] = mapped_column(String(SUBJECT_MAX))
    at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


def subject(*parts: str) -> str:
    """One subject from its parts (``"email", "address"``), short enough for the column."""
    joined = "|".join(parts)
    if len(joined) <= SUBJECT_MAX and "\0" not in joined:
        return joined
    return "sha256:" + hashlib.sha256(joined.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(frozen=True)
class Limit:
    scope: str
    subject: str
    most: int
    window_s: int


def _failures(s: Session, limit: Limit) -> int:
    return s.scalar(
        select(func.count())
        .select_from(FailedAttempt)
        .where(
            FailedAttempt.scope == limit.scope,
            FailedAttempt.subject == limit.subject,
            FailedAttempt.at > utcnow() - timedelta(seconds=limit.window_s),
        )
    )


def refuse_if_over(
    s: Session,
    own: Limit,
    wider: Sequence[Limit] = (),
    *,
    most_under_attack: int = MOST_WHILE_UNDER_ATTACK,
) -> None:
    """Refuse a guess by ``own`` (the pair of guessed and guesser) once it has failed
    ``own.most`` times in its window; or, while any of the ``wider`` counts is over its
    limit, once it has failed ``most_under_attack`` times itself. Others' failures alone
    never refuse it.

    Raises TooManyAttempts.
    """
    mine = _failures(s, own)
    if mine >= own.most:
        raise TooManyAttempts(retry_after_s=own.window_s)
    if mine >= most_under_attack:
        for limit in wider:
            if _failures(s, limit) >= limit.most:
                # Over once either the attack or the guesser's own failures have aged out.
                raise TooManyAttempts(retry_after_s=min(own.window_s, limit.window_s))


def record_failure(s: Session, own: Limit, wider: Sequence[Limit] = ()) -> None:
    """Write one failure for ``own`` and each of ``wider``, and commit it now."""
    now = utcnow()
    s.execute(
        insert(FailedAttempt),
        [{"scope": lim.scope, "subject": lim.subject, "at": now} for lim in (own, *wider)],
    )
    s.commit()

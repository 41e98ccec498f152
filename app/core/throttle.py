"""Counting failures to slow down guessing (passwords, PINs, card security codes).

A failure is written and committed at once, on its own, before the error goes back: the
request's rollback must not erase the evidence of a wrong guess.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta

from sqlalchemy import Index, String, func, insert, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from app.auth.errors import TooManyAttempts
from app.core.db import Base
from app.core.types import BigId, UtcDateTime, utcnow


class FailedAttempt(Base):
    __tablename__ = "failed_attempts"
    __table_args__ = (Index("ix_failed_attempts_scope_subject_at", "scope", "subject", "at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    #: What was guessed and by whom: ``card_register:customer``, ``card_register:ip``, ...
    scope: Mapped[str] = mapped_column(String(40))
    subject: Mapped[str] = mapped_column(String(120))
    at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


def _subject(subject: str) -> str:
    """What is stored for ``subject``: itself, or its digest when longer than the column
    (an email may be 254 characters)."""
    if len(subject) <= FailedAttempt.subject.type.length:
        return subject
    return "sha256:" + hashlib.sha256(subject.encode(errors="replace")).hexdigest()


def refuse_if_over(s: Session, limits: list[tuple[str, str, int, int]]) -> None:
    """``limits`` holds (scope, subject, most failures, window in seconds).

    Raises TooManyAttempts when any subject has failed that often within its window.
    """
    now = utcnow()
    for scope, subject, most, window_s in limits:
        recent = s.scalar(
            select(func.count())
            .select_from(FailedAttempt)
            .where(
                FailedAttempt.scope == scope,
                FailedAttempt.subject == _subject(subject),
                FailedAttempt.at > now - timedelta(seconds=window_s),
            )
        )
        if recent >= most:
            raise TooManyAttempts(retry_after_s=window_s)


def record_failure(s: Session, limits: list[tuple[str, str, int, int]]) -> None:
    """Write one failure for every subject in ``limits`` and commit it now."""
    now = utcnow()
    s.execute(
        insert(FailedAttempt),
        [
            {"scope": scope, "subject": _subject(subject), "at": now}
            for scope, subject, _, _ in limits
        ],
    )
    s.commit()

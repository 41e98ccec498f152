"""What the database holds, row by row: take one before a request that must be refused and
one after, and the two are equal only if the refusal changed nothing at all."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.models import metadata


def snapshot(s: Session, leave_out: frozenset[str] = frozenset()) -> dict[str, list[tuple]]:
    """Every row of every table but those left out, as ``s``'s transaction sees it (the test
    client's requests join that transaction)."""
    s.flush()
    return {
        table.name: sorted((tuple(row) for row in s.execute(select(table))), key=repr)
        for table in metadata.sorted_tables
        if table.name not in leave_out
    }

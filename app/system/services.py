"""The service's own health."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.orm import Session


def database_reached(s: Session) -> str:
    """The kind of database (``sqlite``, ``postgresql``), once a statement has gone there and
    back. Raises what the driver raises when it cannot be reached."""
    s.execute(text("SELECT 1"))
    return s.get_bind().dialect.name

"""Column types shared by every domain."""

from datetime import UTC, datetime

from sqlalchemy import JSON, BigInteger, DateTime, Integer
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.types import TypeDecorator

#: 64-bit ids on PostgreSQL; SQLite only auto-increments a column declared INTEGER.
BigId = BigInteger().with_variant(Integer, "sqlite")

#: JSON everywhere, JSONB on PostgreSQL.
Json = JSON().with_variant(JSONB, "postgresql")


class _UtcDateTime(TypeDecorator):
    """Timestamps in UTC, aware in Python on every database (SQLite keeps no zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("Omnicard stores only time-zone-aware timestamps")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value


#: Timestamps are stored with their time zone and always in UTC.
UtcDateTime = _UtcDateTime()


def fitted(text: str, column) -> str:
    """``text`` cut to what ``column`` (a model's string attribute) holds, ending in "…".
    For labels made from what a user gave (an account's name from a store's), never for
    anything looked up by its value."""
    most = column.type.length
    return text if len(text) <= most else text[: most - 1] + "…"


def utcnow() -> datetime:
    return datetime.now(UTC)

"""Column types shared by every domain."""

from datetime import UTC, datetime

from sqlalchemy import JSON, BigInteger, DateTime, Integer
from sqlalchemy.dialects.postgresql import JSONB

#: 64-bit ids on PostgreSQL; SQLite only auto-increments a column declared INTEGER.
BigId = BigInteger().with_variant(Integer, "sqlite")

#: JSON everywhere, JSONB on PostgreSQL.
Json = JSON().with_variant(JSONB, "postgresql")

#: Timestamps are stored with their time zone and always in UTC.
UtcDateTime = DateTime(timezone=True)


def utcnow() -> datetime:
    return datetime.now(UTC)

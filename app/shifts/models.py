from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, CheckConstraint, ForeignKey, Index, String, text
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import Base
from app.core.types import BigId, Json, UtcDateTime, utcnow


class Shift(Base):
    """A cashier's turn at one till, from the float put in the drawer to the count at the
    close; the sales, refunds and top-ups rung up meanwhile name it."""

    __tablename__ = "shifts"
    __table_args__ = (
        CheckConstraint("status IN ('open','closed')", "status"),
        CheckConstraint("float_minor >= 0", "float"),
        CheckConstraint("counted_minor IS NULL OR counted_minor >= 0", "counted"),
        CheckConstraint(
            "(status = 'open' AND closed_at IS NULL AND report IS NULL) OR "
            "(status = 'closed' AND closed_at IS NOT NULL AND report IS NOT NULL "
            "AND counted_minor IS NOT NULL)",
            "closed",
        ),
        # One open shift per till: a second cashier cannot open another over it.
        Index(
            "uq_shifts_one_open_per_device",
            "device_id",
            unique=True,
            postgresql_where=text("status = 'open'"),
            sqlite_where=text("status = 'open'"),
        ),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    store_id: Mapped[int] = mapped_column(ForeignKey("stores.id"), index=True)
    device_id: Mapped[int] = mapped_column(ForeignKey("devices.id"), index=True)
    #: Who opened it (and counted the float).
    cashier_id: Mapped[int] = mapped_column(ForeignKey("staff.id"))
    currency: Mapped[str] = mapped_column(String(3))
    #: The cash put in the drawer at the opening.
    float_minor: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(8), default="open")
    opened_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    closed_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    closed_by_id: Mapped[int | None] = mapped_column(ForeignKey("staff.id"))
    #: The cash counted in the drawer at the close.
    counted_minor: Mapped[int | None] = mapped_column(BigInteger)
    #: The close report as it was printed: kept, never recomputed.
    report: Mapped[dict | None] = mapped_column(Json)

"""Rules of a sale that need no database."""

from __future__ import annotations


def number(prefix: str, id_: int) -> str:
    """The number printed on a receipt and said at the counter: ``S-000123`` for sale 123,
    ``R-000045`` for refund 45 (more digits once the ids need them)."""
    return f"{prefix}-{id_:06d}"


def change_due(tenders: list[tuple[str, int]], given: list[int | None]) -> int:
    """The change for the cash handed over (``given``, one per tender: None when exact).

    Raises ValueError with the index of a tender whose handed-over cash does not cover it, or
    that is not cash at all.
    """
    change = 0
    for n, ((kind, amount), handed) in enumerate(zip(tenders, given, strict=True)):
        if handed is None:
            continue
        if kind != "cash" or handed < amount:
            raise ValueError(n)
        change += handed - amount
    return change

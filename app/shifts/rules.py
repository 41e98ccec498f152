"""The arithmetic of a shift's close: plain values in, plain values out."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

SALE_TENDERS = ("card_balance", "cash", "bank_card")
TOP_UP_TENDERS = ("cash", "bank_card")


@dataclass
class Tally:
    """How many, how much, and how much by tender."""

    tenders: tuple[str, ...]
    count: int = 0
    total_minor: int = 0
    by_tender: dict[str, int] = field(default_factory=dict)

    def __post_init__(self):
        self.by_tender = {kind: 0 for kind in self.tenders}

    def add(self, total_minor: int, tenders: Iterable[tuple[str, int]]) -> None:
        """One sale, refund or top-up: its total and what each tender took or gave."""
        self.count += 1
        self.total_minor += total_minor
        for kind, amount in tenders:
            self.by_tender[kind] += amount


def expected_cash(float_minor: int, sales: Tally, refunds: Tally, top_ups: Tally) -> int:
    """What the drawer should hold at the close: the float, plus cash taken for sales and
    top-ups (a gift card sold is a top-up), less cash given back for refunds. Change given
    for a cash tender left the drawer with the rest of what was handed over, so only each
    tender's amount counts."""
    return (
        float_minor
        + sales.by_tender["cash"]
        - refunds.by_tender["cash"]
        + top_ups.by_tender["cash"]
    )

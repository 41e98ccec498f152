"""How Stars are earned and taken back: plain functions, no I/O."""

from __future__ import annotations

from collections.abc import Sequence

#: Currencies whose minor unit is not a hundredth (ISO 4217 exponents).
_EXPONENTS = {"JPY": 0, "KRW": 0, "CLP": 0, "ISK": 0, "BHD": 3, "KWD": 3, "JOD": 3, "OMR": 3}


def minor_per_unit(currency: str) -> int:
    return 10 ** _EXPONENTS.get(currency, 2)


def stars_earned(
    *,
    paid_from_card_minor: int,
    paid_otherwise_minor: int,
    currency: str,
    per_unit_card: int,
    per_unit_other: int,
) -> int:
    """Stars for a sale: so many per whole currency unit paid, more when paid from the card."""
    unit = minor_per_unit(currency)
    return (paid_from_card_minor * per_unit_card + paid_otherwise_minor * per_unit_other) // unit


def allocate(total: int, weights: Sequence[int]) -> list[int]:
    """Split ``total`` in proportion to ``weights`` (largest remainder): the parts are whole
    and add up to ``total`` exactly."""
    weight_sum = sum(weights)
    if weight_sum == 0:
        return [0] * len(weights)
    shares = [total * w // weight_sum for w in weights]
    remainders = sorted(range(len(weights)), key=lambda i: (-(total * weights[i] % weight_sum), i))
    for i in remainders[: total - sum(shares)]:
        shares[i] += 1
    return shares


def share_of_units(whole: int, units: int, done_before: int, doing_now: int) -> int:
    """What ``doing_now`` more of ``units`` are worth out of ``whole``, when ``done_before``
    were handled already. Handling all units, in any steps, adds up to ``whole`` exactly."""
    return whole * (done_before + doing_now) // units - whole * done_before // units


def take_back(earned: int, available: int) -> tuple[int, int]:
    """Stars a refund takes from the shopper's balance, and those already spent, which the
    shopper now owes and repays from the next Stars they earn."""
    taken = min(earned, max(available, 0))
    return taken, earned - taken

"""How the kiosk picks "you might also like": plain functions over plain values, no I/O.

A suggestion starts from seeds: the product on the screen, the other products tapped in the
kiosk session, and, once a shopper has joined it, what they bought or tapped lately. Each
seed votes for the products that went with it before:

- bought together: in the same sale, or by the same shopper within a few days;
- tapped together: in the same kiosk session.

A vote is the co-occurrence count times the seed's weight (the product on the screen counts
most, the shopper's history least), and a purchase counts more than a tap. The total is then
boosted for hidden gems: products that sell elsewhere but get few taps in this store, which
the shelves here hide. Products already in the session, and products this store does not
sell, are never suggested. Scores are exact fractions and ties go to the lower product id,
so the same history always gives the same list.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from fractions import Fraction

#: What a seed's vote is worth, by where the seed comes from.
SEED_WEIGHTS = {"current": 3, "session": 2, "history": 1}
#: A purchase together says more than a tap together.
BOUGHT_WEIGHT = 2
TAPPED_WEIGHT = 1
#: A hidden gem's score is multiplied by up to 1 + GEM_BOOST.
GEM_BOOST = 1
#: Taps and sales a product needs before its gem score means much (a smoothing prior).
GEM_PRIOR = 5
#: From this gem score on (sales elsewhere at least the taps here plus the prior), the
#: suggestion is explained as a hidden gem.
GEM_REASON_AT = Fraction(1, 2)
#: How many of the best co-occurring products get a closer look (gem score, sold here).
SHORTLIST = 60

REASONS = ("bought_with", "tapped_with", "your_history", "hidden_gem")


@dataclass(frozen=True)
class Seed:
    product_id: int
    #: ``current`` (on the screen), ``session`` (tapped earlier) or ``history`` (the
    #: shopper's recent purchases and taps).
    source: str


@dataclass(frozen=True)
class Pair:
    """How often ``other_id`` went with a seed product."""

    product_id: int
    other_id: int
    bought: int
    tapped: int


@dataclass(frozen=True)
class GemStats:
    """A product's taps in this store and its sales (units) in every other store."""

    taps_here: int = 0
    sales_elsewhere: int = 0


@dataclass(frozen=True)
class Ranked:
    product_id: int
    score: Fraction
    #: One of REASONS.
    reason: str
    #: The seed that explains it (None only when nothing does).
    because_of: int | None


def seeds_for(
    product_id: int | None,
    session_product_ids: Iterable[int],
    history_product_ids: Iterable[int],
) -> list[Seed]:
    """One seed per product, from the strongest source it appears in."""
    seeds: dict[int, Seed] = {}
    if product_id is not None:
        seeds[product_id] = Seed(product_id, "current")
    for pid in session_product_ids:
        seeds.setdefault(pid, Seed(pid, "session"))
    for pid in history_product_ids:
        seeds.setdefault(pid, Seed(pid, "history"))
    return list(seeds.values())


def excluded(product_id: int | None, session_product_ids: Iterable[int]) -> frozenset[int]:
    """What the session already has: never suggested."""
    ids = set(session_product_ids)
    if product_id is not None:
        ids.add(product_id)
    return frozenset(ids)


def _totals(seeds: list[Seed], pairs: Iterable[Pair], exclude: frozenset[int]) -> dict[int, int]:
    """Each candidate's co-occurrence score: the sum of its seeds' weighted votes."""
    weight = {seed.product_id: SEED_WEIGHTS[seed.source] for seed in seeds}
    totals: dict[int, int] = {}
    for pair in pairs:
        w = weight.get(pair.product_id)
        if w is None or pair.other_id in exclude:
            continue
        vote = w * (BOUGHT_WEIGHT * max(pair.bought, 0) + TAPPED_WEIGHT * max(pair.tapped, 0))
        if vote:
            totals[pair.other_id] = totals.get(pair.other_id, 0) + vote
    return totals


def _best(totals: dict[int, int], size: int) -> list[int]:
    return heapq.nsmallest(size, totals, key=lambda pid: (-totals[pid], pid))


def shortlist(
    seeds: list[Seed], pairs: Iterable[Pair], exclude: frozenset[int], size: int = SHORTLIST
) -> list[int]:
    """The ``size`` candidates with the most co-occurrence, best first, ties by id: the only
    ones whose gem score needs reading. (The boost only raises a score, so a product outside
    the shortlist cannot pass one inside it: the best ``size`` are exact.)"""
    return _best(_totals(seeds, pairs, exclude), size)


def _explain(seeds: list[Seed], pairs: Iterable[Pair], chosen: set[int]):
    """For each chosen candidate, the seed and kind of vote that gave it most; ties to the
    stronger seed, then the lower seed id, then bought before tapped."""
    weight = {seed.product_id: SEED_WEIGHTS[seed.source] for seed in seeds}
    best: dict[int, tuple] = {}
    for pair in pairs:
        w = weight.get(pair.product_id)
        if w is None or pair.other_id not in chosen:
            continue
        for order, kind, count, per in (
            (0, "bought_with", pair.bought, BOUGHT_WEIGHT),
            (1, "tapped_with", pair.tapped, TAPPED_WEIGHT),
        ):
            if count <= 0:
                continue
            key = (-w * per * count, -w, pair.product_id, order)
            if pair.other_id not in best or key < best[pair.other_id][0]:
                best[pair.other_id] = (key, pair.product_id, kind)
    return {pid: (seed_id, kind) for pid, (_, seed_id, kind) in best.items()}


def gem_score(stats: GemStats) -> Fraction:
    """0 for a product tapped here as often as it sells elsewhere or more, towards 1 for one
    that sells elsewhere and is never tapped here."""
    sales, taps = max(stats.sales_elsewhere, 0), max(stats.taps_here, 0)
    if sales <= taps:
        return Fraction(0)
    return Fraction(sales - taps, sales + GEM_PRIOR)


def rank(
    seeds: list[Seed],
    pairs: Iterable[Pair],
    *,
    exclude: frozenset[int],
    sold_here: frozenset[int],
    gems: Mapping[int, GemStats],
    limit: int = 4,
) -> list[Ranked]:
    """The best ``limit`` suggestions (at most SHORTLIST), best first.

    ``pairs``: the co-occurrence counts of the seeds (others are ignored); ``sold_here``: the
    candidates this store sells (the rest are dropped); ``gems``: taps here and sales
    elsewhere per candidate (missing: none of either)."""
    pairs = list(pairs)
    source = {seed.product_id: seed.source for seed in seeds}
    totals = {pid: n for pid, n in _totals(seeds, pairs, exclude).items() if pid in sold_here}
    scored = []
    for pid in _best(totals, SHORTLIST):
        gem = gem_score(gems.get(pid, GemStats()))
        scored.append((Fraction(totals[pid]) * (1 + GEM_BOOST * gem), pid, gem))
    scored.sort(key=lambda item: (-item[0], item[1]))
    scored = scored[: max(min(limit, SHORTLIST), 0)]
    reasons = _explain(seeds, pairs, {pid for _, pid, _ in scored})
    ranked = []
    for score, pid, gem in scored:
        seed_id, kind = reasons[pid]
        if gem >= GEM_REASON_AT:
            kind = "hidden_gem"
        elif source[seed_id] == "history":
            kind = "your_history"
        ranked.append(Ranked(pid, score, kind, seed_id))
    return ranked

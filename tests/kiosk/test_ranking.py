"""The suggestion rules on a fixed data set, without a database."""

import random
from fractions import Fraction

from app.kiosk.ranking import (
    GemStats,
    Pair,
    excluded,
    gem_score,
    rank,
    seeds_for,
    shortlist,
)

# On the screen: product 1. Tapped earlier in the session: 2. The shopper bought 3 lately.
SEEDS = seeds_for(1, [1, 2], [3])
EXCLUDE = excluded(1, [1, 2])
PAIRS = [
    Pair(1, 10, bought=2, tapped=0),  # 3 x 2 x 2 = 12, bought with 1
    Pair(1, 11, bought=0, tapped=3),  # 3 x 1 x 3 = 9, tapped with 1 ...
    Pair(2, 11, bought=1, tapped=0),  # ... + 2 x 2 x 1 = 4: 13
    Pair(3, 12, bought=5, tapped=0),  # 1 x 2 x 5 = 10, from the shopper's history
    Pair(1, 13, bought=1, tapped=0),  # 6, a hidden gem: x (1 + 3/4) = 10.5
    Pair(1, 2, bought=7, tapped=7),  # 2 is in the session already
    Pair(1, 14, bought=9, tapped=0),  # this store does not sell 14
    Pair(2, 15, bought=0, tapped=6),  # 2 x 1 x 6 = 12: ties with 10, which wins on its id
    Pair(9, 16, bought=50, tapped=50),  # 9 is no seed
]
SOLD_HERE = frozenset({10, 11, 12, 13, 15, 16})
GEMS = {
    10: GemStats(taps_here=10, sales_elsewhere=4),
    13: GemStats(taps_here=0, sales_elsewhere=15),
}


def ranked(pairs=PAIRS, limit=5, **kw):
    args = {"exclude": EXCLUDE, "sold_here": SOLD_HERE, "gems": GEMS, **kw}
    return rank(SEEDS, pairs, limit=limit, **args)


def test_the_fixed_data_set_gives_the_expected_order_scores_and_reasons():
    result = ranked()
    assert [(r.product_id, r.score, r.reason, r.because_of) for r in result] == [
        (11, Fraction(13), "tapped_with", 1),
        (10, Fraction(12), "bought_with", 1),
        (15, Fraction(12), "tapped_with", 2),
        (13, Fraction(21, 2), "hidden_gem", 1),
        (12, Fraction(10), "your_history", 3),
    ]


def test_the_limit_keeps_the_best():
    assert [r.product_id for r in ranked(limit=2)] == [11, 10]
    assert ranked(limit=0) == []


def test_products_in_the_session_are_never_suggested():
    ids = {r.product_id for r in ranked(limit=50)}
    assert 1 not in ids and 2 not in ids


def test_products_the_store_does_not_sell_are_never_suggested():
    assert 14 not in {r.product_id for r in ranked(limit=50)}
    everything = SOLD_HERE | {14}
    assert 14 in {r.product_id for r in ranked(limit=50, sold_here=everything)}


def test_the_hidden_gem_boost_lifts_a_product_past_a_better_co_occurring_one():
    without_gems = [r.product_id for r in ranked(gems={})]
    assert without_gems.index(12) < without_gems.index(13)
    with_gems = [r.product_id for r in ranked()]
    assert with_gems.index(13) < with_gems.index(12)


def test_the_same_history_in_any_order_gives_the_same_suggestions():
    expected = ranked()
    for seed in range(20):
        shuffled = PAIRS[:]
        random.Random(seed).shuffle(shuffled)
        assert ranked(pairs=shuffled) == expected


def test_ties_go_to_the_lower_product_id():
    pairs = [Pair(1, 30, 1, 0), Pair(1, 20, 1, 0), Pair(1, 25, 1, 0)]
    result = rank(SEEDS, pairs, exclude=EXCLUDE, sold_here=frozenset({20, 25, 30}), gems={})
    assert [r.product_id for r in result] == [20, 25, 30]


def test_the_screens_product_outweighs_an_earlier_tap_and_history():
    pairs = [Pair(3, 40, 1, 0), Pair(2, 41, 1, 0), Pair(1, 42, 1, 0)]
    result = rank(SEEDS, pairs, exclude=EXCLUDE, sold_here=frozenset({40, 41, 42}), gems={})
    assert [r.product_id for r in result] == [42, 41, 40]


def test_a_seed_appears_once_from_its_strongest_source():
    seeds = seeds_for(1, [1, 2, 2], [2, 3, 1])
    assert [(s.product_id, s.source) for s in seeds] == [
        (1, "current"),
        (2, "session"),
        (3, "history"),
    ]


def test_gem_score_grows_with_sales_elsewhere_and_shrinks_with_taps_here():
    assert gem_score(GemStats(taps_here=5, sales_elsewhere=5)) == 0
    assert gem_score(GemStats(taps_here=9, sales_elsewhere=1)) == 0
    assert gem_score(GemStats(taps_here=0, sales_elsewhere=15)) == Fraction(3, 4)
    assert gem_score(GemStats(taps_here=0, sales_elsewhere=95)) == Fraction(95, 100)
    assert gem_score(GemStats(taps_here=5, sales_elsewhere=15)) < Fraction(3, 4)


def test_the_shortlist_is_the_best_co_occurring_products_whatever_the_store_sells():
    assert shortlist(SEEDS, PAIRS, EXCLUDE) == [14, 11, 10, 15, 12, 13]
    assert shortlist(SEEDS, PAIRS, EXCLUDE, size=2) == [14, 11]

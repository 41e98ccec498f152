"""The pure rules of Stars: how many a sale earns, how they spread over its lines, what a
refund of some units is worth, and what it takes back. No database."""

from __future__ import annotations

import itertools
import random

import pytest

from app.loyalty.rules import allocate, share_of_units, stars_earned, take_back


def earned(*, card=0, other=0, currency="USD"):
    return stars_earned(
        paid_from_card_minor=card,
        paid_otherwise_minor=other,
        currency=currency,
        per_unit_card=2,
        per_unit_other=1,
    )


def compositions(n: int):
    """Every way to refund ``n`` units in steps of at least one, in order."""
    for cuts in itertools.product((False, True), repeat=n - 1):
        steps, size = [], 1
        for cut in cuts:
            if cut:
                steps.append(size)
                size = 1
            else:
                size += 1
        yield [*steps, size]


# -- stars_earned ---------------------------------------------------------------------------


def test_paying_from_the_card_earns_two_stars_per_whole_unit():
    assert earned(card=450) == 9
    assert earned(card=10_000) == 200


def test_paying_otherwise_earns_one_star_per_whole_unit():
    assert earned(other=450) == 4
    assert earned(other=10_000) == 100


def test_mixed_tenders_earn_at_each_tenders_rate():
    assert earned(card=300, other=700) == 2 * 3 + 7
    assert earned(card=1_000, other=1_000) == 30


def test_part_units_round_down_once_over_the_whole_sale():
    assert earned(other=99) == 0
    assert earned(other=199) == 1
    assert earned(card=49) == 0
    assert earned(card=50) == 1  # half a unit from the card is one whole Star
    assert earned(card=250, other=250) == 7  # 5 + 2.5 Stars
    assert earned(card=25, other=50) == 1  # half a Star from each tender make one whole Star


def test_nothing_paid_earns_nothing():
    assert earned() == 0


def test_currencies_without_cents_count_whole_units():
    assert earned(other=450, currency="JPY") == 450
    assert earned(card=450, currency="JPY") == 900


def test_currencies_with_three_decimals_count_thousandths():
    assert earned(other=4_999, currency="KWD") == 4
    assert earned(card=4_500, currency="KWD") == 9


# -- allocate -------------------------------------------------------------------------------


def random_cases(seed: int, count: int = 500):
    rng = random.Random(seed)
    for _ in range(count):
        weights = [rng.choice([0, 1, 3, 99, 450, 1_001, rng.randint(0, 10**6)])
                   for _ in range(rng.randint(1, 8))]  # fmt: skip
        yield rng.randint(0, 5_000), weights


def test_allocate_parts_add_up_to_the_total_exactly():
    for total, weights in random_cases(seed=1):
        assert sum(allocate(total, weights)) == (total if sum(weights) else 0), (total, weights)


def test_allocate_parts_are_within_one_of_the_exact_proportion():
    for total, weights in random_cases(seed=2):
        weight_sum = sum(weights)
        if not weight_sum:
            continue
        for part, weight in zip(allocate(total, weights), weights, strict=True):
            assert part >= 0
            assert abs(part * weight_sum - total * weight) < weight_sum, (total, weights)


def test_allocate_gives_nothing_to_a_zero_weight():
    assert allocate(10, [0, 1, 0, 1, 1]) == [0, 4, 0, 3, 3]


def test_allocate_hands_remainders_to_the_largest_fractions_first():
    assert allocate(10, [1, 2]) == [3, 7]  # 3.33 and 6.67: the 0.67 gets the spare Star
    assert allocate(1, [1, 1]) == [1, 0]  # a tie goes to the first


def test_allocate_over_all_zero_weights_is_all_zeros():
    assert allocate(7, [0, 0, 0]) == [0, 0, 0]


def test_allocate_of_nothing_is_zero_everywhere():
    assert allocate(0, [450, 900]) == [0, 0]


# -- share_of_units -------------------------------------------------------------------------


@pytest.mark.parametrize("units", range(1, 9))
def test_share_of_units_over_any_sequence_of_refunds_adds_up_to_the_whole(units):
    for whole in (0, 1, 2, 7, 13, 100, 999, 12_345):
        for steps in compositions(units):
            done, shares = 0, []
            for step in steps:
                shares.append(share_of_units(whole, units, done, step))
                done += step
            assert sum(shares) == whole, (whole, units, steps)
            assert all(share >= 0 for share in shares), (whole, units, steps)


def test_share_of_units_is_within_one_of_the_exact_proportion():
    for whole, units in itertools.product((1, 7, 13, 999, 12_345), range(1, 9)):
        for done in range(units):
            for doing in range(1, units - done + 1):
                share = share_of_units(whole, units, done, doing)
                assert abs(share * units - whole * doing) < units, (whole, units, done, doing)


def test_share_of_units_of_everything_at_once_is_the_whole():
    assert share_of_units(1_000, 3, 0, 3) == 1_000


def test_share_of_units_one_at_a_time_gives_the_odd_cent_last():
    assert [share_of_units(1_000, 3, done, 1) for done in range(3)] == [333, 333, 334]


# -- take_back ------------------------------------------------------------------------------


def test_take_back_takes_everything_when_the_stars_are_still_there():
    assert take_back(9, 20) == (9, 0)
    assert take_back(9, 9) == (9, 0)


def test_take_back_owes_what_was_spent_already():
    assert take_back(9, 4) == (4, 5)


def test_take_back_owes_everything_when_nothing_is_left():
    assert take_back(9, 0) == (0, 9)


def test_take_back_never_takes_from_a_negative_balance():
    assert take_back(9, -3) == (0, 9)


def test_take_back_taken_and_owed_always_add_up_to_what_was_earned():
    for earned_stars, available in itertools.product(range(0, 30), range(-5, 40)):
        taken, owed = take_back(earned_stars, available)
        assert taken + owed == earned_stars
        assert 0 <= taken <= max(available, 0)
        assert owed >= 0

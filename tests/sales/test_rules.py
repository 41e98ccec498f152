"""Sale numbers and change, without a database."""

from __future__ import annotations

import pytest

from app.sales.rules import change_due, number


def test_numbers_are_zero_padded_and_grow_past_six_digits():
    assert number("S", 123) == "S-000123"
    assert number("R", 45) == "R-000045"
    assert number("S", 12_345_678) == "S-12345678"


def test_change_is_what_was_handed_over_beyond_each_cash_tender():
    tenders = [("card_balance", 500), ("cash", 233), ("cash", 100)]
    assert change_due(tenders, [None, 500, None]) == 267
    assert change_due(tenders, [None, None, None]) == 0
    assert change_due(tenders, [None, 233, 2_000]) == 1_900


@pytest.mark.parametrize(
    ("tenders", "given", "bad"),
    [
        ([("cash", 450)], [449], 0),
        ([("cash", 450), ("bank_card", 100)], [None, 100], 1),
        ([("card_balance", 450)], [500], 0),
    ],
)
def test_cash_handed_over_that_does_not_cover_a_cash_tender_names_it(tenders, given, bad):
    with pytest.raises(ValueError) as refused:
        change_due(tenders, given)
    assert refused.value.args == (bad,)

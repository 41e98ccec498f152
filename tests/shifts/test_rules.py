"""The close's arithmetic, without a database."""

from __future__ import annotations

from app.shifts.rules import SALE_TENDERS, TOP_UP_TENDERS, Tally, expected_cash


def tally(tenders, *entries) -> Tally:
    t = Tally(tenders)
    for total, parts in entries:
        t.add(total, parts)
    return t


def test_a_tally_counts_and_sums_by_tender():
    t = tally(
        SALE_TENDERS, (900, [("cash", 900)]), (783, [("card_balance", 450), ("bank_card", 333)])
    )

    assert (t.count, t.total_minor) == (2, 1_683)
    assert t.by_tender == {"card_balance": 450, "cash": 900, "bank_card": 333}


def test_an_empty_tally_names_every_tender_at_zero():
    assert Tally(TOP_UP_TENDERS).by_tender == {"cash": 0, "bank_card": 0}


def test_expected_cash_is_the_float_and_the_cash_in_less_the_cash_out():
    sales = tally(SALE_TENDERS, (1_350, [("cash", 900), ("bank_card", 450)]))
    refunds = tally(SALE_TENDERS, (600, [("cash", 200), ("card_balance", 400)]))
    top_ups = tally(TOP_UP_TENDERS, (1_000, [("cash", 1_000)]), (2_500, [("bank_card", 2_500)]))

    assert expected_cash(10_000, sales, refunds, top_ups) == 10_000 + 900 - 200 + 1_000


def test_only_cash_moves_the_drawer():
    sales = tally(SALE_TENDERS, (500, [("card_balance", 500)]), (700, [("bank_card", 700)]))
    refunds = tally(SALE_TENDERS, (300, [("bank_card", 300)]))
    top_ups = tally(TOP_UP_TENDERS, (2_000, [("bank_card", 2_000)]))

    assert expected_cash(5_000, sales, refunds, top_ups) == 5_000

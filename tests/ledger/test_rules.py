"""The pure rules of a transaction: no database."""

import pytest

from app.ledger.errors import InvalidPosting, UnbalancedTransaction
from app.ledger.rules import Leg, check_legs, limit_breach, net_by_account


def test_balanced_transaction_in_two_units_passes():
    check_legs([Leg(1, -450, "USD"), Leg(2, 450, "USD"), Leg(3, 9, "STAR"), Leg(4, -9, "STAR")])


def test_transaction_that_nets_to_zero_overall_but_not_per_unit_is_refused():
    with pytest.raises(UnbalancedTransaction) as caught:
        check_legs([Leg(1, -450, "USD"), Leg(2, 450, "STAR")])
    assert caught.value.details == {"totals": {"USD": -450, "STAR": 450}}


@pytest.mark.parametrize("amount", [0, 1.5, True, "10", None, 10**16])
def test_posting_must_be_a_whole_nonzero_sane_amount(amount):
    with pytest.raises(InvalidPosting):
        check_legs([Leg(1, amount, "USD"), Leg(2, 5, "USD")])


def test_single_leg_is_not_a_transaction():
    with pytest.raises(InvalidPosting):
        check_legs([Leg(1, 5, "USD")])


def test_net_by_account_sums_repeated_accounts_in_id_order():
    legs = [Leg(9, 100, "USD"), Leg(3, -40, "USD"), Leg(9, -60, "USD")]
    assert list(net_by_account(legs).items()) == [(3, -40), (9, 40)]


def test_limit_breach_names_the_limit():
    assert limit_breach(-1, no_negative=True, max_balance=None) == "negative"
    assert limit_breach(50_001, no_negative=True, max_balance=50_000) == "maximum"
    assert limit_breach(50_000, no_negative=True, max_balance=50_000) is None
    assert limit_breach(-(10**9), no_negative=False, max_balance=None) is None

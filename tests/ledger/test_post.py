"""The ledger service against a real database."""

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError, IntegrityError

from app.ledger import services as ledger
from app.ledger.errors import (
    AccountFrozen,
    AccountNotFound,
    BalanceLimitExceeded,
    InsufficientFunds,
    UnitMismatch,
)
from app.ledger.models import LedgerTransaction, Posting
from app.ledger.rules import Leg


@pytest.fixture
def funding(make_account):
    return make_account(type="asset", hot=True, shard_count=8)


@pytest.fixture
def card(make_account):
    return make_account(no_negative=True, max_balance=50_000)


def fund(db, source, target, amount):
    return ledger.post(
        db, kind="top_up", legs=[Leg(source.id, -amount, "USD"), Leg(target.id, amount, "USD")]
    )


def test_post_moves_value_and_returns_limited_balances(db, funding, card):
    posted = fund(db, funding, card, 2_500)
    assert posted.balances == {card.id: 2_500}
    assert ledger.balance_of(db, card.id) == 2_500
    assert ledger.balance_of(db, funding.id) == -2_500
    rows = db.execute(
        select(Posting.account_id, Posting.amount).where(
            Posting.transaction_id == posted.transaction_id
        )
    ).all()
    assert sorted(rows) == sorted([(funding.id, -2_500), (card.id, 2_500)])


def test_hot_account_balance_is_spread_over_shards_and_reads_whole(db, funding, make_account):
    cards = [make_account() for _ in range(5)]
    for n, c in enumerate(cards, start=1):
        fund(db, funding, c, 100 * n)
    assert ledger.balance_of(db, funding.id) == -1_500
    rows = db.execute(
        text("SELECT COUNT(*) FROM ledger_balance_shards WHERE account_id = :id"),
        {"id": funding.id},
    ).scalar()
    assert rows == 8


def test_debit_beyond_balance_is_insufficient_funds_and_writes_nothing(db, funding, card):
    fund(db, funding, card, 1_000)
    before = db.scalar(select(func.count()).select_from(LedgerTransaction))
    with pytest.raises(InsufficientFunds) as caught:
        ledger.post(
            db, kind="sale", legs=[Leg(card.id, -1_001, "USD"), Leg(funding.id, 1_001, "USD")]
        )
    assert caught.value.details["balance"] == 1_000
    assert ledger.balance_of(db, card.id) == 1_000
    assert db.scalar(select(func.count()).select_from(LedgerTransaction)) == before


def test_credit_beyond_maximum_balance_is_refused(db, funding, card):
    fund(db, funding, card, 49_000)
    with pytest.raises(BalanceLimitExceeded):
        fund(db, funding, card, 1_001)
    assert ledger.balance_of(db, card.id) == 49_000


def test_exactly_to_the_limits_is_allowed(db, funding, card):
    fund(db, funding, card, 50_000)
    ledger.post(
        db, kind="sale", legs=[Leg(card.id, -50_000, "USD"), Leg(funding.id, 50_000, "USD")]
    )
    assert ledger.balance_of(db, card.id) == 0


def test_unknown_account_is_refused(db, funding):
    with pytest.raises(AccountNotFound):
        ledger.post(db, kind="x", legs=[Leg(funding.id, -5, "USD"), Leg(987654321, 5, "USD")])


def test_posting_in_another_unit_than_the_account_is_refused(db, funding, make_account):
    stars = make_account(unit="STAR")
    with pytest.raises(UnitMismatch):
        ledger.post(db, kind="x", legs=[Leg(funding.id, -5, "STAR"), Leg(stars.id, 5, "STAR")])


def test_reverse_restores_every_balance_and_points_back(db, funding, card):
    first = fund(db, funding, card, 700)
    reversal = ledger.reverse(db, first.transaction_id, kind="refund")
    assert ledger.balance_of(db, card.id) == 0
    assert ledger.balance_of(db, funding.id) == 0
    assert db.get(LedgerTransaction, reversal.transaction_id).reverses_id == first.transaction_id


def test_database_refuses_a_negative_cached_balance_on_a_limited_account(db, card):
    with pytest.raises(IntegrityError), db.begin_nested():
        db.execute(text("UPDATE ledger_accounts SET balance = -1 WHERE id = :id"), {"id": card.id})


def test_postgresql_refuses_to_change_or_delete_postings(db, db_kind, funding, card):
    if db_kind != "postgresql":
        pytest.skip("the immutability trigger is PostgreSQL's")
    posted = fund(db, funding, card, 300)
    for statement in (
        "UPDATE ledger_postings SET amount = 1 WHERE transaction_id = :t",
        "DELETE FROM ledger_postings WHERE transaction_id = :t",
        "UPDATE ledger_transactions SET kind = 'forged' WHERE id = :t",
    ):
        with pytest.raises(DBAPIError, match="immutable"), db.begin_nested():
            db.execute(text(statement), {"t": posted.transaction_id})
    assert ledger.balance_of(db, card.id) == 300


def test_refused_transfer_between_limited_accounts_leaves_no_trace(db, funding, make_account):
    payer = make_account(no_negative=True)
    payee = make_account(no_negative=True, max_balance=1_000)
    fund(db, funding, payer, 800)
    fund(db, funding, payee, 900)
    with pytest.raises(BalanceLimitExceeded):
        ledger.post(
            db, kind="transfer", legs=[Leg(payer.id, -200, "USD"), Leg(payee.id, 200, "USD")]
        )
    assert ledger.balance_of(db, payer.id) == 800
    assert ledger.balance_of(db, payee.id) == 900


def test_frozen_account_refuses_every_posting_and_frozen_wins_the_diagnosis(db, funding, card):
    fund(db, funding, card, 900)
    ledger.freeze(db, card.id)
    before = db.scalar(select(func.count()).select_from(LedgerTransaction))
    with pytest.raises(AccountFrozen):
        fund(db, funding, card, 100)
    with pytest.raises(AccountFrozen):
        ledger.post(db, kind="sale", legs=[Leg(card.id, -100, "USD"), Leg(funding.id, 100, "USD")])
    # Postings that would also break a limit: the account is frozen, whatever else is wrong.
    with pytest.raises(AccountFrozen):
        fund(db, funding, card, 50_000 - 900 + 1)  # above the card's maximum
    with pytest.raises(AccountFrozen):
        ledger.post(db, kind="sale", legs=[Leg(card.id, -901, "USD"), Leg(funding.id, 901, "USD")])
    assert ledger.balance_of(db, card.id) == 900
    assert ledger.balance_of(db, funding.id) == -900
    assert db.scalar(select(func.count()).select_from(LedgerTransaction)) == before

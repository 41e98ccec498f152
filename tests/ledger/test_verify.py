"""verify finds every kind of damage, and the CLI reports it with its exit code."""

import pytest
from sqlalchemy import text

from app.ledger import services as ledger
from app.ledger.rules import Leg
from app.ledger.verify import verify


@pytest.fixture
def ledger_with_a_sale(db, make_account):
    store = make_account(type="income", hot=True, shard_count=4)
    card = make_account(no_negative=True)
    ledger.post(db, kind="top_up", legs=[Leg(store.id, -900, "USD"), Leg(card.id, 900, "USD")])
    sale = ledger.post(db, kind="sale", legs=[Leg(card.id, -400, "USD"), Leg(store.id, 400, "USD")])
    return store, card, sale


def run_verify_cli(app):
    return app.test_cli_runner().invoke(args=["ledger", "verify"])


def test_cli_reports_a_healthy_ledger_and_exits_zero(app, ledger_with_a_sale):
    result = run_verify_cli(app)
    assert result.exit_code == 0, result.output
    assert "ledger OK" in result.output
    assert "checked 2 accounts, 2 transactions, 4 postings" in result.output


def test_tampered_cached_balance_is_found_and_cli_exits_nonzero(app, db, ledger_with_a_sale):
    _, card, _ = ledger_with_a_sale
    with db.begin_nested() as tampering:
        db.execute(
            text("UPDATE ledger_accounts SET balance = balance + 1 WHERE id = :id"), {"id": card.id}
        )
        report = verify(db)
        result = run_verify_cli(app)
        tampering.rollback()
    assert not report.ok
    assert "cached balance differs" in report.problems[0]
    assert f"'id': {card.id}" in report.problems[0]
    assert result.exit_code == 1
    assert "ledger BROKEN: 1 problem(s)" in result.output


def test_tampered_shard_of_a_hot_account_is_found(db, ledger_with_a_sale):
    store, _, _ = ledger_with_a_sale
    with db.begin_nested() as tampering:
        db.execute(
            text(
                "UPDATE ledger_balance_shards SET balance = balance - 5 "
                "WHERE account_id = :id AND shard = 0"
            ),
            {"id": store.id},
        )
        report = verify(db)
        tampering.rollback()
    assert [p.split(":")[0] for p in report.problems] == [
        "cached balance differs from the sum of postings"
    ]


def test_unbalanced_transaction_and_foreign_unit_are_found(db, ledger_with_a_sale):
    store, card, sale = ledger_with_a_sale
    with db.begin_nested() as tampering:
        db.execute(
            text(
                "INSERT INTO ledger_postings (transaction_id, account_id, amount, unit) "
                "VALUES (:t, :a, 3, 'EUR')"
            ),
            {"t": sale.transaction_id, "a": card.id},
        )
        report = verify(db)
        tampering.rollback()
    titles = {p.split(":")[0] for p in report.problems}
    assert titles == {
        "cached balance differs from the sum of postings",
        "transaction does not sum to zero in a unit",
        "posting unit differs from its account's unit",
    }

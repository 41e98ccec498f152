"""Recompute the ledger from its postings and compare with everything cached or promised.

Safe to run at any time, on a live system: it reads one consistent snapshot.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import text
from sqlalchemy.orm import Session

_CHECKS: list[tuple[str, str]] = [
    (
        "cached balance differs from the sum of postings",
        """
        SELECT a.id, a.code, a.balance + COALESCE(s.total, 0) AS cached,
               COALESCE(p.total, 0) AS actual
        FROM ledger_accounts a
        LEFT JOIN (SELECT account_id, SUM(balance) AS total FROM ledger_balance_shards
                   GROUP BY account_id) s ON s.account_id = a.id
        LEFT JOIN (SELECT account_id, SUM(amount) AS total FROM ledger_postings
                   GROUP BY account_id) p ON p.account_id = a.id
        WHERE a.balance + COALESCE(s.total, 0) <> COALESCE(p.total, 0)
        ORDER BY a.id
        """,
    ),
    (
        "transaction does not sum to zero in a unit",
        """
        SELECT transaction_id, unit, SUM(amount) AS total FROM ledger_postings
        GROUP BY transaction_id, unit HAVING SUM(amount) <> 0 ORDER BY transaction_id
        """,
    ),
    (
        "transaction has fewer than two postings",
        """
        SELECT t.id, COUNT(p.id) AS postings FROM ledger_transactions t
        LEFT JOIN ledger_postings p ON p.transaction_id = t.id
        GROUP BY t.id HAVING COUNT(p.id) < 2 ORDER BY t.id
        """,
    ),
    (
        "posting unit differs from its account's unit",
        """
        SELECT p.id, p.unit, a.unit AS account_unit FROM ledger_postings p
        JOIN ledger_accounts a ON a.id = p.account_id WHERE p.unit <> a.unit ORDER BY p.id
        """,
    ),
    (
        "limited account is outside its limits",
        """
        SELECT id, code, balance, max_balance FROM ledger_accounts
        WHERE (no_negative AND balance < 0) OR (max_balance IS NOT NULL AND balance > max_balance)
        ORDER BY id
        """,
    ),
    (
        "account's shard rows do not match its shard count",
        """
        SELECT a.id, a.code, a.shard_count, COUNT(s.shard) AS shard_rows FROM ledger_accounts a
        LEFT JOIN ledger_balance_shards s ON s.account_id = a.id
        GROUP BY a.id, a.code, a.shard_count
        HAVING (a.shard_count = 1 AND COUNT(s.shard) <> 0)
            OR (a.shard_count > 1 AND COUNT(s.shard) <> a.shard_count)
        ORDER BY a.id
        """,
    ),
]


@dataclass
class Report:
    accounts: int = 0
    transactions: int = 0
    postings: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def lines(self) -> list[str]:
        head = (
            f"checked {self.accounts} accounts, {self.transactions} transactions, "
            f"{self.postings} postings"
        )
        if self.ok:
            return [head, "ledger OK: every balance matches its postings"]
        return [head, f"ledger BROKEN: {len(self.problems)} problem(s)", *self.problems]


def verify(session: Session, *, limit: int = 50) -> Report:
    """Check every invariant of the ledger; report at most ``limit`` rows per check."""
    report = Report()
    report.accounts, report.transactions, report.postings = session.execute(
        text(
            "SELECT (SELECT COUNT(*) FROM ledger_accounts), "
            "(SELECT COUNT(*) FROM ledger_transactions), (SELECT COUNT(*) FROM ledger_postings)"
        )
    ).one()
    for title, sql in _CHECKS:
        for row in session.execute(text(sql)).mappings().fetchmany(limit):
            report.problems.append(f"{title}: {dict(row)}")
    return report

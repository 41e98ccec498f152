"""Real threads, real commits: the ledger under concurrent load (on SQLite and PostgreSQL)."""

from __future__ import annotations

import json
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import func, select

from app.core import idempotency
from app.core.db import database
from app.ledger import services as ledger
from app.ledger.errors import InsufficientFunds
from app.ledger.models import LedgerTransaction
from app.ledger.rules import Leg

pytestmark = pytest.mark.concurrent


@pytest.fixture
def new_session(app, committed):
    return database(app).sessions


def open_funded(new_session, *, balances: list[int], no_negative=True):
    """A hot funding account and one account per balance, committed."""
    with new_session() as s:
        funding = ledger.open_account(
            s,
            code="test:funding",
            name="Funding",
            unit="USD",
            type="equity",
            hot=True,
            shard_count=8,
        )
        ids = []
        for n, amount in enumerate(balances):
            account = ledger.open_account(
                s,
                code=f"test:acct:{n}",
                name=f"Account {n}",
                unit="USD",
                type="liability",
                no_negative=no_negative,
            )
            ledger.post(
                s,
                kind="top_up",
                legs=[Leg(funding.id, -amount, "USD"), Leg(account.id, amount, "USD")],
            )
            ids.append(account.id)
        s.commit()
        return funding.id, ids


def test_concurrent_debits_never_overdraw_and_every_success_is_in_the_drop(new_session):
    sink, (card,) = open_funded(new_session, balances=[1_000])
    start = threading.Barrier(16)

    def debit_three_times(_):
        start.wait()
        successes = 0
        for _ in range(3):
            with new_session() as s:
                try:
                    ledger.post(
                        s, kind="sale", legs=[Leg(card, -150, "USD"), Leg(sink, 150, "USD")]
                    )
                    s.commit()
                    successes += 1
                except InsufficientFunds:
                    s.rollback()
        return successes

    with ThreadPoolExecutor(16) as pool:
        successes = sum(pool.map(debit_three_times, range(16)))

    with new_session() as s:
        balance = ledger.balance_of(s, card)
    assert balance >= 0
    assert 1_000 - balance == 150 * successes
    assert successes == 6  # 16 x 3 asked for 7,200; exactly six 150s fit in 1,000


def test_bank_total_is_constant_in_every_snapshot_while_transfers_run(new_session, db_kind):
    _, accounts = open_funded(new_session, balances=[1_000] * 20)
    total = 20 * 1_000
    stop = threading.Event()
    transfers = {"done": 0, "refused": 0}
    lock = threading.Lock()

    def transfer_randomly(seed):
        rng = random.Random(seed)
        while not stop.is_set():
            a, b = rng.sample(accounts, 2)
            amount = rng.randint(1, 300)
            with new_session() as s:
                try:
                    ledger.post(
                        s, kind="transfer", legs=[Leg(a, -amount, "USD"), Leg(b, amount, "USD")]
                    )
                    s.commit()
                    outcome = "done"
                except InsufficientFunds:
                    s.rollback()
                    outcome = "refused"
            with lock:
                transfers[outcome] += 1

    def read_totals(_):
        seen = []
        while not stop.is_set():
            with new_session() as s:
                if db_kind == "postgresql":
                    s.connection(execution_options={"isolation_level": "REPEATABLE READ"})
                balances = [ledger.balance_of(s, a) for a in accounts]  # 20 reads, one snapshot
            assert min(balances) >= 0
            seen.append(sum(balances))
        return seen

    with ThreadPoolExecutor(6) as pool:
        writers = [pool.submit(transfer_randomly, seed) for seed in range(4)]
        readers = [pool.submit(read_totals, n) for n in range(2)]
        time.sleep(3)  # let the system run under load for a few seconds
        deadline = time.monotonic() + 60
        while transfers["done"] <= 20 and time.monotonic() < deadline:
            time.sleep(0.1)  # a slow machine: until enough transfers have run alongside the reads
        stop.set()
        for w in writers:
            w.result()
        reads = [total_seen for r in readers for total_seen in r.result()]

    assert transfers["done"] > 20, transfers
    assert len(reads) > 5
    assert set(reads) == {total}


def test_one_idempotency_key_from_eight_threads_has_exactly_one_effect(new_session):
    sink, (card,) = open_funded(new_session, balances=[5_000])
    start = threading.Barrier(8)
    fingerprint = idempotency.request_fingerprint("POST", "/v1/sales", {"amount": 700})

    def pay(_):
        start.wait()
        with new_session() as s:
            replay = idempotency.claim(s, "device:1", "sale-42", fingerprint)
            if replay is not None:
                s.rollback()
                return json.loads(replay.body)
            posted = ledger.post(
                s, kind="sale", legs=[Leg(card, -700, "USD"), Leg(sink, 700, "USD")]
            )
            body = {"transaction_id": posted.transaction_id, "balance": posted.balances[card]}
            idempotency.record(s, "device:1", "sale-42", 201, json.dumps(body))
            s.commit()
            return body

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(pay, range(8)))

    with new_session() as s:
        sales = s.scalar(
            select(func.count())
            .select_from(LedgerTransaction)
            .where(LedgerTransaction.kind == "sale")
        )
        balance = ledger.balance_of(s, card)
    assert sales == 1
    assert balance == 4_300
    assert all(answer == answers[0] for answer in answers)
    assert answers[0]["balance"] == 4_300


def test_batches_posting_many_times_to_hot_accounts_never_deadlock(new_session):
    # A long transaction holds every shard it has used; it must find its own again rather
    # than wait on another batch that waits on it.
    with new_session() as s:
        source = ledger.open_account(
            s, code="test:hot:a", name="A", unit="USD", type="equity", hot=True, shard_count=16
        )
        sink = ledger.open_account(
            s, code="test:hot:b", name="B", unit="USD", type="income", hot=True, shard_count=16
        )
        s.commit()
        ids = source.id, sink.id
    start = threading.Barrier(8)

    def post_in_batches(_):
        start.wait()
        for _ in range(6):
            with new_session() as s:
                for _ in range(30):
                    ledger.post(s, kind="x", legs=[Leg(ids[0], -1, "USD"), Leg(ids[1], 1, "USD")])
                s.commit()

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(post_in_batches, range(8)))

    with new_session() as s:
        assert ledger.balance_of(s, ids[1]) == 8 * 6 * 30

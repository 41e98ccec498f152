"""How fast the ledger posts sales, measured against pgbench on the same PostgreSQL.

Run by hand from the repository root (it is not part of the test suite)::

    .venv/bin/python -m bench.ledger          # full run, ~25 minutes; writes docs/benchmarks.md
    .venv/bin/python -m bench.ledger --quick  # sanity check, ~2-3 minutes; writes no doc

It measures, on one PostgreSQL server:

(a) pgbench's built-in tpcb-like, 8 clients, 20 s, on its own database at scale 10: the reference;
(b) ``ledger.post()`` of a sale (card debit, store sales credit, Stars credit, Stars issuance
    debit), one committed transaction per sale, from 1 and from 8 worker processes;
(c) (b) from 32 workers all selling into one store, and into 32 different stores;
(d) (b) at 8 workers after 1,000,000 earlier postings on the store's sales account.

Every figure is the median of 3 rounds (1 with ``--quick``); each round runs every measurement
once. After every run the ledger is verified. The bench creates its own databases and drops
them at the end. The server is reached through ``OMNICARD_BENCH_POSTGRES_URL`` (a superuser URL;
default: the local ``test`` database).

Workers are processes, not threads: Python threads share one interpreter lock, so threads
would measure the lock. Each worker has its own engine, session and shoppers' cards, as a till
serving its own queue of shoppers would.
"""

from __future__ import annotations

import argparse
import itertools
import multiprocessing
import os
import platform
import random
import re
import shlex
import signal
import statistics
import subprocess
import sys
import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import sqlalchemy
from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine, make_url, text
from sqlalchemy.engine import URL, Engine
from sqlalchemy.orm import Session
from sqlalchemy.pool import NullPool

from app.core.db import Database, make_engine
from app.ledger import services as ledger
from app.ledger.rules import Leg
from app.ledger.verify import verify
from bench.workers import (
    SETUP_TIMEOUT_S,
    Failed,
    WorkerFailed,
    collect,
    first_failure,
    stop_workers,
)

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DOC = ROOT / "docs" / "benchmarks.md"

ADMIN_URL_ENV = "OMNICARD_BENCH_POSTGRES_URL"
DEFAULT_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
BENCH_DATABASE = "omnicard_bench"
HISTORY_DATABASE = "omnicard_bench_history"  # (d)'s: the same ledger plus the preload
PGBENCH_DATABASE = "omnicard_bench_pgbench"
DATABASES = (BENCH_DATABASE, HISTORY_DATABASE, PGBENCH_DATABASE)

# Scale 10 gives pgbench 10 branch rows: at scale 1 every tpcb-like transaction updates the one
# branch row, so 8 clients would queue on one row lock and the reference would measure that.
PGBENCH_SCALE = 10
PGBENCH_CLIENTS = 8

SHOPPER_CARDS_PER_TILL = 8
CARD_LIMIT = 50_000  # minor units; each card is funded to its limit before the run
STORES = 32
PRELOAD_LEGS_PER_TRANSACTION = 100
PRELOAD_TRANSACTIONS_PER_COMMIT = 20
PRELOAD_PROCESSES = 3  # two cores: enough to keep both busy while PostgreSQL writes

SAMPLE_INTERVAL = 0.1  # seconds between looks at pg_stat_activity

# This machine may be shared: a run measured while something else uses the cores measures that.
# Each run waits for a quiet machine first, and a run during which processes other than ours
# (and PostgreSQL's own WAL writer, checkpointer, ...) used more than DISTURBED_CPU percent of
# a core is thrown away and run again, at most ATTEMPTS_PER_RUN times in all.
QUIET_CPU = 30.0
QUIET_WAIT = 120.0
DISTURBED_CPU = 25.0
ATTEMPTS_PER_RUN = 3


@dataclass(frozen=True)
class Settings:
    runs: int
    warmup: float
    duration: float
    pgbench_seconds: int
    primed_shoppers: int
    preload_postings: int


FULL = Settings(
    runs=3,
    warmup=1.0,
    duration=10.0,
    pgbench_seconds=20,
    primed_shoppers=10_000,
    preload_postings=1_000_000,
)
QUICK = Settings(
    runs=1,
    warmup=0.5,
    duration=3.0,
    pgbench_seconds=5,
    primed_shoppers=2_000,
    preload_postings=20_000,
)


# --------------------------------------------------------------------------------------------
# Databases


def admin_engine(admin_url: str) -> Engine:
    return create_engine(admin_url, isolation_level="AUTOCOMMIT", poolclass=NullPool)


def create_fresh_database(admin: Engine, name: str) -> str:
    """Create ``name`` (dropping a leftover of a killed run first); return its URL."""
    drop_database(admin, name)
    with admin.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}"'))
    return admin.url.set(database=name).render_as_string(hide_password=False)


def drop_database(admin: Engine, name: str) -> None:
    with admin.connect() as c:
        c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def migrate(url: str) -> None:
    """The schema comes from the Alembic migrations, exactly as in production."""
    engine = make_engine(url, poolclass=NullPool)
    with engine.begin() as connection:
        config = Config(str(ROOT / "alembic.ini"))
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
    engine.dispose()


def settle(*urls: str) -> None:
    """Start every run from the same state: statistics current, no dirty pages left over.

    Without this a run pays for the checkpoint and autovacuum of whatever ran before it.
    """
    for url in urls:
        engine = create_engine(url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
        with engine.connect() as c:
            c.execute(text("VACUUM (ANALYZE)"))
            c.execute(text("CHECKPOINT"))
        engine.dispose()


def verify_ledger(url: str) -> None:
    """Print the ledger check; stop the bench if the ledger is broken."""
    engine = make_engine(url, poolclass=NullPool)
    with Session(engine) as session:
        report = verify(session)
    engine.dispose()
    for line in report.lines():
        print(f"    verify: {line}")
    if not report.ok:
        raise SystemExit("the ledger does not verify: the figures above mean nothing")


# --------------------------------------------------------------------------------------------
# The machine


def describe_machine(admin: Engine) -> dict[str, str]:
    with admin.connect() as c:
        server = c.execute(text("SELECT version()")).scalar_one()
        settings = dict(
            c.execute(
                text(
                    "SELECT name, setting || COALESCE(unit, '') FROM pg_settings WHERE name IN "
                    "('shared_buffers', 'synchronous_commit', 'fsync', 'wal_sync_method', "
                    "'max_connections', 'commit_delay')"
                )
            ).all()
        )
    return {
        "CPU": f"{_cpu_model()}, {os.cpu_count()} cores",
        "RAM": f"{_memory_gib():.1f} GiB",
        "OS": platform.platform(),
        "PostgreSQL": server,
        "PostgreSQL settings": ", ".join(f"{k}={v}" for k, v in sorted(settings.items())),
        "Python": f"{platform.python_implementation()} {platform.python_version()}",
        "Libraries": f"SQLAlchemy {sqlalchemy.__version__}, psycopg {psycopg.__version__}",
        "Client and server": "same machine: the workers and PostgreSQL share the cores",
    }


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _memory_gib() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) / 1024**2
    return 0.0


# --------------------------------------------------------------------------------------------
# Where the time goes: CPU of the clients and of their PostgreSQL backends, and what the
# backends were waiting for, sampled while a run is being measured. Linux only (/proc).

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")

_WAITS = text(
    "SELECT state, wait_event_type, wait_event FROM pg_stat_activity WHERE pid = ANY(:pids)"
)


@dataclass(frozen=True)
class Observation:
    #: Percent of one core (the machine has os.cpu_count() x 100%).
    client_cpu: float
    server_cpu: float
    machine_busy: float
    #: Share of the sampled backend states, most common first.
    waits: dict[str, float]
    #: The busiest processes that are neither the clients nor their backends, and their CPU.
    busiest_others: list[tuple[str, float]]

    @property
    def other_cpu(self) -> float:
        """WAL writer, checkpointer, kernel, this script: everything else that was busy."""
        return max(0.0, self.machine_busy - self.client_cpu - self.server_cpu)

    @property
    def disturbed(self) -> bool:
        return self.other_cpu > DISTURBED_CPU

    def summary(self, top: int = 4) -> str:
        waits = ", ".join(f"{name} {share:.0%}" for name, share in list(self.waits.items())[:top])
        return (
            f"CPU: clients {self.client_cpu:.0f}%, PostgreSQL backends {self.server_cpu:.0f}%, "
            f"other {self.other_cpu:.0f}%, machine {self.machine_busy:.0f}% "
            f"of {100 * (os.cpu_count() or 1)}%; backends: {waits}"
        )

    def others(self) -> str:
        return ", ".join(f"{name} {cpu:.0f}%" for name, cpu in self.busiest_others)


def observe(url: str, client_pids: list[int], backend_pids: list[int], start: float, end: float):
    """Watch the clients and backends from ``start`` to ``end`` (time.monotonic())."""
    engine = create_engine(url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    samples: Counter[str] = Counter()
    with engine.connect() as c:
        _sleep_until(start)
        cpu_before = _cpu_snapshot(client_pids, backend_pids)
        while time.monotonic() < end - SAMPLE_INTERVAL:
            for row in c.execute(_WAITS, {"pids": backend_pids}):
                samples[_describe_wait(row.state, row.wait_event_type, row.wait_event)] += 1
            time.sleep(SAMPLE_INTERVAL)
        _sleep_until(end)
        cpu_after = _cpu_snapshot(client_pids, backend_pids)
    engine.dispose()
    elapsed = cpu_after.wall - cpu_before.wall
    total = sum(samples.values()) or 1
    ours = {*client_pids, *backend_pids}
    others = Counter(
        {
            f"{name} (pid {pid})": 100 * (seconds - cpu_before.every_process.get(pid, ("", 0))[1])
            for pid, (name, seconds) in cpu_after.every_process.items()
            if pid not in ours
        }
    )
    return Observation(
        client_cpu=100 * (cpu_after.clients - cpu_before.clients) / elapsed,
        server_cpu=100 * (cpu_after.backends - cpu_before.backends) / elapsed,
        machine_busy=100 * (cpu_after.machine - cpu_before.machine) / elapsed,
        waits={name: n / total for name, n in samples.most_common()},
        busiest_others=[(name, cpu / elapsed) for name, cpu in others.most_common(3)],
    )


def _describe_wait(state: str | None, wait_type: str | None, wait_event: str | None) -> str:
    if state == "active" and wait_type != "Client":
        return f"{wait_type}:{wait_event}" if wait_event else "on CPU"
    if state in ("active", "idle", "idle in transaction"):
        # ClientRead: the backend has answered and waits for the client's next statement.
        return f"waiting for client ({state})"
    return state or "unknown"


@dataclass(frozen=True)
class _CpuSnapshot:
    wall: float
    clients: float
    backends: float
    machine: float
    every_process: dict[int, tuple[str, float]]  # pid: (what it is, CPU seconds)


def _cpu_snapshot(client_pids: list[int], backend_pids: list[int]) -> _CpuSnapshot:
    return _CpuSnapshot(
        wall=time.monotonic(),
        clients=sum(_process_cpu_seconds(pid) for pid in client_pids),
        backends=sum(_process_cpu_seconds(pid) for pid in backend_pids),
        machine=_machine_busy_seconds(),
        every_process={
            int(entry.name): (_process_name(int(entry.name)), _process_cpu_seconds(int(entry.name)))
            for entry in Path("/proc").iterdir()
            if entry.name.isdigit()
        },
    )


def _process_name(pid: int) -> str:
    """The command line, short: PostgreSQL's processes show their role and database there."""
    try:
        words = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
        return words[:60] or Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return "?"


def _process_cpu_seconds(pid: int) -> float:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    # The command name (field 2) may hold spaces; fields after its ")" start at field 3.
    fields = stat.rpartition(")")[2].split()
    user, system = int(fields[11]), int(fields[12])  # fields 14 and 15: utime, stime
    return (user + system) / CLOCK_TICKS


def _machine_busy_seconds() -> float:
    first_line = Path("/proc/stat").read_text().splitlines()[0]
    # user nice system idle iowait irq softirq steal: steal is time another virtual machine
    # had our core, not work done here.
    user, nice, system, _idle, _iowait, irq, softirq, _steal = (
        int(v) for v in first_line.split()[1:9]
    )
    return (user + nice + system + irq + softirq) / CLOCK_TICKS


def wait_for_quiet_machine() -> None:
    deadline = time.monotonic() + QUIET_WAIT
    while True:
        before = _machine_busy_seconds()
        time.sleep(1.0)
        busy = 100 * (_machine_busy_seconds() - before)
        if busy < QUIET_CPU:
            return
        if time.monotonic() > deadline:
            print(f"    warning: the machine stayed busy ({busy:.0f}% CPU) before this run")
            return


def _sleep_until(moment: float) -> None:
    time.sleep(max(0.0, moment - time.monotonic()))


# --------------------------------------------------------------------------------------------
# Measurements


@dataclass
class Measurement:
    key: str
    title: str
    #: ``run_once(tag)`` measures once: (per second, Observation). ``tag`` is new every time.
    run_once: Callable[[str], tuple[float, Observation]]
    #: One figure per round, in round order.
    runs: list[float] = field(default_factory=list)
    observations: list[Observation] = field(default_factory=list)
    #: Runs thrown away because something else used the CPU during them.
    discarded: int = 0

    @property
    def median(self) -> float:
        return statistics.median(self.runs)

    @property
    def median_run(self) -> int:
        """The index of the run whose figure is (closest to) the median."""
        return min(range(len(self.runs)), key=lambda i: abs(self.runs[i] - self.median))


def measure_once(measurement: Measurement, databases: list[str]) -> None:
    """One undisturbed run of ``measurement``, from settled databases and a quiet machine."""
    print(f"\n{measurement.key}: {measurement.title}")
    for attempt in range(1, ATTEMPTS_PER_RUN + 1):
        settle(*databases)
        wait_for_quiet_machine()
        tag = f"{measurement.key}-{len(measurement.runs) + measurement.discarded + 1}"
        per_second, observation = measurement.run_once(tag)
        print(f"  {per_second:,.0f}/s")
        print(f"    {observation.summary()}")
        print(f"    busiest other processes: {observation.others()}")
        if not observation.disturbed or attempt == ATTEMPTS_PER_RUN:
            break
        measurement.discarded += 1
        print(f"    disturbed (other processes used {observation.other_cpu:.0f}% CPU): again")
    measurement.runs.append(per_second)
    measurement.observations.append(observation)


# --------------------------------------------------------------------------------------------
# (a) pgbench


def pgbench_environment(url: str) -> tuple[list[str], dict[str, str]]:
    """libpq connection options and environment for pgbench, from a SQLAlchemy URL."""
    parsed = make_url(url)
    options = [
        "-h", parsed.host or "127.0.0.1",
        "-p", str(parsed.port or 5432),
        "-U", parsed.username or "postgres",
    ]  # fmt: skip
    environment = dict(os.environ)
    if parsed.password:
        environment["PGPASSWORD"] = parsed.password
    return options, environment


def initialise_pgbench(url: str) -> None:
    options, environment = pgbench_environment(url)
    command = ["pgbench", "-i", "-q", "-s", str(PGBENCH_SCALE), *options, PGBENCH_DATABASE]
    subprocess.run(command, env=environment, check=True, capture_output=True, text=True)


def run_pgbench(url: str, settings: Settings) -> tuple[float, Observation]:
    options, environment = pgbench_environment(url)
    command = [
        "pgbench", "-b", "tpcb-like",
        "-c", str(PGBENCH_CLIENTS), "-j", str(os.cpu_count() or 1),
        "-T", str(settings.pgbench_seconds),
        *options, PGBENCH_DATABASE,
    ]  # fmt: skip
    process = subprocess.Popen(
        command, env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        # pgbench vacuums its tables and connects first: look only once it is running.
        started = time.monotonic()
        _sleep_until(started + 2.0)
        observation = observe(
            url,
            client_pids=[process.pid],
            backend_pids=_pgbench_backends(url),
            start=time.monotonic(),
            end=started + settings.pgbench_seconds - 0.5,
        )
        stdout, stderr = process.communicate(timeout=settings.pgbench_seconds + 120)
    finally:
        if process.poll() is None:
            process.terminate()
            process.wait()
    if process.returncode != 0:
        raise RuntimeError(f"pgbench failed:\n{stderr}")
    found = re.search(r"tps = ([\d.]+) \(without initial connection time\)", stdout)
    if found is None:
        raise RuntimeError(f"no tps in pgbench's output:\n{stdout}")
    return float(found.group(1)), observation


def _pgbench_backends(url: str) -> list[int]:
    engine = create_engine(url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    with engine.connect() as c:
        pids = c.execute(
            text(
                "SELECT pid FROM pg_stat_activity "
                "WHERE datname = :db AND application_name = 'pgbench' AND pid <> pg_backend_pid()"
            ),
            {"db": PGBENCH_DATABASE},
        ).scalars()
        found = list(pids)
    engine.dispose()
    return found


# --------------------------------------------------------------------------------------------
# (b), (c), (d): sales through ledger.post()


@dataclass(frozen=True)
class SharedAccounts:
    """The accounts every till posts to; opened once per bench database."""

    stores: list[int]  # each store's sales account, hot
    stars_issuance: int  # hot, STAR
    card_funding: int  # where the cards' money came from, hot
    preload_source: int  # the other side of the preloaded history, hot


def open_shared_accounts(url: str) -> SharedAccounts:
    engine = make_engine(url, poolclass=NullPool)
    with Session(engine) as session:

        def hot(code: str, name: str, unit: str, type_: str) -> int:
            account = ledger.open_account(
                session, code=code, name=name, unit=unit, type=type_, hot=True
            )
            return account.id

        accounts = SharedAccounts(
            stores=[
                hot(f"store:{n}:sales", f"Store {n} sales", "USD", "income")
                for n in range(1, STORES + 1)
            ],
            stars_issuance=hot("stars:issuance", "Stars issued", "STAR", "expense"),
            card_funding=hot("bench:card-funding", "Card top-ups received", "USD", "asset"),
            preload_source=hot("bench:preload", "Preloaded history", "USD", "equity"),
        )
        session.commit()
    engine.dispose()
    return accounts


@dataclass(frozen=True)
class TillPlan:
    """What one worker process does: a till selling to its own shoppers."""

    url: str
    till: int
    run_tag: str  # keeps account codes unique across runs
    store_number: int
    store_account: int
    stars_issuance: int
    card_funding: int
    warmup: float
    duration: float


@dataclass(frozen=True)
class ShopperCard:
    card: int
    stars: int


@dataclass(frozen=True)
class Ready:
    till: int
    backend_pid: int


@dataclass(frozen=True)
class Done:
    till: int
    sales: int


def till_worker(plan: TillPlan, start_line, may_leave, results) -> None:
    """A worker process: open and fund its cards, wait for the others, then sell."""
    db = Database(make_engine(plan.url))  # the app's own engine settings
    try:
        with db.sessions() as session:
            cards = open_funded_cards(session, plan)
            backend_pid = session.scalar(text("SELECT pg_backend_pid()"))
            session.commit()
            results.put(Ready(plan.till, backend_pid))
            start_line.wait(timeout=SETUP_TIMEOUT_S)
            sales = sell_until_time_is_up(session, plan, cards)
        results.put(Done(plan.till, sales))
        # Keep this process and its connection's backend alive until the observer has read
        # their CPU time: a process that has ended has no CPU time left to read.
        may_leave.wait(timeout=SETUP_TIMEOUT_S)
    except Exception:
        start_line.abort()  # the others must not wait for a worker that will never come
        results.put(Failed(plan.till, traceback.format_exc()))
    finally:
        db.engine.dispose()


def open_funded_cards(session: Session, plan: TillPlan) -> list[ShopperCard]:
    prefix = f"bench:{plan.run_tag}:till{plan.till}"
    return [
        open_shopper(session, f"{prefix}:shopper{n}", plan.card_funding)
        for n in range(SHOPPER_CARDS_PER_TILL)
    ]


def open_shopper(session: Session, code: str, card_funding: int) -> ShopperCard:
    """A shopper's card, topped up to its limit, and their Stars account."""
    card = ledger.open_account(
        session,
        code=f"{code}:card",
        name="Shopper card",
        unit="USD",
        type="liability",
        no_negative=True,
        max_balance=CARD_LIMIT,
    )
    stars = ledger.open_account(
        session, code=f"{code}:stars", name="Shopper Stars", unit="STAR", type="liability",
        no_negative=True,
    )  # fmt: skip
    ledger.post(
        session,
        kind="top_up",
        legs=[Leg(card_funding, -CARD_LIMIT, "USD"), Leg(card.id, CARD_LIMIT, "USD")],
    )
    return ShopperCard(card=card.id, stars=stars.id)


def sell_until_time_is_up(session: Session, plan: TillPlan, cards: list[ShopperCard]) -> int:
    """Sell round the cards; count the sales committed inside the measured window."""
    released = time.monotonic()
    count_from = released + plan.warmup
    stop_at = count_from + plan.duration
    sales = 0
    for shopper in itertools.cycle(cards):
        if time.monotonic() >= stop_at:
            break
        sell(session, plan, shopper)
        session.commit()
        if count_from <= time.monotonic() < stop_at:
            sales += 1
    return sales


def sell(session: Session, plan: TillPlan, shopper: ShopperCard) -> None:
    # Small amounts so that a few cards funded to their limit last a whole run; what an
    # amount is costs the database nothing.
    amount = random.randint(1, 9)
    stars = 1
    ledger.post(
        session,
        kind="sale",
        channel="pos",
        store_id=plan.store_number,
        device_id=plan.till,
        actor=f"device:{plan.till}",
        legs=[
            Leg(shopper.card, -amount, "USD"),
            Leg(plan.store_account, amount, "USD"),
            Leg(shopper.stars, stars, "STAR"),
            Leg(plan.stars_issuance, -stars, "STAR"),
        ],
    )


def run_tills(plans: list[TillPlan]) -> tuple[float, Observation]:
    """Start one process per plan, release them together, return sales/second."""
    context = multiprocessing.get_context("spawn")  # no inherited connections or locks
    start_line = context.Barrier(len(plans) + 1)
    may_leave = context.Event()
    results = context.Queue()
    workers = [
        context.Process(
            target=till_worker,
            args=(plan, start_line, may_leave, results),
            name=f"till-{plan.till}",
        )
        for plan in plans
    ]
    for worker in workers:
        worker.start()
    try:
        try:
            start_line.wait(timeout=SETUP_TIMEOUT_S)
        except threading.BrokenBarrierError:
            raise WorkerFailed(first_failure(results)) from None
        released = time.monotonic()
        backend_pids = [ready.backend_pid for ready in collect(results, Ready, len(plans))]
        window_start = released + plans[0].warmup
        observation = observe(
            plans[0].url,
            client_pids=[worker.pid for worker in workers],
            backend_pids=backend_pids,
            start=window_start,
            end=window_start + plans[0].duration,
        )
        done = collect(results, Done, len(plans))
    finally:
        may_leave.set()
        stop_workers(workers, results)
    return sum(d.sales for d in done) / plans[0].duration, observation


def measure_sales(
    url: str,
    accounts: SharedAccounts,
    settings: Settings,
    *,
    tills: int,
    one_store: bool,
    tag: str,
) -> tuple[float, Observation]:
    plans = [
        TillPlan(
            url=url,
            till=till,
            run_tag=tag,
            store_number=1 if one_store else till,
            store_account=accounts.stores[0 if one_store else till - 1],
            stars_issuance=accounts.stars_issuance,
            card_funding=accounts.card_funding,
            warmup=settings.warmup,
            duration=settings.duration,
        )
        for till in range(1, tills + 1)
    ]
    outcome = run_tills(plans)
    verify_ledger(url)
    return outcome


# --------------------------------------------------------------------------------------------
# Filling the ledger, through ledger.open_account() and ledger.post() only, from a few
# processes so that it takes seconds, not minutes.


def in_processes(work: Callable[[str, SharedAccounts, int, int], int], url, accounts, count):
    """Split ``count`` items of ``work`` over PRELOAD_PROCESSES processes; wait for them all."""
    shares = [count // PRELOAD_PROCESSES] * PRELOAD_PROCESSES
    shares[0] += count - sum(shares)
    context = multiprocessing.get_context("spawn")
    with context.Pool(PRELOAD_PROCESSES) as pool:
        deadlocks = pool.starmap(
            work, [(url, accounts, n, share) for n, share in enumerate(shares)]
        )
    if sum(deadlocks):
        print(f"  {sum(deadlocks)} batch(es) chosen as deadlock victims, rolled back, redone")


def commit_in_batches(session: Session, count: int, batch: int, do_one: Callable[[int], None]):
    """``do_one(n)`` for n in 1..count, one commit per ``batch``; return the deadlocks met.

    Several posts to the same hot account in one database transaction hold several of its
    shards, and two such transactions can each wait for a shard the other holds: PostgreSQL
    then rolls one back. As any client of the ledger that batches must, redo that batch.
    """
    deadlocks = 0
    for first in range(1, count + 1, batch):
        while True:
            try:
                for n in range(first, min(first + batch, count + 1)):
                    do_one(n)
                session.commit()
                break
            except Exception as error:  # raw psycopg, or wrapped by SQLAlchemy
                if not isinstance(getattr(error, "orig", error), psycopg.errors.DeadlockDetected):
                    raise
                session.rollback()
                deadlocks += 1
    return deadlocks


def prime_ledger(url: str, accounts: SharedAccounts, shoppers: int) -> None:
    """Give the ledger the shoppers of a ledger in service before measuring anything.

    On an almost empty database PostgreSQL plans every lookup by id (the account rows, the
    foreign-key checks of each posting) as a sequential scan of a table that is a page or two,
    and keeps those plans while the table grows under the run: the first runs would measure
    that, which no ledger in service ever sees.
    """
    print(f"\npriming: {shoppers:,} shoppers (a card topped up, a Stars account)")
    started = time.monotonic()
    in_processes(open_shoppers, url, accounts, shoppers)
    print(f"  primed in {time.monotonic() - started:,.0f} s")
    verify_ledger(url)


def open_shoppers(url: str, accounts: SharedAccounts, process: int, count: int) -> int:
    db = Database(make_engine(url))
    try:
        with db.sessions() as session:

            def open_one(n: int) -> None:
                open_shopper(session, f"shopper:{process}:{n}", accounts.card_funding)

            return commit_in_batches(session, count, 100, open_one)
    finally:
        db.engine.dispose()


def preload_history(url: str, accounts: SharedAccounts, postings: int) -> None:
    """(d)'s history: many postings on the store's sales account."""
    transactions = max(1, postings // PRELOAD_LEGS_PER_TRANSACTION)
    print(
        f"\npreload: {transactions:,} transactions of {PRELOAD_LEGS_PER_TRANSACTION} store "
        f"postings ({transactions * PRELOAD_LEGS_PER_TRANSACTION:,}) from "
        f"{PRELOAD_PROCESSES} processes"
    )
    started = time.monotonic()
    in_processes(post_store_history, url, accounts, transactions)
    print(f"  preloaded in {time.monotonic() - started:,.0f} s")
    verify_ledger(url)


def post_store_history(url: str, accounts: SharedAccounts, _process: int, count: int) -> int:
    db = Database(make_engine(url))
    try:
        with db.sessions() as session:

            def post_one(_n: int) -> None:
                amounts = [random.randint(1, 999) for _ in range(PRELOAD_LEGS_PER_TRANSACTION)]
                legs = [Leg(accounts.stores[0], amount, "USD") for amount in amounts]
                legs.append(Leg(accounts.preload_source, -sum(amounts), "USD"))
                ledger.post(session, kind="preload", channel="system", legs=legs)

            return commit_in_batches(session, count, PRELOAD_TRANSACTIONS_PER_COMMIT, post_one)
    finally:
        db.engine.dispose()


# --------------------------------------------------------------------------------------------
# The whole run


@dataclass(frozen=True)
class Target:
    title: str
    measured: str
    against: str
    at_least: float

    def ratio(self, measured: dict[str, Measurement]) -> float:
        return measured[self.measured].median / measured[self.against].median

    def ratio_per_round(self, measured: dict[str, Measurement]) -> list[float]:
        pairs = zip(measured[self.measured].runs, measured[self.against].runs, strict=True)
        return [mine / theirs for mine, theirs in pairs]


TARGETS = [
    Target("(b) 8 workers vs (a) pgbench", "b8", "a", 0.35),
    Target("(c) one store vs 32 stores", "c_one", "c_many", 0.90),
    Target("(d) after the preload vs (b) 8 workers", "d", "b8", 0.95),
]


def run_everything(admin: Engine, settings: Settings) -> dict[str, Measurement]:
    """Set up, then measure everything once per round.

    Rounds, not each measurement three times in a row: this virtual machine's speed drifts
    over minutes (the same run has cost twice the CPU per sale a few minutes apart), so
    figures measured minutes apart would compare the drift. In a round every measurement
    runs once, within a few minutes of the others.
    """
    pgbench_url = create_fresh_database(admin, PGBENCH_DATABASE)
    bench_url = create_fresh_database(admin, BENCH_DATABASE)
    history_url = create_fresh_database(admin, HISTORY_DATABASE)
    print(f"pgbench: initialising {PGBENCH_DATABASE} at scale {PGBENCH_SCALE}")
    initialise_pgbench(pgbench_url)
    accounts = prepare_ledger(bench_url, settings)
    history = prepare_ledger(history_url, settings)
    preload_history(history_url, history, settings.preload_postings)

    def sales(url: str, on: SharedAccounts, tills: int, one_store: bool = True):
        return lambda tag: measure_sales(
            url, on, settings, tills=tills, one_store=one_store, tag=tag
        )

    schedule = [
        Measurement(
            "a",
            f"pgbench tpcb-like, {PGBENCH_CLIENTS} clients, scale {PGBENCH_SCALE}, "
            f"{settings.pgbench_seconds} s",
            lambda _tag: run_pgbench(pgbench_url, settings),
        ),
        Measurement("b1", "post() sale, 1 worker", sales(bench_url, accounts, 1)),
        Measurement("b8", "post() sale, 8 workers, one store", sales(bench_url, accounts, 8)),
        Measurement("c_one", "post() sale, 32 workers, one store", sales(bench_url, accounts, 32)),
        Measurement(
            "c_many",
            "post() sale, 32 workers, 32 stores",
            sales(bench_url, accounts, 32, one_store=False),
        ),
        Measurement(
            "d",
            f"post() sale, 8 workers, one store, after {settings.preload_postings:,} "
            "postings on it",
            sales(history_url, history, 8),
        ),
    ]
    for round_number in range(1, settings.runs + 1):
        print(f"\n=== round {round_number} of {settings.runs}")
        for measurement in schedule:
            measure_once(measurement, [pgbench_url, bench_url, history_url])
    return {m.key: m for m in schedule}


def prepare_ledger(url: str, settings: Settings) -> SharedAccounts:
    migrate(url)
    accounts = open_shared_accounts(url)
    prime_ledger(url, accounts, settings.primed_shoppers)
    return accounts


def print_summary(measured: dict[str, Measurement]) -> None:
    reference = measured["a"].median
    print("\nsummary (median per second, and as a share of (a) pgbench):")
    for m in measured.values():
        runs = ", ".join(f"{r:,.0f}" for r in m.runs)
        print(
            f"  {m.key:7} {m.median:>9,.0f}/s  {m.median / reference:>6.0%}  {m.title}"
            f"  (rounds: {runs})"
        )
    print("targets (ratio of the medians; in brackets, each round's own ratio):")
    for target in TARGETS:
        ratio = target.ratio(measured)
        verdict = "met" if ratio >= target.at_least else "MISSED"
        rounds = ", ".join(f"{r:.0%}" for r in target.ratio_per_round(measured))
        print(
            f"  {target.title}: {ratio:.0%} ({rounds}), at least {target.at_least:.0%}: {verdict}"
        )


# --------------------------------------------------------------------------------------------
# docs/benchmarks.md

ANALYSIS_BEGIN = "<!-- analysis:begin (kept when the bench rewrites this file) -->"
ANALYSIS_END = "<!-- analysis:end -->"
ANALYSIS_PLACEHOLDER = """\
_To be completed by the lead: for every target missed above, what limits it and what would fix
it._
"""


def write_doc(
    path: Path, measured: dict[str, Measurement], machine: dict[str, str], settings: Settings
) -> None:
    reference = measured["a"].median
    lines = [
        "# Ledger benchmarks",
        "",
        f"Written by `bench/ledger.py` on {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, at commit "
        f"`{git_commit()}`. Running the bench again rewrites this file, except the analysis "
        "section between its markers.",
        "",
        *command_and_machine("bench.ledger", machine),
        "## What is measured",
        "",
        f"- **(a)** pgbench's built-in `tpcb-like`, {PGBENCH_CLIENTS} clients, "
        f"{os.cpu_count()} threads, {settings.pgbench_seconds} s, on its own database "
        f"initialised with `pgbench -i -s {PGBENCH_SCALE}`. Scale {PGBENCH_SCALE} gives "
        f"{PGBENCH_SCALE} branch rows, so the {PGBENCH_CLIENTS} clients do not all queue on "
        "one branch row's lock. The reference, in transactions/second.",
        "- **(b)** `ledger.post()` of a sale, each sale one committed database transaction: "
        f"card debit (no_negative, max_balance {CARD_LIMIT:,}, funded to its limit), store "
        "sales credit (hot), 1 Star credited to the shopper's Stars account (STAR, "
        "no_negative), Stars issuance debit (hot, STAR). From 1 and from 8 worker processes, "
        "each with its own engine (`make_engine`, the app's pool settings), session and "
        f"{SHOPPER_CARDS_PER_TILL} shoppers' cards; all into one store. Sales/second committed "
        f"in {settings.duration:g} s after a {settings.warmup:g} s warm-up.",
        f"- Before anything is measured, each ledger database is given "
        f"{settings.primed_shoppers:,} shoppers (a card topped up to its limit, a Stars "
        "account), through `ledger.open_account()` and `ledger.post()`, as a ledger in "
        "service has. On an almost empty database "
        "PostgreSQL plans every lookup by id (the account rows, the foreign-key checks of "
        "each posting) as a sequential scan of a one-page table and keeps that plan while the "
        "table grows during the run; without priming, the first runs measured that.",
        "- **(c)** as (b) from 32 workers: all into one store's sales account, and each into "
        "its own store (32 accounts).",
        f"- **(d)** as (b) at 8 workers, after {settings.preload_postings:,} earlier postings "
        "on the store's sales account, preloaded once, before the first round, through "
        f"`ledger.post()` ({PRELOAD_LEGS_PER_TRANSACTION} store credits and one balancing "
        f"debit per transaction, {PRELOAD_TRANSACTIONS_PER_COMMIT} transactions per commit, "
        f"{PRELOAD_PROCESSES} processes). It runs on its own database (`{HISTORY_DATABASE}`, "
        "set up exactly as (b)'s, plus the preload) so that (b) and (d) can be measured side "
        "by side in every round.",
        "",
        f"Every figure is the median of {settings.runs} round(s). In each round every "
        "measurement runs once, in the order of the table below: this virtual machine's speed "
        "drifts over minutes (the same 8-worker run has cost 0.8 ms and 1.4 ms of client CPU "
        "per sale a few minutes apart), so runs of one measurement in a row would be compared "
        "with another's taken minutes later. Each round's own ratios are shown next to the "
        "targets. Before each run the databases are "
        "vacuumed, analysed and checkpointed, and the bench waits for the machine to be quiet; "
        "after each run `app.ledger.verify` checks the ledger (it passed every time, or the "
        "bench would have stopped). A run during which processes other than the bench's and "
        f"PostgreSQL's used more than {DISTURBED_CPU:.0f}% of a core is thrown away and run "
        f"again (at most {ATTEMPTS_PER_RUN} attempts); thrown away this time: "
        f"{_discarded(measured)}.",
        "",
        "## Figures",
        "",
        "| | Measurement | Median /s | Each round /s | vs (a) |",
        "|---|---|---:|---|---:|",
        *[
            f"| ({m.key.replace('_', ' ')}) | {m.title} | {m.median:,.0f} | "
            f"{_runs(m)} | {m.median / reference:.0%} |"
            for m in measured.values()
        ],
        "",
        "A \\* after a run: other processes used the CPU during it, in every attempt.",
        "",
        "## Targets",
        "",
        "| Target | Required | Measured (ratio of medians) | Each round's ratio | Verdict |",
        "|---|---:|---:|---|---|",
        *[_target_row(target, measured) for target in TARGETS],
        "",
        "## Where the time went",
        "",
        "Sampled during the measured window of each measurement's median run. CPU is in percent "
        f"of one core (the machine has {100 * (os.cpu_count() or 1)}%). *Clients* are the "
        "worker processes (or pgbench), *backends* their PostgreSQL server processes, *other* "
        "everything else that was busy (WAL writer, checkpointer, kernel, the bench itself). "
        "Backend states come from `pg_stat_activity` every "
        f"{SAMPLE_INTERVAL:g} s; *waiting for client* means the backend had answered and was "
        "idle until the client sent its next statement.",
        "",
        "| | Clients CPU | Backends CPU | Other CPU | Client CPU ms per txn "
        "| Backend CPU ms per txn | Backend states |",
        "|---|---:|---:|---:|---:|---:|---|",
        *[_observation_row(m) for m in measured.values()],
        "",
        "## Analysis",
        "",
        ANALYSIS_BEGIN,
        _kept_analysis(path),
        ANALYSIS_END,
        "",
        *_kept_others(path),
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines))
    print(f"\nwrote {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")


def _runs(m: Measurement) -> str:
    marks = ["\\*" if seen.disturbed else "" for seen in m.observations]
    return ", ".join(f"{r:,.0f}{mark}" for r, mark in zip(m.runs, marks, strict=True))


def _discarded(measured: dict[str, Measurement]) -> str:
    thrown = [f"{m.discarded} of ({m.key.replace('_', ' ')})" for m in measured.values()]
    return ", ".join(t for t in thrown if not t.startswith("0 ")) or "none"


def _target_row(target: Target, measured: dict[str, Measurement]) -> str:
    ratio = target.ratio(measured)
    verdict = "met" if ratio >= target.at_least else "**missed**"
    rounds = ", ".join(f"{r:.0%}" for r in target.ratio_per_round(measured))
    return f"| {target.title} | ≥ {target.at_least:.0%} | {ratio:.0%} | {rounds} | {verdict} |"


def _observation_row(m: Measurement) -> str:
    seen = m.observations[m.median_run]
    waits = ", ".join(f"{name} {share:.0%}" for name, share in list(seen.waits.items())[:4])
    # CPU milliseconds per committed transaction: what one sale costs, whatever the concurrency.
    per_transaction = 10 / m.runs[m.median_run]
    return (
        f"| ({m.key.replace('_', ' ')}) | {seen.client_cpu:.0f}% | {seen.server_cpu:.0f}% | "
        f"{seen.other_cpu:.0f}% | {seen.client_cpu * per_transaction:.2f} | "
        f"{seen.server_cpu * per_transaction:.2f} | {waits} |"
    )


def _kept_analysis(path: Path) -> str:
    """The hand-written analysis of the file being replaced, if it has one."""
    if path.exists():
        old = path.read_text()
        if ANALYSIS_BEGIN in old and ANALYSIS_END in old:
            return old.split(ANALYSIS_BEGIN, 1)[1].split(ANALYSIS_END, 1)[0].strip("\n")
    return ANALYSIS_PLACEHOLDER.rstrip("\n")


#: Everything from here on in docs/benchmarks.md belongs to other benchmarks (the real-time
#: figures of bench/realtime.py): this bench keeps it when it rewrites the file.
OTHERS_BEGIN = "<!-- other benchmarks: kept -->"


def _kept_others(path: Path) -> list[str]:
    if path.exists() and OTHERS_BEGIN in (old := path.read_text()):
        return [OTHERS_BEGIN + old.split(OTHERS_BEGIN, 1)[1].rstrip("\n"), ""]
    return []


def command_and_machine(module: str, machine: dict[str, str]) -> list[str]:
    """The "Command" and "Machine" sections every bench's report opens with."""
    return [
        "## Command",
        "",
        "Run from the repository root:",
        "",
        "```",
        command_line(module),
        "```",
        "",
        "## Machine",
        "",
        *[f"- **{name}**: {value}" for name, value in machine.items()],
        "",
    ]


def command_line(module: str = "bench.ledger") -> str:
    """How this run was started, to be run again (any password in the URL hidden)."""
    python = Path(sys.executable)
    shown = str(python.relative_to(ROOT)) if python.is_relative_to(ROOT) else "python"
    words = [shown, "-m", module, *sys.argv[1:]]
    if ADMIN_URL_ENV in os.environ:
        url: URL = make_url(os.environ[ADMIN_URL_ENV])
        words.insert(0, f"{ADMIN_URL_ENV}={url.render_as_string(hide_password=True)}")
    return shlex.join(words)


def git_commit() -> str:
    found = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    )
    return found.stdout.strip() or "unknown"


# --------------------------------------------------------------------------------------------


def parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.ledger", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="short runs, 1 run each, a small preload: a sanity check, not a figure",
    )
    add_doc_option(parser)
    return parser.parse_args(argv)


def add_doc_option(parser: argparse.ArgumentParser) -> None:
    """``--doc``, as every bench takes it."""
    parser.add_argument(
        "--doc",
        type=Path,
        help=f"where to write the report (default: {DEFAULT_DOC.relative_to(ROOT)} for a full "
        "run; none for --quick, so a sanity check never replaces the published figures)",
    )


def _stop_on_signal(signal_number: int, _frame) -> None:
    print(f"\nstopped by signal {signal_number}: cleaning up", file=sys.stderr, flush=True)
    sys.exit(128 + signal_number)


def main(argv: list[str] | None = None) -> None:
    # Stopped with kill (or run in the background, where Ctrl-C does not reach it): unwind as
    # for Ctrl-C, so that the workers are stopped and the bench databases dropped.
    signal.signal(signal.SIGTERM, _stop_on_signal)
    arguments = parse_arguments(argv)
    settings = QUICK if arguments.quick else FULL
    doc = arguments.doc or (None if arguments.quick else DEFAULT_DOC)
    admin = admin_engine(os.environ.get(ADMIN_URL_ENV, DEFAULT_ADMIN_URL))
    machine = describe_machine(admin)
    for name, value in machine.items():
        print(f"{name}: {value}")
    try:
        measured = run_everything(admin, settings)
    finally:
        for name in DATABASES:
            drop_database(admin, name)
        admin.dispose()
    print_summary(measured)
    if doc is not None:
        write_doc(doc.resolve(), measured, machine, settings)


if __name__ == "__main__":
    main()

"""Real-time events, measured: how soon a committed change reaches the open streams, what
events cost the sales, how many streams one server process holds, and across processes.

Run by hand from the repository root (it is not part of the test suite)::

    .venv/bin/python -m bench.realtime          # full run, ~15 minutes; writes the doc below
    .venv/bin/python -m bench.realtime --quick  # sanity check, ~4 minutes; writes no doc
    .venv/bin/python -m bench.realtime --only workers --no-wait  # one part, on a busy machine

The figures go to docs/benchmarks.md, after the ledger bench's part (which that bench keeps).

On a fresh PostgreSQL database (schema from the Alembic migrations, data made through the
services), with the production server ``gunicorn -c gunicorn.conf.py wsgi:app`` (gevent):

(1) latency from a top-up's COMMIT to its arrival on every open ``GET /v1/events`` stream,
    with 100 and with 1,000 streams open;
(2) sales per second from 8 worker processes through ``make_sale``, with events on and with
    ``emit`` made a no-op, while the server sequences and 100 streams are open; the verdict
    from one run that switches them on and off every 2 s (``bench.sales_interleaved``);
(3) 10,000 streams open on one gunicorn worker: does every stream receive every event, the
    worker's memory, and how long the fan-out takes;
(4) two gunicorn servers: an event committed through one reaching the streams of the other;
(5) one gunicorn server of 2 and of 4 workers (``WEB_CONCURRENCY``), top-ups through its API
    landing on whichever worker the kernel hands the connection to, streams spread the same
    way: the targets of (1), and the delays by the worker that took the top-up.

The streams are held by a process of their own (asyncio: a socket each, no thread per stream),
so that they cost the server what real clients would. Every latency and sales figure is the
median of 3 runs (1 with ``--quick``). The ledger is verified at the end, and the bench
database dropped. The server is reached through ``OMNICARD_BENCH_POSTGRES_URL`` (a superuser
URL; default: the local ``test`` database).
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import itertools
import json
import math
import multiprocessing
import os
import random
import resource
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import suppress
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, NamedTuple

import psycopg
from flask import current_app
from sqlalchemy import event as sa_event
from sqlalchemy import func, make_url, select, text
from sqlalchemy.engine import Engine
from sqlalchemy.pool import NullPool

from app import create_app
from app.auth import services as auth
from app.auth.principal import Principal
from app.cards import services as cards
from app.cards.models import Card
from app.catalog import services as catalog
from app.core.db import database, make_engine, session
from app.core.settings import settings
from app.core.settings import settings as app_settings
from app.customers import services as customers
from app.events.election import PENDING_CHANNEL, SEQUENCER_LOCK
from app.events.models import Event, OutboxEntry
from app.payments import services as payments
from app.sales import services as sales
from app.stores import services as stores
from app.stores.models import Store
from bench.ledger import (
    ADMIN_URL_ENV,
    DEFAULT_ADMIN_URL,
    OTHERS_BEGIN,
    add_doc_option,
    admin_engine,
    command_and_machine,
    create_fresh_database,
    describe_machine,
    drop_database,
    git_commit,
    migrate,
    verify_ledger,
    wait_for_quiet_machine,
)
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
BENCH_DATABASE = "omnicard_bench_realtime"
GUNICORN = [str(Path(sys.executable).with_name("gunicorn")), "-c", "gunicorn.conf.py", "wsgi:app"]

#: Workers per gunicorn server. One: the fan-out of one process is what is measured, and the
#: other core is left to PostgreSQL and the subscribers' process. Part (5) runs more.
SERVER_WORKERS = 1
#: Part (5): one server of this many workers, as ``WEB_CONCURRENCY`` runs it in production.
WORKER_COUNTS = (2, 4)
HEARTBEAT_S = 15  # the production default of OMNICARD_EVENTS_HEARTBEAT_S, left as it is

TOP_UP_MINOR = 500  # the smallest top-up the app allows: a card takes ~100 of them
LATTE_SKU, LATTE_MINOR = "BENCH-LATTE", 395
SALE_WORKERS = 8
SHOPPERS_PER_TILL = 16  # enough funded cards for ~2,000 sales per worker per run
WARMUP_TOP_UPS = 5  # not counted: the first requests of a process pay for imports and caches
#: Between one top-up reaching every stream and the next top-up: random, so the top-ups keep
#: no rhythm with the hub's 1 s safety poll or the heartbeats.
PAUSE_S = (0.02, 0.05)
CAPACITY_PAUSE_S = 1.0

#: Streams being opened at once. An opening stream holds two of the worker's pooled
#: connections at the same time (its request's session, idle in transaction after the token
#: look-up, and the hub's position query), and the pool has 60: 30 or more openings at once
#: can each hold one and wait for the other until the pool's 30 s timeout.
CONNECT_CONCURRENCY = 16
OPEN_TIMEOUT_S = 120.0
ARRIVAL_TIMEOUT_S = 30.0
#: Password hashing is only used while setting up (sign-ups, PINs); cheap, as in the tests.
CHEAP_HASHING = {"ARGON2_TIME_COST": 1, "ARGON2_MEMORY_KIB": 1024}


@dataclass(frozen=True)
class Settings:
    runs: int
    top_ups: int  # per latency run, after the warm-up
    subscriber_counts: tuple[int, ...]
    capacity_streams: int
    capacity_top_ups: int
    sales_warmup_s: float
    sales_duration_s: float
    sales_streams: int
    cross_streams: int  # on each of the two servers
    #: Wait for other benchmarks sharing the machine, and run again a run they disturbed.
    patient: bool
    #: Part (2)'s verdict: slices of one interleaved run (``bench.sales_interleaved``).
    interleaved_slices: int
    interleaved_slice_s: float


FULL = Settings(
    runs=3, top_ups=200, subscriber_counts=(100, 1_000), capacity_streams=10_000,
    capacity_top_ups=5, sales_warmup_s=1.0, sales_duration_s=10.0, sales_streams=100,
    cross_streams=100, patient=True, interleaved_slices=40, interleaved_slice_s=2.0,
)  # fmt: skip
QUICK = Settings(
    runs=1, top_ups=30, subscriber_counts=(100, 1_000), capacity_streams=2_000,
    capacity_top_ups=3, sales_warmup_s=0.5, sales_duration_s=3.0, sales_streams=100,
    cross_streams=100, patient=False, interleaved_slices=12, interleaved_slice_s=1.0,
)  # fmt: skip


# --------------------------------------------------------------------------------------------
# Small measuring tools (Linux: /proc)

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def percentile(values: list[float], share: float) -> float:
    """Linear interpolation between the closest ranks (numpy's default)."""
    ordered = sorted(values)
    rank = (len(ordered) - 1) * share
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def cpu_seconds(pid: int) -> float:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat.rpartition(")")[2].split()  # the name in field 2 may hold spaces
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime + stime


def machine_busy_seconds() -> float:
    user, nice, system, _idle, _iowait, irq, softirq = (
        int(v) for v in Path("/proc/stat").read_text().split()[1:8]
    )
    return (user + nice + system + irq + softirq) / CLOCK_TICKS


def postgres_pids() -> list[int]:
    """Every PostgreSQL process: backends, WAL writer, checkpointer, ..."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == "postgres":
                    found.append(int(entry.name))
            except OSError:
                pass
    return found


def memory_kib(pid: int) -> dict[str, int]:
    """VmRSS (resident now) and VmHWM (the most it was resident) of a process."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            values[name] = int(rest.split()[0])
    return values


#: Other work that would load the machine during a measurement: the ledger bench, another run
#: of this one (which would also drop this one's database), a test suite.
OTHER_BENCHMARKS = ("-m bench.ledger", "-m bench.realtime", "-m pytest")


def other_benchmarks_running() -> list[str]:
    """Command lines of other benchmarks or test runs sharing this machine."""
    ours = ancestors(os.getpid())
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) not in ours:
            try:
                words = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if any(marker in words for marker in OTHER_BENCHMARKS):
                found.append(words.strip())
    return found


def ancestors(pid: int) -> set[int]:
    """``pid`` and the processes it descends from (a ``timeout`` wrapping this bench, ...)."""
    found = set()
    while pid > 1 and pid not in found:
        found.add(pid)
        try:
            pid = int(Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[1])
        except (OSError, IndexError, ValueError):
            break
    return found


def wait_for_other_benchmarks(only: str = "") -> None:
    """Figures measured while another benchmark loads PostgreSQL would measure that."""
    announced = False
    while running := [words for words in other_benchmarks_running() if only in words]:
        if not announced:
            print(f"waiting for another benchmark to finish: {running[0][:80]}")
            announced = True
        time.sleep(10)


def undisturbed(run_once: Callable[[], Any], patient: bool, attempts: int = 3) -> Any:
    """``run_once()``, waiting for other benchmarks first; a run at whose end another is
    running was disturbed by it and is run again (at most ``attempts`` times in all). Not
    ``patient`` (a sanity check): just run it."""
    if not patient:
        return run_once()
    for attempt in range(1, attempts + 1):
        wait_for_other_benchmarks()
        result = run_once()
        if not other_benchmarks_running():
            return result
        print(f"    another benchmark started during this run (attempt {attempt}): again")
    return result


def raise_open_files_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def libpq_url(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


# --------------------------------------------------------------------------------------------
# The app in this process, and the data every measurement uses


def bench_app(url: str, *, events_hub: bool):
    """The app with production settings, except cheap password hashing (set-up only)."""
    return create_app({"DATABASE_URL": url, "EVENTS_HUB": events_hub} | CHEAP_HASHING)


@dataclass(frozen=True)
class Till:
    """A till with its cashier signed in: a Principal for the services, a token for HTTP."""

    store_id: int
    device_id: int
    staff_id: int
    cashier_token: str

    @property
    def principal(self) -> Principal:
        return Principal(
            "cashier", staff_id=self.staff_id, role="cashier", device_id=self.device_id,
            device_kind="pos", store_id=self.store_id,
        )  # fmt: skip


@dataclass(frozen=True)
class Shopper:
    customer_id: int
    token: str
    card_ids: tuple[int, ...]
    card_numbers: tuple[str, ...]


@dataclass
class Fixtures:
    top_up_till: Till
    sale_tills: list[Till]
    #: The shoppers each sale worker sells to, by till.
    sale_shoppers: list[list[Shopper]]
    #: The shopper whose streams a measurement opens, by measurement.
    watched: dict[str, Shopper]
    #: Round each watched shopper's cards, so that no card goes over its limit.
    card_rounds: dict[str, Iterator[int]] = field(default_factory=dict)

    def next_card(self, name: str) -> int:
        if name not in self.card_rounds:
            self.card_rounds[name] = itertools.cycle(self.watched[name].card_ids)
        return next(self.card_rounds[name])


def top_ups_per_watched_shopper(settings: Settings) -> dict[str, int]:
    per_run = WARMUP_TOP_UPS + settings.top_ups
    return {
        **{f"latency_{n}": settings.runs * per_run for n in settings.subscriber_counts},
        "capacity": WARMUP_TOP_UPS + settings.capacity_top_ups,
        # Through each of the two servers: one to start the first's hub, then the runs.
        "cross": settings.runs * (1 + 2 * per_run),
        **{
            f"workers_{w}_{n}": settings.runs * per_run
            for w in WORKER_COUNTS
            for n in settings.subscriber_counts
        },
    }


def set_up(app, settings: Settings, *, cards_per_sale_shopper: int = 1) -> Fixtures:
    """Stores, tills, signed-in cashiers, a product and shoppers, through the services."""
    with app.app_context():
        s = session()
        catalog.create_product(
            s, sku=LATTE_SKU, currency=cards.currency(), name="Caffè Latte", category="coffee",
            price_minor=LATTE_MINOR,
        )  # fmt: skip
        tills = [open_till(s, n) for n in range(SALE_WORKERS + 1)]
        card_limit = app.config["CARD_MAX_BALANCE_MINOR"]
        watched = {}
        for name, top_ups in top_ups_per_watched_shopper(settings).items():
            # Each card takes top-ups until one more would pass its limit; room for every
            # run to be run twice (see undisturbed), and a card spare.
            per_card = card_limit // TOP_UP_MINOR - 1
            watched[name] = sign_up_shopper(s, name, cards_wanted=2 * top_ups // per_card + 2)
        sale_shoppers = [
            [
                sign_up_shopper(s, f"till{t}-{n}", cards_wanted=cards_per_sale_shopper)
                for n in range(SHOPPERS_PER_TILL)
            ]
            for t in range(SALE_WORKERS)
        ]
        s.commit()
    return Fixtures(
        top_up_till=tills[0], sale_tills=tills[1:], sale_shoppers=sale_shoppers, watched=watched
    )


def open_till(s, n: int) -> Till:
    store = stores.create_store(
        s, code=f"bench-{n}", name=f"Bench store {n}", currency=app_settings().currency
    )
    device, _secret = stores.register_device(s, store_id=store.id, kind="pos", name="Till 1")
    staff_code, pin = f"B{n:03d}", "2468"
    cashier = auth.create_staff(
        s, app_settings(), email=f"cashier{n}@bench.test", name=f"Cashier {n}", role="cashier",
        password="a bench cashier password", staff_code=staff_code, pin=pin, store_id=store.id,
    )  # fmt: skip
    token, _row, _staff = auth.sign_in_cashier(s, app_settings(), device, staff_code, pin)
    return Till(store.id, device.id, cashier.id, token)


def sign_up_shopper(s, name: str, *, cards_wanted: int) -> Shopper:
    token, customer = customers.sign_up(
        s, app_settings(), email=f"{name}@bench.test", password="a bench shopper password",
        name=name,
    )  # fmt: skip
    for _ in range(cards_wanted - 1):
        cards.issue_card(s, kind="digital", customer_id=customer.id)
    owned = cards.cards_of(s, customer.id)
    return Shopper(customer.id, token, tuple(c.id for c in owned), tuple(c.number for c in owned))


class Moment(NamedTuple):
    """A moment on both clocks: the subscribers' parse times are monotonic, the kernel's
    receive stamps realtime."""

    monotonic: float  # seconds
    realtime_ns: int

    @classmethod
    def now(cls) -> Moment:
        return cls(time.monotonic(), time.time_ns())


class TopUpsHere:
    """Top-ups committed from this process through ``top_up_at_till`` (an app with its event
    hub off), then the cluster woken the way a process that does not sequence wakes it."""

    def __init__(self, app, url: str, fixtures: Fixtures):
        self.app, self.fixtures = app, fixtures
        self.waker = psycopg.connect(libpq_url(url), autocommit=True)

    def commit(self, watched: str) -> tuple[int, Moment]:
        """Top up the watched shopper's next card. Returns the top-up's id and t0: the moment
        COMMIT returned."""
        till = self.fixtures.top_up_till
        with self.app.app_context():
            s = session()
            top_up = payments.top_up_at_till(
                s, card=s.get(Card, self.fixtures.next_card(watched)), amount=TOP_UP_MINOR,
                tender="cash", store=s.get(Store, till.store_id), device_id=till.device_id,
                principal=till.principal, idempotency_key=uuid.uuid4().hex,
            )  # fmt: skip
            s.commit()
            committed_at = Moment.now()
            self.waker.execute("SELECT pg_notify(%s, '')", (PENDING_CHANNEL,))
            return top_up.id, committed_at

    def close(self) -> None:
        self.waker.close()


def top_up_over_http(
    port: int, till: Till, card_id: int, key: str | None = None
) -> tuple[int, Moment, Moment]:
    """A top-up at the till through a server's API, on a connection of its own (so that any of
    the server's workers may take it). Returns its id, when the request was sent and when its
    201 came back (the server commits before it answers)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    body = json.dumps({"amount": {"amount": TOP_UP_MINOR, "currency": "USD"}, "tender": "cash"})
    headers = {
        "Authorization": f"Bearer {till.cashier_token}", "Content-Type": "application/json",
        "Idempotency-Key": key or uuid.uuid4().hex,
    }  # fmt: skip
    connection.connect()  # a connection of its own, opened before the clock starts
    sent_at = Moment.now()
    connection.request("POST", f"/v1/cards/{card_id}/top-ups", body=body, headers=headers)
    response = connection.getresponse()
    answer = response.read()
    answered_at = Moment.now()
    connection.close()
    if response.status != 201:
        raise RuntimeError(f"top-up over HTTP: {response.status} {answer[:300]!r}")
    return json.loads(answer)["id"], sent_at, answered_at


def newest_position(engine: Engine) -> int:
    with engine.connect() as c:
        return c.scalar(select(func.coalesce(func.max(Event.position), 0)))


def wait_for_sequencer(engine: Engine, server: Server, timeout_s: float = 30.0) -> int:
    """Until ``server``'s event hub holds the sequencer's advisory lock: not just any hub (the
    backend of a server stopped a moment ago may still hold it, and let go of it later).
    Returns the process id of the worker that holds it."""
    holders = text(
        "SELECT a.client_port FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
        "WHERE l.locktype = 'advisory' AND l.granted AND l.classid = 0 "
        "AND l.objid::bigint = :key AND l.objsubid = 1 AND a.datname = current_database()"
    )
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with engine.connect() as c:
            ports = set(c.scalars(holders, {"key": SEQUENCER_LOCK}))
        for pid in server.worker_pids():
            if ports & local_tcp_ports(pid):
                return pid
        time.sleep(0.05)
    raise RuntimeError(f"the server on port {server.port} did not become the sequencer")


def local_tcp_ports(pid: int) -> set[int]:
    """The local ports of a process's TCP sockets (its connections to PostgreSQL among them)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with suppress(OSError):
            target = os.readlink(fd)
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[9] in inodes:
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


# --------------------------------------------------------------------------------------------
# The server: gunicorn, as in production


class Server:
    """``gunicorn -c gunicorn.conf.py wsgi:app`` (gevent) on a free port of 127.0.0.1."""

    def __init__(
        self, url: str, log_dir: Path, workers: int = SERVER_WORKERS, *, access_log: bool = False
    ):
        self.port = free_port()
        self.workers = workers
        environment = dict(
            os.environ, OMNICARD_BIND=f"127.0.0.1:{self.port}", WEB_CONCURRENCY=str(workers),
            DATABASE_URL=url, OMNICARD_EVENTS_HUB="1",
            OMNICARD_EVENTS_HEARTBEAT_S=str(HEARTBEAT_S),
        )  # fmt: skip
        environment.pop("OMNICARD_ACCESS_LOG", None)
        command = GUNICORN
        #: Each request's worker and ``Idempotency-Key``, if asked for (see ``worker_of``).
        self.access_log_path = log_dir / f"access-{self.port}.log" if access_log else None
        if self.access_log_path is not None:
            environment["OMNICARD_ACCESS_LOG"] = str(self.access_log_path)
            command = [*GUNICORN[:-1], "--access-logformat", "%(p)s %({idempotency-key}i)s",
                       GUNICORN[-1]]  # fmt: skip
        self.log_path = log_dir / f"gunicorn-{self.port}.log"
        self.log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            command, cwd=ROOT, env=environment, stdout=self.log, stderr=subprocess.STDOUT
        )
        try:
            self._wait_until_serving()
        except BaseException:
            self.stop()
            raise

    def _wait_until_serving(self) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"gunicorn exited; see {self.log_path}")
            try:
                connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
                connection.request("GET", "/v1/health")
                if connection.getresponse().status == 200 and len(self.worker_pids()) == (
                    self.workers
                ):
                    connection.close()
                    return
                connection.close()
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"gunicorn did not start serving; see {self.log_path}")

    def worker_pids(self) -> list[int]:
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        try:
            return [int(pid) for pid in children.read_text().split()]
        except OSError:
            return []

    def cpu_seconds(self) -> float:
        return sum(cpu_seconds(pid) for pid in self.worker_pids())

    def worker_of(self, keys: set[str], timeout_s: float = 30.0) -> dict[str, int]:
        """The process id of the worker that answered each request, by its idempotency key,
        from the access log (a worker writes a request's line just after answering it)."""
        deadline = time.monotonic() + timeout_s
        while True:
            found = {}
            for line in self.access_log_path.read_text().splitlines():
                pid, _, key = line.partition(" ")
                if key in keys:
                    found[key] = int(pid.strip("<>"))
            if len(found) == len(keys):
                return found
            if time.monotonic() > deadline:
                raise RuntimeError(f"{len(keys) - len(found)} requests not in the access log")
            time.sleep(0.05)

    def local_ports(self) -> set[int]:
        return set().union(*(local_tcp_ports(pid) for pid in self.worker_pids()))

    def memory_kib(self) -> dict[str, int]:
        """Summed over the workers (the arbiter only watches them)."""
        total: dict[str, int] = defaultdict(int)
        for pid in self.worker_pids():
            for name, kib in memory_kib(pid).items():
                total[name] += kib
        return dict(total)

    def stop(self) -> None:
        """Quick shutdown (SIGQUIT): graceful would wait for every open stream."""
        workers = self.worker_pids()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGQUIT)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        for pid in workers:  # gone with the arbiter unless something went wrong
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.log.close()

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *_exc) -> None:
        self.stop()


# --------------------------------------------------------------------------------------------
# The subscribers: a process of its own holding the SSE streams (asyncio, a socket each)


def stream_request(port: int, token: str) -> bytes:
    return (
        f"GET /v1/events HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Authorization: Bearer {token}\r\nAccept: text/event-stream\r\n"
        "Cache-Control: no-cache\r\n\r\n"
    ).encode()


#: Linux: have the kernel stamp each received packet with the time (CLOCK_REALTIME) it reached
#: the socket; recvmsg() hands the stamp over as ancillary data (a struct timespec).
SO_TIMESTAMPNS = 35
TIMESTAMP_SPACE = socket.CMSG_SPACE(16)


class SseStream:
    """One ``GET /v1/events`` on a non-blocking socket: reads the HTTP head, undoes the chunked
    transfer encoding and hands each complete Server-Sent Event to the client, with the
    kernel's receive time of the read that completed it."""

    def __init__(self, number: int, request: bytes, client: SubscriberClient):
        self.number, self.request, self.client = number, request, client
        self.sock: socket.socket | None = None
        self.head: bytearray | None = bytearray()  # None once the head has been read
        self.chunked = False
        self.body = bytearray()  # still chunk-encoded
        self.text = bytearray()  # decoded, not yet a complete event
        self.opened: asyncio.Future = asyncio.get_running_loop().create_future()
        self.positions: list[int] = []
        self.closing = False

    async def connect(self, port: int) -> None:
        loop = asyncio.get_running_loop()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setblocking(False)
        self.sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        await loop.sock_connect(self.sock, ("127.0.0.1", port))
        await loop.sock_sendall(self.sock, self.request)
        loop.add_reader(self.sock.fileno(), self.readable)

    def readable(self) -> None:
        try:
            data, ancillary, _flags, _address = self.sock.recvmsg(65536, TIMESTAMP_SPACE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data, ancillary = b"", []
        if not data:
            self.lost()
            return
        received_ns = None
        for level, kind, stamp in ancillary:
            if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
                seconds, nanoseconds = struct.unpack("qq", stamp[:16])
                received_ns = seconds * 1_000_000_000 + nanoseconds
        self.feed(data, received_ns)

    def feed(self, data: bytes, received_ns: int | None) -> None:
        if self.head is not None:
            self.head += data
            end = self.head.find(b"\r\n\r\n")
            if end < 0:
                return
            head, data, self.head = bytes(self.head[:end]), bytes(self.head[end + 4 :]), None
            status = int(head.split(b" ", 2)[1])
            if status != 200:
                self.opened.set_exception(ConnectionError(f"HTTP {status}"))
                self.close()
                return
            self.chunked = b"transfer-encoding: chunked" in head.lower()
        if self.chunked:
            self.body += data
            self._dechunk()
        else:
            self.text += data
        while (end := self.text.find(b"\n\n")) >= 0:
            block = bytes(self.text[:end])
            del self.text[: end + 2]
            self.client.on_block(self, block, received_ns)

    def _dechunk(self) -> None:
        while (line_end := self.body.find(b"\r\n")) >= 0:
            size = int(self.body[:line_end].split(b";")[0], 16)
            start = line_end + 2
            if len(self.body) < start + size + 2:
                return
            self.text += self.body[start : start + size]
            del self.body[: start + size + 2]

    def lost(self) -> None:
        if not self.opened.done():
            self.opened.set_exception(ConnectionError("closed before the stream opened"))
        if not self.closing:
            self.client.lost += 1
        self.close()

    def close(self) -> None:
        self.closing = True
        if self.sock is not None and self.sock.fileno() >= 0:
            asyncio.get_running_loop().remove_reader(self.sock.fileno())
            self.sock.close()


class SubscriberClient:
    """Runs in the subscribers' process; obeys the commands the bench sends down a pipe.

    Every ``top_up.settled`` event is timed twice: when its stream has parsed it (t1, the
    shared CLOCK_MONOTONIC of this machine) and when its bytes reached the socket (the kernel's
    receive stamp, CLOCK_REALTIME); the second leaves out the time this one process takes to
    read a thousand sockets in turn. Once a top-up has reached ``announce_at`` streams, the
    bench is told, so that it can send the next one.
    """

    def __init__(self, pipe):
        self.pipe = pipe
        self.streams: list[SseStream] = []
        #: top-up id: [(stream number, parsed at (monotonic s), received at (realtime ns))]
        self.arrivals: dict[int, list[tuple[int, float, int]]] = defaultdict(list)
        self.announce_at: int | None = None
        self.events = self.heartbeats = self.lost = 0
        #: Each sale's event: (when it reached the socket, realtime ns; its created_at, the
        #: moment the sale emitted it inside its transaction, a little before the COMMIT).
        self.sales: list[tuple[int, str]] = []
        self.tasks: set[asyncio.Task] = set()

    async def serve(self) -> None:
        self.finished = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.add_reader(self.pipe.fileno(), self.on_command)
        await self.finished.wait()
        loop.remove_reader(self.pipe.fileno())
        for stream in self.streams:
            stream.close()

    def on_command(self) -> None:
        while self.pipe.poll():
            try:
                name, *arguments = self.pipe.recv()
            except EOFError:  # the bench is gone
                self.finished.set()
                return
            try:
                self.obey(name, arguments)
            except Exception:
                self.pipe.send(("error", traceback.format_exc()))

    def obey(self, name: str, arguments: list) -> None:
        if name == "open":
            task = asyncio.ensure_future(self.open(*arguments))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)
        elif name == "announce":
            self.announce_at = arguments[0]
            self.pipe.send(("ok",))
        elif name == "reset":
            self.arrivals.clear()
            self.events = self.heartbeats = 0
            self.sales.clear()
            for stream in self.streams:
                stream.positions.clear()
            self.pipe.send(("ok",))
        elif name == "arrivals":
            self.pipe.send(("arrivals", dict(self.arrivals)))
        elif name == "positions":
            self.pipe.send(("positions", [s.positions for s in self.streams], self.lost))
        elif name == "count":
            self.pipe.send(("count", self.events, self.heartbeats, self.lost))
        elif name == "sales":
            self.pipe.send(("sales", self.sales))
        elif name == "stop":
            self.finished.set()
        else:
            raise ValueError(f"unknown command {name!r}")

    async def open(self, port: int, tokens: list[str], count: int) -> None:
        started = time.monotonic()
        first = len(self.streams)
        new = [
            SseStream(first + n, stream_request(port, tokens[n % len(tokens)]), self)
            for n in range(count)
        ]
        self.streams += new
        gate = asyncio.Semaphore(CONNECT_CONCURRENCY)

        async def open_one(stream: SseStream) -> None:
            async with gate:
                await stream.connect(port)
                await asyncio.wait_for(asyncio.shield(stream.opened), OPEN_TIMEOUT_S)

        outcomes = await asyncio.gather(*(open_one(s) for s in new), return_exceptions=True)
        failures = [repr(o) for o in outcomes if isinstance(o, BaseException)]
        self.pipe.send(("opened", first, first + count, failures, time.monotonic() - started))

    def on_block(self, stream: SseStream, block: bytes, received_ns: int | None) -> None:
        if block.startswith(b":"):
            self.heartbeats += 1
            return
        fields = dict(line.partition(b": ")[::2] for line in block.split(b"\n"))
        if b"retry" in fields:  # the stream's first line: the server has subscribed it
            if not stream.opened.done():
                stream.opened.set_result(None)
            return
        stream.positions.append(int(fields[b"id"]))
        self.events += 1
        if fields.get(b"event") == b"top_up.settled":
            top_up_id = json.loads(fields[b"data"])["data"]["top_up_id"]
            parsed_at = time.monotonic()
            arrived = self.arrivals[top_up_id]
            arrived.append((stream.number, parsed_at, received_ns))
            if len(arrived) == self.announce_at:
                self.pipe.send(("arrived", top_up_id))
        elif fields.get(b"event") == b"sale.completed" and received_ns is not None:
            self.sales.append((received_ns, json.loads(fields[b"data"])["created_at"]))


def run_subscribers(pipe) -> None:
    """The subscribers' process."""
    raise_open_files_limit()  # a socket per stream
    asyncio.run(SubscriberClient(pipe).serve())


@dataclass(frozen=True)
class Opened:
    numbers: range  # the streams' numbers in the subscribers' process
    seconds: float


class Subscribers:
    """The bench's handle on the subscribers' process."""

    def __init__(self) -> None:
        context = multiprocessing.get_context("spawn")
        self.pipe, theirs = context.Pipe()
        self.process = context.Process(target=run_subscribers, args=(theirs,), name="sse")
        self.process.start()
        theirs.close()
        self.arrived: set[int] = set()

    def _next_message(self, deadline: float, waiting_for: str) -> tuple:
        if not self.pipe.poll(max(0.0, deadline - time.monotonic())):
            raise TimeoutError(f"no {waiting_for} from the subscribers' process in time")
        message = self.pipe.recv()
        if message[0] == "error":
            raise RuntimeError(f"the subscribers' process failed:\n{message[1]}")
        if message[0] == "arrived":  # may come between any command and its answer
            self.arrived.add(message[1])
        return message

    def _receive(self, kind: str, timeout_s: float) -> tuple:
        deadline = time.monotonic() + timeout_s
        while (message := self._next_message(deadline, repr(kind)))[0] != kind:
            pass
        return message

    def open(self, port: int, tokens: list[str], count: int) -> Opened:
        """Open ``count`` streams, round the tokens; return once every one is subscribed."""
        self.pipe.send(("open", port, tokens, count))
        _, first, end, failures, seconds = self._receive("opened", OPEN_TIMEOUT_S + 600)
        if failures:
            raise RuntimeError(f"{len(failures)} of {count} streams failed: {failures[:3]}")
        return Opened(range(first, end), seconds)

    def announce_at(self, streams: int) -> None:
        self.pipe.send(("announce", streams))
        self._receive("ok", 30)

    def reset(self) -> None:
        self.pipe.send(("reset",))
        self._receive("ok", 30)
        self.arrived.clear()

    def wait_until_arrived(self, top_up_id: int, timeout_s: float = ARRIVAL_TIMEOUT_S) -> None:
        """Until the top-up has reached as many streams as ``announce_at`` said."""
        deadline = time.monotonic() + timeout_s
        try:
            while top_up_id not in self.arrived:
                self._next_message(deadline, f"arrival of top-up {top_up_id}")
        except TimeoutError:
            events, _, lost = self.count()
            raise TimeoutError(
                f"top-up {top_up_id} did not reach every stream in {timeout_s:.0f} s "
                f"({events} events received, {lost} streams lost)"
            ) from None

    def arrivals(self) -> dict[int, list[tuple[int, float, int]]]:
        self.pipe.send(("arrivals",))
        return self._receive("arrivals", 120)[1]

    def positions(self) -> tuple[list[list[int]], int]:
        self.pipe.send(("positions",))
        _, positions, lost = self._receive("positions", 120)
        return positions, lost

    def count(self) -> tuple[int, int, int]:
        """Events and heartbeats received since the last reset, and streams lost."""
        self.pipe.send(("count",))
        _, events, heartbeats, lost = self._receive("count", 30)
        return events, heartbeats, lost

    def sale_delays_ms(self) -> list[tuple[float, float]]:
        """For each sale's event the streams received: (when it was emitted, as seconds of the
        realtime clock; milliseconds from then until it reached the socket)."""
        self.pipe.send(("sales",))
        _, sales = self._receive("sales", 30)
        found = []
        for received_ns, created_at in sales:
            emitted_s = datetime.fromisoformat(created_at).timestamp()
            found.append((emitted_s, received_ns / 1e6 - emitted_s * 1000))
        return found

    def cpu_seconds(self) -> float:
        return cpu_seconds(self.process.pid)

    def stop(self) -> None:
        if self.process.is_alive():
            with suppress(OSError):
                self.pipe.send(("stop",))
            self.process.join(timeout=30)
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(timeout=10)
        self.pipe.close()

    def __enter__(self) -> Subscribers:
        return self

    def __exit__(self, *_exc) -> None:
        self.stop()


# --------------------------------------------------------------------------------------------
# Timing top-ups from commit to every stream


@dataclass
class Bench:
    """What every measurement needs."""

    url: str
    engine: Engine  # the bench's own look-ups
    app: object  # the app in this process, its event hub off
    fixtures: Fixtures
    top_ups: TopUpsHere
    settings: Settings
    log_dir: Path


#: A top-up committed somehow: its id, and the moments its latency is counted from.
Commit = Callable[[], tuple[int, dict[str, Moment]]]


def timed_top_ups(subscribers: Subscribers, count: int, commit: Commit, pause_s) -> dict:
    """Commit ``count`` top-ups one at a time, each after the one before has reached every
    stream and a pause. Returns {top-up id: {moment name: Moment}}."""
    moments = {}
    for _ in range(count):
        top_up_id, when = commit()
        moments[top_up_id] = when
        subscribers.wait_until_arrived(top_up_id)
        time.sleep(random.uniform(*pause_s) if isinstance(pause_s, tuple) else pause_s)
    return moments


@dataclass(frozen=True)
class Delays:
    #: Milliseconds from t0 to a stream's having parsed the event, for every (top-up, stream).
    every_ms: list[float]
    #: Per top-up: milliseconds from t0 until the last of the streams had parsed it.
    last_ms: list[float]
    #: Per top-up: ... until the first stream had it.
    first_ms: list[float]

    @property
    def p50(self) -> float:
        return percentile(self.every_ms, 0.50)

    @property
    def p99(self) -> float:
        return percentile(self.every_ms, 0.99)

    @property
    def last_p50(self) -> float:
        return percentile(self.last_ms, 0.50)

    @property
    def last_p99(self) -> float:
        return percentile(self.last_ms, 0.99)

    def summary(self) -> str:
        return (
            f"every stream p50 {self.p50:.1f} ms, p99 {self.p99:.1f} ms; to the last stream "
            f"p50 {self.last_p50:.1f} ms, p99 {self.last_p99:.1f} ms, "
            f"max {max(self.last_ms):.1f} ms"
        )


def delays(
    moments: dict[int, dict[str, Moment]],
    moment: str,
    arrivals: dict,
    streams: range | None = None,
    *,
    until: Literal["parsed", "received"] = "parsed",
) -> Delays:
    """The delays from ``moment`` until the streams (numbered ``streams``, or all of them) had
    parsed each top-up's event, or until its bytes had reached their sockets."""
    every, last, first = [], [], []
    for top_up_id, when in moments.items():
        start = when[moment]
        got = [a for a in arrivals[top_up_id] if streams is None or a[0] in streams]
        if until == "parsed":
            ms = [(parsed - start.monotonic) * 1000 for _, parsed, _ in got]
        else:
            ms = [(received - start.realtime_ns) / 1e6 for _, _, received in got]
        every += ms
        last.append(max(ms))
        first.append(min(ms))
    return Delays(every, last, first)


# --------------------------------------------------------------------------------------------
# (1) latency, with 100 and with 1,000 streams


@dataclass(frozen=True)
class LatencyRun:
    delays: Delays  # until parsed (t1)
    reached: Delays  # until the bytes reached the streams' sockets
    #: CPU milliseconds per top-up (its two events) of the gunicorn worker and of the
    #: subscribers' process.
    server_cpu_ms: float
    subscribers_cpu_ms: float


def measure_latency(bench: Bench, streams: int) -> LatencyRun:
    watched = f"latency_{streams}"
    shopper = bench.fixtures.watched[watched]
    with Server(bench.url, bench.log_dir) as server, Subscribers() as subscribers:
        subscribers.open(server.port, [shopper.token], streams)
        wait_for_sequencer(bench.engine, server)
        subscribers.announce_at(streams)

        def commit() -> tuple[int, dict[str, Moment]]:
            top_up_id, committed_at = bench.top_ups.commit(watched)
            return top_up_id, {"commit": committed_at}

        timed_top_ups(subscribers, WARMUP_TOP_UPS, commit, PAUSE_S)
        subscribers.reset()
        wait_for_quiet_machine()
        server_cpu, subscribers_cpu = server.cpu_seconds(), subscribers.cpu_seconds()
        moments = timed_top_ups(subscribers, bench.settings.top_ups, commit, PAUSE_S)
        server_cpu = server.cpu_seconds() - server_cpu
        subscribers_cpu = subscribers.cpu_seconds() - subscribers_cpu
        arrivals = subscribers.arrivals()
    count = len(moments)
    return LatencyRun(
        delays(moments, "commit", arrivals),
        delays(moments, "commit", arrivals, until="received"),
        server_cpu_ms=1000 * server_cpu / count,
        subscribers_cpu_ms=1000 * subscribers_cpu / count,
    )


def latency_runs(bench: Bench, streams: int) -> list[LatencyRun]:
    print(f"\n(1) latency from COMMIT to every stream, {streams:,} streams of one shopper")
    runs = []
    for run in range(1, bench.settings.runs + 1):
        measured = undisturbed(lambda: measure_latency(bench, streams), bench.settings.patient)
        runs.append(measured)
        print(f"  run {run}: parsed: {measured.delays.summary()}")
        print(f"    reached the sockets: {measured.reached.summary()}")
        print(f"    CPU per top-up: server worker {measured.server_cpu_ms:.1f} ms, "
              f"subscribers' process {measured.subscribers_cpu_ms:.1f} ms")  # fmt: skip
    print(f"  median: p50 {median(runs, lambda r: r.delays.p50):.1f} ms, "
          f"p99 {median(runs, lambda r: r.delays.p99):.1f} ms; to the last stream "
          f"p99 {median(runs, lambda r: r.delays.last_p99):.1f} ms")  # fmt: skip
    return runs


def median(runs: list, pick: Callable) -> float:
    return statistics.median(pick(run) for run in runs)


# --------------------------------------------------------------------------------------------
# (2) sales per second, events on and off


@dataclass(frozen=True)
class SalesPlan:
    """What one sale worker does: a till selling to its own shoppers."""

    url: str
    number: int
    till: Till
    shoppers: tuple[Shopper, ...]
    events: bool
    warmup_s: float
    duration_s: float


@dataclass(frozen=True)
class Ready:
    worker: int
    pid: int


@dataclass(frozen=True)
class Done:
    worker: int
    sales: int
    #: What this process's engine sent inside the window, its event hub's thread included.
    statements: int
    transactions: int  # commits and rollbacks
    checkouts: int  # from the pool, each with its pre-ping round trip


class EngineUse:
    """Counts what an engine sends to PostgreSQL, from every thread of the process."""

    def __init__(self, engine: Engine):
        self.statements = self.transactions = self.checkouts = 0
        sa_event.listen(engine, "before_cursor_execute", self._statement)
        sa_event.listen(engine, "commit", self._transaction)
        sa_event.listen(engine, "rollback", self._transaction)
        sa_event.listen(engine.pool, "checkout", self._checkout)

    def _statement(self, *_args) -> None:
        self.statements += 1

    def _transaction(self, *_args) -> None:
        self.transactions += 1

    def _checkout(self, *_args) -> None:
        self.checkouts += 1

    def snapshot(self) -> tuple[int, int, int]:
        return self.statements, self.transactions, self.checkouts


def switch_emit_off() -> None:
    """Events off: ``emit`` writes nothing. The services reach it through app.events.changes,
    which imported the name, so it is replaced there as well as in app.events.outbox."""
    from app.events import changes, outbox

    def emit_nothing(*_args, **_kwargs) -> None:
        return None

    outbox.emit = changes.emit = emit_nothing


def sales_worker(plan: SalesPlan, start_line, may_leave, results) -> None:
    """A sale worker process: fill its shoppers' cards, wait for the others, then sell."""
    from app.events.api import hub as event_hub_of

    app = bench_app(plan.url, events_hub=True)
    if not plan.events:
        switch_emit_off()
    event_hub = None
    use = EngineUse(database(app).engine)
    try:
        with app.app_context():
            # A serving process runs its hub (from its first request on); so does this one, in
            # both modes: "off" differs only in emit.
            event_hub = event_hub_of(app)
            s = session()
            balances = fill_cards(s, plan)
            s.commit()
            results.put(Ready(plan.number, os.getpid()))
            start_line.wait(timeout=SETUP_TIMEOUT_S)
            sold, used = sell_until_time_is_up(s, plan, balances, use)
        results.put(Done(plan.number, sold, *used))
        # Alive until the bench has read this process's CPU time.
        may_leave.wait(timeout=SETUP_TIMEOUT_S)
    except Exception:
        start_line.abort()  # the others must not wait for a worker that will never come
        results.put(Failed(plan.number, traceback.format_exc()))
    finally:
        if event_hub is not None:
            event_hub.stop()
        database(app).engine.dispose()


def fill_cards(s, plan: SalesPlan) -> dict[str, int]:
    """Top every card up to its limit at this till. Returns {card number: balance}."""
    limit = current_app.config["CARD_MAX_BALANCE_MINOR"]
    most = current_app.config["TOPUP_MAX_MINOR"]
    least = current_app.config["TOPUP_MIN_MINOR"]
    store = s.get(Store, plan.till.store_id)
    balances = {}
    for shopper in plan.shoppers:
        for card_id, number in zip(shopper.card_ids, shopper.card_numbers, strict=True):
            card = s.get(Card, card_id)
            balance = cards.card_balance(s, card)
            while limit - balance >= least:
                amount = min(limit - balance, most)
                payments.top_up_at_till(
                    s, card=card, amount=amount, tender="cash", store=store,
                    device_id=plan.till.device_id, principal=plan.till.principal,
                    idempotency_key=uuid.uuid4().hex,
                )  # fmt: skip
                balance += amount
            balances[number] = balance
    return balances


def sell_until_time_is_up(
    s, plan: SalesPlan, balances: dict[str, int], use: EngineUse
) -> tuple[int, tuple[int, ...]]:
    """A latte at a time round the shoppers, paid from the card, one commit per sale. Returns
    the sales committed inside the measured window, and what the engine sent meanwhile."""
    released = time.monotonic()
    count_from = released + plan.warmup_s
    stop_at = count_from + plan.duration_s
    sold = 0
    used_before = None
    for number in itertools.cycle(list(balances)):
        if used_before is None and time.monotonic() >= count_from:
            used_before = use.snapshot()
        if time.monotonic() >= stop_at:
            break
        if balances[number] < LATTE_MINOR:
            if all(balance < LATTE_MINOR for balance in balances.values()):
                raise RuntimeError("the cards ran dry: give each till more shoppers")
            continue
        outcome = sales.make_sale(
            s, settings(), plan.till.principal, presented={"card_number": number},
            lines=[(LATTE_SKU, 1)], tenders=[("card_balance", LATTE_MINOR)],
        )  # fmt: skip
        s.commit()
        balances[number] = outcome.card_balance_after
        if count_from <= time.monotonic() < stop_at:
            sold += 1
    used = tuple(after - before for after, before in zip(use.snapshot(), used_before, strict=True))
    return sold, used


@dataclass(frozen=True)
class SalesRun:
    per_second: float
    #: Percent of one core over the measured window, by who used it.
    cpu: dict[str, float]
    #: Per sale, from the sale workers' engines (their hubs included): statements,
    #: transactions (commits and rollbacks) and pool checkouts (each a pre-ping).
    per_sale: tuple[float, float, float]
    #: Events on: events written in the run; seconds after the window until all were
    #: sequenced; events the open streams received, of those they should have.
    events_written: int = 0
    drained_s: float = 0.0
    delivered: int = 0
    deliverable: int = 0


def measure_sales(
    bench: Bench, server: Server, subscribers: Subscribers, streamed: list[int], *, events: bool
) -> SalesRun:
    settings = bench.settings
    plans = [
        SalesPlan(
            url=bench.url,
            number=n,
            till=till,
            shoppers=tuple(bench.fixtures.sale_shoppers[n]),
            events=events,
            warmup_s=settings.sales_warmup_s,
            duration_s=settings.sales_duration_s,
        )  # fmt: skip
        for n, till in enumerate(bench.fixtures.sale_tills)
    ]
    context = multiprocessing.get_context("spawn")  # no inherited connections or locks
    start_line = context.Barrier(len(plans) + 1)
    may_leave = context.Event()
    results = context.Queue()
    workers = [
        context.Process(target=sales_worker, args=(plan, start_line, may_leave, results))
        for plan in plans
    ]
    start = newest_position(bench.engine)
    first_event_id = newest_event_id(bench.engine)
    subscribers.reset()
    for worker in workers:
        worker.start()
    try:
        ready = collect(results, Ready, len(plans))
        wait_until_sequenced(bench.engine)  # the top-ups that filled the cards
        wait_for_quiet_machine()
        try:
            start_line.wait(timeout=SETUP_TIMEOUT_S)
        except threading.BrokenBarrierError:
            raise WorkerFailed(first_failure(results)) from None
        window_start = time.monotonic() + settings.sales_warmup_s
        worker_pids = [r.pid for r in ready]
        cpu = observe_cpu(
            {
                "sale workers": lambda: sum(cpu_seconds(pid) for pid in worker_pids),
                "server": server.cpu_seconds,
                "subscribers": subscribers.cpu_seconds,
                "PostgreSQL": lambda: sum(cpu_seconds(pid) for pid in postgres_pids()),
                "machine": machine_busy_seconds,
            },
            start=window_start,
            end=window_start + settings.sales_duration_s,
        )
        done = collect(results, Done, len(plans))
        if events:  # before the workers go: how long the sequencer took to catch up
            wait_until_sequenced(bench.engine)
            drained_s = max(0.0, time.monotonic() - (window_start + settings.sales_duration_s))
    finally:
        may_leave.set()
        stop_workers(workers, results)
    sold = sum(d.sales for d in done)
    per_second = sold / settings.sales_duration_s
    per_sale = tuple(
        sum(getattr(d, name) for d in done) / sold
        for name in ("statements", "transactions", "checkouts")
    )
    if not events:
        return SalesRun(per_second, cpu, per_sale)
    deliverable = deliverable_events(bench.engine, start, streamed)
    delivered = wait_for_deliveries(subscribers, deliverable)
    return SalesRun(
        per_second, cpu, per_sale, events_written=count_events_after(bench.engine, first_event_id),
        drained_s=drained_s, delivered=delivered, deliverable=deliverable,
    )  # fmt: skip


def sales_runs(bench: Bench) -> dict[bool, list[SalesRun]]:
    settings = bench.settings
    # One stream each for 100 of the sale shoppers, spread over the tills.
    by_turn = [s for turn in zip(*bench.fixtures.sale_shoppers, strict=True) for s in turn]
    streamed = by_turn[: settings.sales_streams]
    print(f"\n(2) sales/second, {SALE_WORKERS} workers through make_sale, "
          f"{len(streamed)} streams open, events on and off")  # fmt: skip
    runs: dict[bool, list[SalesRun]] = {True: [], False: []}
    with Server(bench.url, bench.log_dir) as server, Subscribers() as subscribers:
        subscribers.open(server.port, [s.token for s in streamed], len(streamed))
        wait_for_sequencer(bench.engine, server)  # the server's hub sequences, no worker's
        for run in range(1, settings.runs + 1):
            for events in (True, False):  # alternated, so that drift hits both alike
                measured = undisturbed(
                    lambda events=events: measure_sales(
                        bench, server, subscribers, [s.customer_id for s in streamed], events=events
                    ),
                    settings.patient,
                )
                runs[events].append(measured)
                print(f"  run {run}, events {'on' if events else 'off'}: "
                      f"{measured.per_second:,.0f} sales/s")  # fmt: skip
                print(f"    CPU: {cpu_summary(measured.cpu)}")
                print(
                    "    per sale, from the workers' engines: {:.1f} statements, {:.1f} "
                    "transactions, {:.1f} pool checkouts".format(*measured.per_sale)
                )
                if events:
                    print(f"    {measured.events_written:,} events written, all sequenced "
                          f"{measured.drained_s:.2f} s after the window; the streams received "
                          f"{measured.delivered:,} of their {measured.deliverable:,}")  # fmt: skip
    on = median(runs[True], lambda r: r.per_second)
    off = median(runs[False], lambda r: r.per_second)
    print(f"  median: on {on:,.0f}/s, off {off:,.0f}/s: on is {on / off:.0%} of off")
    return runs


def cpu_summary(cpu: dict[str, float]) -> str:
    return ", ".join(f"{name} {share:.0f}%" for name, share in cpu.items()) + (
        f" (of {100 * (os.cpu_count() or 1)}%)"
    )


def observe_cpu(readers: dict[str, Callable[[], float]], *, start: float, end: float):
    """Percent of one core each reader's processes used between ``start`` and ``end``."""
    sleep_until(start)
    began = time.monotonic()
    before = {name: read() for name, read in readers.items()}
    sleep_until(end)
    after = {name: read() for name, read in readers.items()}
    elapsed = time.monotonic() - began
    return {name: 100 * (after[name] - before[name]) / elapsed for name in readers}


def sleep_until(moment: float) -> None:
    time.sleep(max(0.0, moment - time.monotonic()))


def newest_event_id(engine: Engine) -> int:
    """The newest position in the log (what is still in the outbox comes after it)."""
    with engine.connect() as c:
        return c.scalar(select(func.coalesce(func.max(Event.position), 0)))


def count_events_after(engine: Engine, event_id: int) -> int:
    wait_until_sequenced(engine)
    with engine.connect() as c:
        return c.scalar(select(func.count()).where(Event.position > event_id))


def wait_until_sequenced(engine: Engine, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with engine.connect() as c:
            if not c.scalar(select(func.count()).select_from(OutboxEntry)):
                return
        time.sleep(0.02)
    raise RuntimeError(f"events still unsequenced after {timeout_s:.0f} s")


def deliverable_events(engine: Engine, after: int, customer_ids: list[int]) -> int:
    """Events after ``after`` that the streamed shoppers may see (one stream each)."""
    with engine.connect() as c:
        return c.scalar(
            select(func.count()).where(
                Event.position > after,
                Event.customer_id.in_(customer_ids),
                Event.type != "card.presented",  # only the till it was presented to
            )
        )


def wait_for_deliveries(subscribers: Subscribers, expected: int, timeout_s: float = 30.0) -> int:
    deadline = time.monotonic() + timeout_s
    while (received := subscribers.count()[0]) < expected and time.monotonic() < deadline:
        time.sleep(0.1)
    return received


# --------------------------------------------------------------------------------------------
# (3) capacity: 10,000 streams on one gunicorn worker


@dataclass(frozen=True)
class Capacity:
    streams: int
    opening_s: float
    memory_before_kib: dict[str, int]  # the worker with its hub running and one stream
    memory_open_kib: dict[str, int]  # with every stream open
    memory_after_kib: dict[str, int]  # after the fan-out
    events_per_stream: int  # what every stream should have received
    complete_streams: int  # streams that received exactly those events, in order
    lost_streams: int
    fan_out: Delays  # until parsed (t1)
    reached: Delays  # until the bytes reached the streams' sockets
    server_cpu_ms: float  # per top-up

    @property
    def kib_per_stream(self) -> float:
        grown = self.memory_open_kib["VmRSS"] - self.memory_before_kib["VmRSS"]
        return grown / (self.streams - 1)

    @property
    def every_event_everywhere(self) -> bool:
        return self.complete_streams == self.streams and self.lost_streams == 0


def measure_capacity(bench: Bench) -> Capacity:
    streams = bench.settings.capacity_streams
    watched = "capacity"
    shopper = bench.fixtures.watched[watched]
    print(f"\n(3) capacity: {streams:,} streams on one gunicorn worker")
    with Server(bench.url, bench.log_dir) as server, Subscribers() as subscribers:
        subscribers.open(server.port, [shopper.token], 1)  # starts the worker's hub
        wait_for_sequencer(bench.engine, server)
        memory_before = server.memory_kib()
        opened = subscribers.open(server.port, [shopper.token], streams - 1)
        memory_open = server.memory_kib()
        print(f"  {streams:,} streams open ({opened.seconds:.1f} s to open); worker RSS "
              f"{memory_before['VmRSS'] / 1024:,.0f} MiB with one stream, "
              f"{memory_open['VmRSS'] / 1024:,.0f} MiB with all")  # fmt: skip
        subscribers.announce_at(streams)
        subscribers.reset()
        start = newest_position(bench.engine)
        wait_for_quiet_machine()
        server_cpu = server.cpu_seconds()

        def commit() -> tuple[int, dict[str, Moment]]:
            top_up_id, committed_at = bench.top_ups.commit(watched)
            return top_up_id, {"commit": committed_at}

        moments = timed_top_ups(subscribers, bench.settings.capacity_top_ups, commit,
                                CAPACITY_PAUSE_S)  # fmt: skip
        server_cpu = server.cpu_seconds() - server_cpu  # the pauses cost it next to nothing
        arrivals = subscribers.arrivals()
        positions, lost = subscribers.positions()
        memory_after = server.memory_kib()
    expected = expected_positions(bench.engine, start, shopper.customer_id)
    capacity = Capacity(
        streams=streams, opening_s=opened.seconds, memory_before_kib=memory_before,
        memory_open_kib=memory_open, memory_after_kib=memory_after,
        events_per_stream=len(expected),
        complete_streams=sum(1 for got in positions if got == expected), lost_streams=lost,
        fan_out=delays(moments, "commit", arrivals),
        reached=delays(moments, "commit", arrivals, until="received"),
        server_cpu_ms=1000 * server_cpu / len(moments),
    )  # fmt: skip
    parsed, reached = capacity.fan_out, capacity.reached
    for n in range(len(parsed.last_ms)):
        print(f"  top-up {n + 1}: parsed by the first stream {parsed.first_ms[n]:.1f} ms, by "
              f"the last of {streams:,} {parsed.last_ms[n]:.1f} ms after COMMIT (reached the "
              f"first socket {reached.first_ms[n]:.1f} ms, the last "
              f"{reached.last_ms[n]:.1f} ms)")  # fmt: skip
    print(f"  every stream received every event ({capacity.events_per_stream} each): "
          f"{capacity.complete_streams:,} of {streams:,} streams; {lost} lost; "
          f"worker CPU {capacity.server_cpu_ms:.0f} ms per top-up; RSS after "
          f"{memory_after['VmRSS'] / 1024:,.0f} MiB, {capacity.kib_per_stream:.1f} KiB "
          "per stream")  # fmt: skip
    return capacity


def expected_positions(engine: Engine, after: int, customer_id: int) -> list[int]:
    with engine.connect() as c:
        return list(
            c.scalars(
                select(Event.position)
                .where(Event.position > after, Event.customer_id == customer_id,
                       Event.type != "card.presented")
                .order_by(Event.position)
            )
        )  # fmt: skip


# --------------------------------------------------------------------------------------------
# (4) two app processes: two gunicorn servers


#: (committed through, streams on): what each path measures.
CROSS_PATHS = {
    "sequencer_to_other": (
        "committed through the sequencing server, streams on the other",
        "the first server's hub is poked in memory, sequences, sends NOTIFY omnicard_events; "
        "the second's LISTEN wakes its hub, which reads the events and fans out",
    ),
    "other_to_sequencer": (
        "committed through the other server, streams on the sequencing one",
        "the second server's hub sends NOTIFY omnicard_outbox; the first's LISTEN wakes its "
        "hub, which sequences and fans out",
    ),
    "sequencer_itself": (
        "committed through the sequencing server, streams on it (for comparison)",
        "all in one process",
    ),
    "other_itself": (
        "committed through the other server, streams on it (for comparison)",
        "NOTIFY omnicard_outbox to the first, which sequences and NOTIFYs omnicard_events back",
    ),
}


@dataclass(frozen=True)
class CrossRun:
    #: Per path: delays from the 201's arrival, and from the request's sending.
    from_answer: dict[str, Delays]
    from_request: dict[str, Delays]
    reached_from_answer: dict[str, Delays]  # until the bytes reached the sockets
    request_ms_p50: float  # the top-up request's round trip


def measure_cross(bench: Bench) -> CrossRun:
    watched = "cross"
    shopper = bench.fixtures.watched[watched]
    till = bench.fixtures.top_up_till
    streams = bench.settings.cross_streams

    def through(server: Server) -> Commit:
        def commit() -> tuple[int, dict[str, Moment]]:
            top_up_id, sent_at, answered_at = top_up_over_http(
                server.port, till, bench.fixtures.next_card(watched)
            )
            return top_up_id, {"sent": sent_at, "answered": answered_at}

        return commit

    with Server(bench.url, bench.log_dir) as first:
        # The first server's hub starts with its first committed event and, alone, takes the
        # sequencer's lock; the second's hub, started later, does not get it.
        through(first)()
        wait_for_sequencer(bench.engine, first)
        with Server(bench.url, bench.log_dir) as second, Subscribers() as subscribers:
            on_first = subscribers.open(first.port, [shopper.token], streams).numbers
            on_second = subscribers.open(second.port, [shopper.token], streams).numbers
            subscribers.announce_at(2 * streams)
            for server in (first, second):
                timed_top_ups(subscribers, WARMUP_TOP_UPS, through(server), PAUSE_S)
            subscribers.reset()
            wait_for_quiet_machine()
            count = bench.settings.top_ups
            via_first = timed_top_ups(subscribers, count, through(first), PAUSE_S)
            via_second = timed_top_ups(subscribers, count, through(second), PAUSE_S)
            arrivals = subscribers.arrivals()
    paths = {
        "sequencer_to_other": (via_first, on_second),
        "other_to_sequencer": (via_second, on_first),
        "sequencer_itself": (via_first, on_first),
        "other_itself": (via_second, on_second),
    }
    round_trips = [(m["answered"].monotonic - m["sent"].monotonic) * 1000
                   for m in [*via_first.values(), *via_second.values()]]  # fmt: skip
    return CrossRun(
        from_answer={k: delays(m, "answered", arrivals, on) for k, (m, on) in paths.items()},
        from_request={k: delays(m, "sent", arrivals, on) for k, (m, on) in paths.items()},
        reached_from_answer={
            k: delays(m, "answered", arrivals, on, until="received") for k, (m, on) in paths.items()
        },
        request_ms_p50=percentile(round_trips, 0.5),
    )


def cross_runs(bench: Bench) -> list[CrossRun]:
    streams = bench.settings.cross_streams
    print(f"\n(4) two gunicorn servers (one worker each), {streams} streams on each; top-ups "
          "through their HTTP API")  # fmt: skip
    runs = []
    for run in range(1, bench.settings.runs + 1):
        measured = undisturbed(lambda: measure_cross(bench), bench.settings.patient)
        runs.append(measured)
        print(f"  run {run} (from the 201; the request's round trip p50 "
              f"{measured.request_ms_p50:.1f} ms):")  # fmt: skip
        for key, (title, _how) in CROSS_PATHS.items():
            print(f"    {title}: {measured.from_answer[key].summary()}")
            print(f"      reached the sockets: {measured.reached_from_answer[key].summary()}")
    return runs


# --------------------------------------------------------------------------------------------
# (5) one server of several workers


@dataclass(frozen=True)
class WorkersRun:
    from_answer: Delays  # t0: the top-up's 201
    from_request: Delays  # t0: the request's sending
    reached_from_answer: Delays  # until the bytes reached the sockets
    #: From the 201, by the worker that took the top-up: "sequencer", "worker 2", ...
    by_worker: dict[str, Delays]


def measure_workers(bench: Bench, workers: int, streams: int) -> WorkersRun:
    watched = f"workers_{workers}_{streams}"
    shopper = bench.fixtures.watched[watched]
    till = bench.fixtures.top_up_till
    keys: dict[int, str] = {}  # top-up id: its idempotency key

    def commit() -> tuple[int, dict[str, Moment]]:
        key = uuid.uuid4().hex
        top_up_id, sent_at, answered_at = top_up_over_http(
            server.port, till, bench.fixtures.next_card(watched), key
        )
        keys[top_up_id] = key
        return top_up_id, {"sent": sent_at, "answered": answered_at}

    with (
        Server(bench.url, bench.log_dir, workers, access_log=True) as server,
        Subscribers() as subscribers,
    ):
        # Each stream on a connection of its own: the kernel spreads them over the workers.
        subscribers.open(server.port, [shopper.token], streams)
        sequencer = wait_for_sequencer(bench.engine, server)
        subscribers.announce_at(streams)
        timed_top_ups(subscribers, WARMUP_TOP_UPS, commit, PAUSE_S)
        subscribers.reset()
        wait_for_quiet_machine()
        moments = timed_top_ups(subscribers, bench.settings.top_ups, commit, PAUSE_S)
        arrivals = subscribers.arrivals()
        took = server.worker_of({keys[top_up_id] for top_up_id in moments})
        others = sorted(set(server.worker_pids()) - {sequencer})
    names = {sequencer: "sequencer", **{pid: f"worker {n}" for n, pid in enumerate(others, 2)}}
    by_worker: dict[str, dict[int, dict[str, Moment]]] = defaultdict(dict)
    for top_up_id, when in moments.items():
        by_worker[names[took[keys[top_up_id]]]][top_up_id] = when
    return WorkersRun(
        from_answer=delays(moments, "answered", arrivals),
        from_request=delays(moments, "sent", arrivals),
        reached_from_answer=delays(moments, "answered", arrivals, until="received"),
        by_worker={
            name: delays(by_worker[name], "answered", arrivals)
            for name in sorted(by_worker, key=lambda n: (n != "sequencer", n))
        },
    )


def workers_runs(bench: Bench) -> dict[tuple[int, int], list[WorkersRun]]:
    found = {}
    for workers in WORKER_COUNTS:
        for streams in bench.settings.subscriber_counts:
            print(f"\n(5) one server of {workers} workers, {streams:,} streams of one shopper; "
                  "top-ups through its HTTP API")  # fmt: skip
            runs = found[workers, streams] = []
            for run in range(1, bench.settings.runs + 1):
                measured = undisturbed(
                    lambda w=workers, n=streams: measure_workers(bench, w, n),
                    bench.settings.patient,
                )
                runs.append(measured)
                print(f"  run {run} (from the 201): {measured.from_answer.summary()}")
                print(f"    from the request: {measured.from_request.summary()}")
                for name, by in measured.by_worker.items():
                    print(f"    taken by the {name} ({len(by.last_ms)} top-ups): {by.summary()}")
    return found


# --------------------------------------------------------------------------------------------
# The whole run


#: The measurements, in the order they run; ``--only`` picks some.
PARTS = ("latency", "capacity", "sales", "cross", "workers")


@dataclass
class Results:
    """What was measured; a part left out with ``--only`` stays empty."""

    latency: dict[int, list[LatencyRun]] = field(default_factory=dict)
    capacity: Capacity | None = None
    sales: dict[bool, list[SalesRun]] = field(default_factory=dict)
    #: Part (2) again, on and off alternating every slice of one run: the verdict.
    interleaved: Any = None  # bench.sales_interleaved.Interleaved
    cross: list[CrossRun] = field(default_factory=list)
    #: By (workers, streams).
    workers: dict[tuple[int, int], list[WorkersRun]] = field(default_factory=dict)

    def sales_per_second(self, events: bool) -> float:
        return median(self.sales[events], lambda r: r.per_second)

    @property
    def sales_ratio(self) -> float:
        return self.sales_per_second(True) / self.sales_per_second(False)


@dataclass(frozen=True)
class Verdict:
    title: str
    required: str
    measured: str
    met: bool


def verdicts(results: Results) -> list[Verdict]:
    found = []
    for streams, most_ms in ((100, 10.0), (1_000, 50.0)):
        if streams in results.latency:
            runs = results.latency[streams]
            p99 = median(runs, lambda r: r.delays.last_p99)
            found.append(Verdict(
                f"(1) latency p99, COMMIT to the last of {streams:,} streams",
                f"≤ {most_ms:.0f} ms", f"{p99:.1f} ms", p99 <= most_ms,
            ))  # fmt: skip
    for (workers, streams), runs in results.workers.items():
        most_ms = {100: 10.0, 1_000: 50.0}.get(streams)
        if most_ms is not None:
            p99 = median(runs, lambda r: r.from_answer.last_p99)
            found.append(Verdict(
                f"(5) latency p99, the top-up's 201 to the last of {streams:,} streams, one "
                f"server of {workers} workers", f"≤ {most_ms:.0f} ms", f"{p99:.1f} ms",
                p99 <= most_ms,
            ))  # fmt: skip
    if (interleaved := results.interleaved) is not None:
        found.append(Verdict(
            "(2) sales/s with events on, as a share of off (interleaved)", "≥ 90%",
            f"{interleaved.ratio:.1%}", interleaved.ratio >= 0.90,
        ))  # fmt: skip
    if (capacity := results.capacity) is not None:
        found.append(Verdict(
            "(3) streams open on one gunicorn worker, each receiving every event", "≥ 10,000",
            f"{capacity.complete_streams:,} of {capacity.streams:,} complete",
            capacity.streams >= 10_000 and capacity.every_event_everywhere,
        ))  # fmt: skip
    return found


def run_everything(
    admin: Engine, settings: Settings, log_dir: Path, parts: tuple[str, ...] = PARTS
) -> Results:
    url = create_fresh_database(admin, BENCH_DATABASE)
    migrate(url)
    app = bench_app(url, events_hub=False)
    started = time.monotonic()
    fixtures = set_up(app, settings)
    print(f"set-up: {len(fixtures.sale_tills) + 1} stores with a till and a signed-in cashier, "
          f"{sum(len(s) for s in fixtures.sale_shoppers) + len(fixtures.watched)} shoppers, "
          f"through the services ({time.monotonic() - started:.1f} s)")  # fmt: skip
    engine = make_engine(url, poolclass=NullPool)
    top_ups = TopUpsHere(app, url, fixtures)
    bench = Bench(url, engine, app, fixtures, top_ups, settings, log_dir)
    results = Results()
    try:
        if "latency" in parts:
            results.latency = {n: latency_runs(bench, n) for n in settings.subscriber_counts}
        if "capacity" in parts:
            results.capacity = undisturbed(lambda: measure_capacity(bench), settings.patient)
        if "sales" in parts:
            results.sales = sales_runs(bench)
            results.interleaved = interleaved_run(settings)
        if "cross" in parts:
            results.cross = cross_runs(bench)
        if "workers" in parts:
            results.workers = workers_runs(bench)
        print()
        verify_ledger(url)
    finally:
        top_ups.close()
        engine.dispose()
        database(app).engine.dispose()
    return results


def interleaved_run(settings: Settings):
    """Part (2) with the machine's drift cancelled: ``bench.sales_interleaved``."""
    from bench import sales_interleaved

    print(f"\n(2) interleaved: events on and off in alternating slices of "
          f"{settings.interleaved_slice_s:g} s, {settings.interleaved_slices} slices")  # fmt: skip
    measured = sales_interleaved.measure(settings.interleaved_slices, settings.interleaved_slice_s)
    for line in measured.report():
        print(f"  {line}")
    return measured


def print_summary(results: Results) -> None:
    print("\nsummary:")
    for streams, runs in results.latency.items():
        print(f"  (1) {streams:>6,} streams: every stream p50 "
              f"{median(runs, lambda r: r.delays.p50):.1f} ms, p99 "
              f"{median(runs, lambda r: r.delays.p99):.1f} ms; to the last stream p50 "
              f"{median(runs, lambda r: r.delays.last_p50):.1f} ms, p99 "
              f"{median(runs, lambda r: r.delays.last_p99):.1f} ms")  # fmt: skip
    if results.sales:
        print(f"  (2) sales/s: events on {results.sales_per_second(True):,.0f}, off "
              f"{results.sales_per_second(False):,.0f}: {results.sales_ratio:.0%}")  # fmt: skip
    if (interleaved := results.interleaved) is not None:
        print(f"  (2) interleaved: on is {interleaved.ratio:.1%} of off")
    if (c := results.capacity) is not None:
        print(f"  (3) {c.streams:,} streams: {c.complete_streams:,} received every event; "
              f"worker RSS {c.memory_open_kib['VmRSS'] / 1024:,.0f} MiB ({c.kib_per_stream:.1f} "
              f"KiB per stream); fan-out to the last stream max "
              f"{max(c.fan_out.last_ms):.0f} ms")  # fmt: skip
    for key, (title, _how) in CROSS_PATHS.items() if results.cross else ():
        p50 = median(results.cross, lambda r, k=key: r.from_answer[k].p50)
        p99 = median(results.cross, lambda r, k=key: r.from_answer[k].p99)
        print(f"  (4) {title}: p50 {p50:.1f} ms, p99 {p99:.1f} ms")
    for (workers, streams), runs in results.workers.items():
        p50 = median(runs, lambda r: r.from_answer.p50)
        p99 = median(runs, lambda r: r.from_answer.last_p99)
        print(f"  (5) {workers} workers, {streams:,} streams: from the 201 p50 {p50:.1f} ms, "
              f"to the last stream p99 {p99:.1f} ms")  # fmt: skip
    print("targets:")
    for verdict in verdicts(results):
        print(f"  {verdict.title}: {verdict.measured} (required {verdict.required}) "
              f"{'met' if verdict.met else 'MISSED'}")  # fmt: skip


# --------------------------------------------------------------------------------------------
# docs/benchmarks.md: this bench writes the part after OTHERS_BEGIN, the ledger bench the rest

ANALYSIS_BEGIN = (
    "<!-- real-time analysis:begin (kept when bench/realtime.py rewrites this part) -->"
)
ANALYSIS_END = "<!-- real-time analysis:end -->"
ANALYSIS_PLACEHOLDER = (
    "_To be completed: for every target missed above, what limits it and what would fix it._"
)


def write_doc(path: Path, results: Results, machine: dict[str, str], settings: Settings) -> None:
    old = path.read_text() if path.exists() else ""
    ledger_part, _, old_part = old.partition(OTHERS_BEGIN)
    # What follows this part's analysis belongs to other benchmarks (kiosk suggestions, HTTP):
    # kept as it is.
    others_after = old_part.partition(ANALYSIS_END)[2].strip("\n")
    lines = [
        "# Real-time benchmarks",
        "",
        f"Written by `bench/realtime.py` on {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, at commit "
        f"`{git_commit()}`. Running the bench again rewrites this part of the file, except the "
        "analysis between its markers.",
        "",
        *command_and_machine("bench.realtime", machine),
        *method_section(settings),
        *latency_section(results),
        *sales_section(results),
        *capacity_section(results),
        *cross_section(results),
        *workers_section(results),
        "## Targets",
        "",
        "| Target | Required | Measured | Verdict |",
        "|---|---:|---:|---|",
        *[
            f"| {v.title} | {v.required} | {v.measured} | {'met' if v.met else '**missed**'} |"
            for v in verdicts(results)
        ],  # fmt: skip
        "",
        "## Analysis",
        "",
        ANALYSIS_BEGIN,
        kept_analysis(old_part),
        ANALYSIS_END,
        "",
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    head = ledger_part.rstrip("\n") + "\n\n" if ledger_part.strip() else ""
    tail = "\n" + others_after + "\n" if others_after else ""
    path.write_text(head + OTHERS_BEGIN + "\n" + "\n".join(lines) + tail)
    print(f"\nwrote {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")


def method_section(settings: Settings) -> list[str]:
    return [
        "## What is measured",
        "",
        "A fresh database, made by the Alembic migrations; its data (stores, tills with a "
        "signed-in cashier, a product, shoppers and their cards) made through the services. "
        "The server is the production one, `gunicorn -c gunicorn.conf.py wsgi:app` (gevent "
        f"workers), with `WEB_CONCURRENCY={SERVER_WORKERS}` (one worker process per server), "
        "`OMNICARD_BIND` a free port of 127.0.0.1, `DATABASE_URL` the bench database, and "
        f"every other setting at its default (heartbeat every {HEARTBEAT_S} s). The streams are "
        "`GET /v1/events` over HTTP/1.1 (chunked), held by one separate process (asyncio, a "
        "socket per stream). Every measurement starts its own server(s). Times are "
        "`time.monotonic()` (CLOCK_MONOTONIC) of this one machine, shared by all its processes.",
        "",
        "**(1) Latency.** Streams: that many `GET /v1/events` of one shopper (the same token). "
        "Each top-up is committed from the bench process: `payments.top_up_at_till` "
        f"({TOP_UP_MINOR} cents, cash) on one of the shopper's cards, in an app whose event hub "
        "is off. **t0** is taken as soon as `session.commit()` returns. The bench then wakes the "
        "cluster as a process that does not sequence does, `SELECT "
        "pg_notify('omnicard_outbox', '')` on its own autocommit connection (that round trip is "
        "inside the interval). The server's hub, which holds the sequencer's lock, wakes on "
        "LISTEN, numbers the events, sends its NOTIFY, reads the new events and hands them to "
        "the streams. **t1** is when a stream, in the subscribers' process, has parsed the "
        "top-up's `top_up.settled` event: the second of the two events a top-up writes "
        "(`card.balance_changed` comes first, in the same batch). Each top-up is committed "
        "only after the one before has reached every stream, and a random pause of "
        f"{PAUSE_S[0] * 1000:.0f}–{PAUSE_S[1] * 1000:.0f} ms, so they never pile up; "
        f"{WARMUP_TOP_UPS} warm-up top-ups are not counted; {settings.top_ups} are, per run. "
        "*Every stream*: percentiles over every (top-up, stream) pair. *To the last stream*: "
        "percentiles over the top-ups of t1 of the last stream to have it, i.e. the arrival "
        "at every subscriber; the targets are judged on this one.",
        "",
        f"**(2) Sales/second.** {SALE_WORKERS} worker processes, each an app process "
        "(`create_app`, production settings, its own event hub running, as a serving process "
        "runs it from its first request) selling through `app.sales.services.make_sale` in an "
        "app context as its own till (a store, a POS device and a cashier Principal each) to "
        f"its own {SHOPPERS_PER_TILL} shoppers, a {LATTE_MINOR}-cent latte paid from the card "
        "balance, presented by card number, one commit per sale (a sale writes 4 events). "
        "Before each run every card is topped up to its limit. Meanwhile the gunicorn server "
        f"holds the sequencer's lock and {settings.sales_streams} streams are open, one for "
        "each of "
        f"{settings.sales_streams} of the {SALE_WORKERS * SHOPPERS_PER_TILL} shoppers. "
        "Sales are counted over "
        f"{settings.sales_duration_s:g} s after a {settings.sales_warmup_s:g} s warm-up. *Off* "
        "is the same run with `app.events.outbox.emit` (and the name `app.events.changes` "
        "imported, through which the services call it) replaced by a no-op in the workers. On "
        "and off runs alternate. After each *on* run the bench checks that every event was "
        "sequenced and that each stream received every event its shopper may see. The "
        "verdict is taken on one more run, `bench/sales_interleaved.py`, on a database of its "
        "own: the same workers switch `emit` on and off together every "
        f"{settings.interleaved_slice_s:g} s for {settings.interleaved_slices} slices (on, off, "
        "off, on, ..., after a warm-up second), so that the machine's drift hits both alike; "
        "the figure is the sales of the *on* slices over those of the *off* slices.",
        "",
        f"**(3) Capacity.** {settings.capacity_streams:,} streams of one shopper on one "
        f"gunicorn worker; {settings.capacity_top_ups} top-ups committed as in (1), "
        f"{CAPACITY_PAUSE_S:g} s apart after each has reached every stream. Every stream must "
        "have received exactly the shopper's events written since (positions compared with "
        "the database). Memory is the worker's VmRSS from /proc; fan-out is t0 to the first and "
        "to the last stream's t1, as in (1).",
        "",
        f"**(4) Two app processes.** Two gunicorn servers of one worker each on the bench "
        f"database; the first's hub takes the sequencer's lock before the second starts. "
        f"{settings.cross_streams} streams of one shopper on each. Top-ups go through the "
        "servers' own API (`POST /v1/cards/{id}/top-ups` with a cashier's token): "
        f"{settings.top_ups} through the first, then {settings.top_ups} through the second, "
        "paced as in (1). The server commits before it answers, so t0 is taken when the 201 "
        "has come back: a little after the COMMIT (the gap is at most the answer's way back, "
        "a fraction of a millisecond); from the moment the request was sent is given too, as "
        "an upper bound.",
        "",
        f"**(5) One server of several workers.** One gunicorn server with `WEB_CONCURRENCY` "
        f"{' and '.join(map(str, WORKER_COUNTS))}; that many streams of one shopper as in (1), "
        "each on its own connection, so that the kernel spreads them over the workers as it "
        "spreads clients. Top-ups through the server's API as in (4), each on a connection of "
        "its own, so that they too land on every worker; gunicorn's access log names the "
        "worker that took each (by its idempotency key), and the bench finds the sequencing "
        "worker from the lock's holder in `pg_locks`. Paced and timed as in (4), from the 201 "
        "(the targets of (1) are judged on it) and from the request's sending.",
        "",
        "Latency and sales figures are medians over the runs "
        f"({settings.runs} of each), each run's own figure listed after it.",
        "",
    ]


def latency_section(results: Results) -> list[str]:
    lines = [
        "## (1) Latency: COMMIT to the streams",
        "",
        "| Streams | Until | Every stream p50 | Every stream p99 | To the last stream p50 | "
        "**To the last stream p99** | Slowest top-up |",
        "|---:|---|---:|---:|---:|---:|---:|",
    ]
    cpu_lines = ["| Streams | Server worker CPU per top-up | Subscribers' CPU per top-up |",
                 "|---:|---:|---:|"]  # fmt: skip
    for streams, runs in results.latency.items():

        def cell(pick: Callable[[LatencyRun], float], runs=runs) -> str:
            each = ", ".join(f"{pick(r):.1f}" for r in runs)
            return f"{median(runs, pick):.1f} ms ({each})"

        for until, of in (("parsed (t1)", lambda r: r.delays), ("reached the sockets",
                                                                lambda r: r.reached)):  # fmt: skip
            lines.append(
                f"| {streams:,} | {until} | {cell(lambda r, of=of: of(r).p50)} "
                f"| {cell(lambda r, of=of: of(r).p99)} | {cell(lambda r, of=of: of(r).last_p50)} "
                f"| {cell(lambda r, of=of: of(r).last_p99)} "
                f"| {cell(lambda r, of=of: max(of(r).last_ms))} |"
            )
        cpu_lines.append(
            f"| {streams:,} | {cell(lambda r: r.server_cpu_ms)} "
            f"| {cell(lambda r: r.subscribers_cpu_ms)} |"
        )
    return [
        *lines,
        "",
        "Medians of the runs, each run's figure in brackets. *Reached the sockets* is the "
        "kernel's receive stamp on the subscribers' sockets (SO_TIMESTAMPNS): what the server "
        "and the network took, without the time the one subscribers' process spends reading "
        "its streams one after another (real subscribers each have their own machine).",
        "",
        "CPU time used per top-up (its two events to every stream), medians of the runs:",
        "",
        *cpu_lines,
        "",
    ]


def sales_section(results: Results) -> list[str]:
    lines = [
        "## (2) Sales per second, events on and off",
        "",
        "| Events | Median sales/s | Runs | CPU over the window (% of one core) "
        "| Per sale: statements, transactions, pool checkouts |",
        "|---|---:|---|---|---|",
    ]
    for events in (True, False):
        runs = results.sales[events]
        middle = min(runs, key=lambda r: abs(r.per_second - results.sales_per_second(events)))
        lines.append(
            f"| {'on' if events else 'off'} | {results.sales_per_second(events):,.0f} | "
            f"{', '.join(f'{r.per_second:,.0f}' for r in runs)} | {cpu_summary(middle.cpu)} "
            "| {:.1f}, {:.1f}, {:.1f} |".format(*middle.per_sale)
        )
    lines += [
        "",
        f"In these runs on is {results.sales_ratio:.0%} of off. CPU is of the median run: the sale "
        "workers, the gunicorn worker (sequencing and fan-out), the subscribers' process, "
        "every PostgreSQL process, and the whole machine. *Per sale* counts what the sale "
        "workers' engines sent inside the window (their event hubs' threads included; not "
        "the hubs' LISTEN connections, nor the server's), divided by the sales: statements, "
        "commits and rollbacks, and pool checkouts (the pool pings the server at each).",
        "",
        "Events on, each run: "
        + "; ".join(
            f"{r.events_written:,} events written, all sequenced {r.drained_s:.2f} s after the "
            f"window, {r.delivered:,} of {r.deliverable:,} delivered to the streams"
            for r in results.sales[True]
        )
        + ".",
        "",
    ]
    if (interleaved := results.interleaved) is not None:
        lines += [
            "The runs above are separate windows seconds apart, and this machine's speed "
            "drifts between them by more than events cost. The verdict is taken on one run "
            "in which the same 8 sale workers switch `emit` on and off together every "
            f"{interleaved.slice_s:g} s (on, off, off, on, ...; `bench/sales_interleaved.py`): "
            f"on is **{interleaved.ratio:.1%}** of off.",
            "",
            "```",
            *interleaved.report(),
            "```",
            "",
        ]
    return lines


def capacity_section(results: Results) -> list[str]:
    c = results.capacity
    mib = lambda kib: f"{kib / 1024:,.0f} MiB"  # noqa: E731
    return [
        "## (3) Capacity: streams on one gunicorn worker",
        "",
        f"- Streams open: **{c.streams:,}** (opened in {c.opening_s:.1f} s, "
        f"{CONNECT_CONCURRENCY} at a time).",
        f"- Every stream received every event: **{c.complete_streams:,} of {c.streams:,}** "
        f"streams received exactly the {c.events_per_stream} events of the "
        f"{len(c.fan_out.last_ms)} top-ups, in order; {c.lost_streams} streams were lost.",
        f"- Worker memory (VmRSS): {mib(c.memory_before_kib['VmRSS'])} with its hub and one "
        f"stream, **{mib(c.memory_open_kib['VmRSS'])}** with all open "
        f"({c.kib_per_stream:.1f} KiB per stream), {mib(c.memory_after_kib['VmRSS'])} after "
        f"the fan-out (peak {mib(c.memory_after_kib['VmHWM'])}).",
        "- Fan-out, COMMIT until the first / the last stream had parsed it, per top-up: "
        + ", ".join(
            f"{first:.0f} / **{last:.0f} ms**"
            for first, last in zip(c.fan_out.first_ms, c.fan_out.last_ms, strict=True)
        )
        + f"; every stream p50 {c.fan_out.p50:.0f} ms. Until the bytes had reached the first "
        "/ the last socket: "
        + ", ".join(
            f"{first:.0f} / {last:.0f} ms"
            for first, last in zip(c.reached.first_ms, c.reached.last_ms, strict=True)
        )
        + ".",
        f"- Worker CPU per top-up (two events to every stream): {c.server_cpu_ms:.0f} ms.",
        "",
    ]


def cross_section(results: Results) -> list[str]:
    lines = [
        "## (4) Two app processes (two gunicorn servers)",
        "",
        "| Path | What happens | From the 201: p50 | p99 | to the last stream p99 | "
        "reached the sockets, to the last p99 | From the request: p50 | p99 |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for key, (title, how) in CROSS_PATHS.items():

        def cell(pick: Callable[[CrossRun], float]) -> str:
            return f"{median(results.cross, pick):.1f} ms"

        lines.append(
            f"| {title} | {how} | {cell(lambda r, k=key: r.from_answer[k].p50)} "
            f"| {cell(lambda r, k=key: r.from_answer[k].p99)} "
            f"| {cell(lambda r, k=key: r.from_answer[k].last_p99)} "
            f"| {cell(lambda r, k=key: r.reached_from_answer[k].last_p99)} "
            f"| {cell(lambda r, k=key: r.from_request[k].p50)} "
            f"| {cell(lambda r, k=key: r.from_request[k].p99)} |"
        )
    round_trip = median(results.cross, lambda r: r.request_ms_p50)
    return [
        *lines,
        "",
        f"The top-up request's own round trip: p50 {round_trip:.1f} ms (median of the runs).",
        "",
    ]


def workers_section(results: Results) -> list[str]:
    lines = [
        "## (5) One server of several workers",
        "",
        "| Workers | Streams | Took the top-up | Top-ups | From the 201: p50 | p99 | to the last "
        "stream p99 | max | From the request: to the last stream p99 |",
        "|---:|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for (workers, streams), runs in results.workers.items():

        def cell(pick: Callable[[WorkersRun], float], runs=runs) -> str:
            return f"{median(runs, pick):.1f} ms"

        lines.append(
            f"| {workers} | {streams:,} | any | {len(runs[0].from_answer.last_ms)} per run "
            f"| {cell(lambda r: r.from_answer.p50)} | {cell(lambda r: r.from_answer.p99)} "
            f"| {cell(lambda r: r.from_answer.last_p99)} "
            f"| {cell(lambda r: max(r.from_answer.last_ms))} "
            f"| {cell(lambda r: r.from_request.last_p99)} |"
        )
        for name in runs[0].by_worker:
            taken = [r.by_worker[name] for r in runs if name in r.by_worker]
            p50 = statistics.median(d.p50 for d in taken)
            p99 = statistics.median(d.p99 for d in taken)
            last = statistics.median(d.last_p99 for d in taken)
            most = statistics.median(max(d.last_ms) for d in taken)
            lines.append(
                f"| | | {name} | {sum(len(d.last_ms) for d in taken)} (all runs) | {p50:.1f} ms "
                f"| {p99:.1f} ms | {last:.1f} ms | {most:.1f} ms | |"
            )
    return [*lines, ""] if results.workers else []


def kept_analysis(old: str) -> str:
    """The hand-written analysis of the part being replaced, if it has one."""
    if ANALYSIS_BEGIN in old and ANALYSIS_END in old:
        return old.split(ANALYSIS_BEGIN, 1)[1].split(ANALYSIS_END, 1)[0].strip("\n")
    return ANALYSIS_PLACEHOLDER


def machine_description(admin: Engine) -> dict[str, str]:
    import gevent
    import gunicorn

    machine = describe_machine(admin)
    machine["Libraries"] += f", gunicorn {gunicorn.__version__}, gevent {gevent.__version__}"
    machine["Client and server"] = (
        "same machine: PostgreSQL, the gunicorn server(s), the subscribers' process, the sale "
        "workers and the bench share the cores"
    )
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    machine["Open files limit"] = f"{soft:,} soft, {hard:,} hard (the server and the "
    machine["Open files limit"] += "subscribers raise theirs to the hard limit)"
    return machine


# --------------------------------------------------------------------------------------------


def parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.realtime", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--quick", action="store_true",
        help="fewer top-ups, streams and seconds, 1 run each: a sanity check, not a figure",
    )  # fmt: skip
    parser.add_argument(
        "--only", choices=PARTS, action="append",
        help="measure only this part (may be repeated); writes no doc",
    )  # fmt: skip
    parser.add_argument(
        "--runs", type=int,
        help="runs of each measurement (default: 3, or 1 with --quick); the figures are medians",
    )  # fmt: skip
    parser.add_argument(
        "--no-wait", action="store_true",
        help="measure even while other benchmarks or test runs share the machine (the figures "
        "then measure them too); a full run waits for them otherwise",
    )  # fmt: skip
    add_doc_option(parser)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    # Stopped with kill (or run in the background, where Ctrl-C does not reach it): unwind as
    # for Ctrl-C, so that the servers and subscribers are stopped and the database dropped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    arguments = parse_arguments(argv)
    settings = QUICK if arguments.quick else FULL
    if arguments.no_wait:
        settings = replace(settings, patient=False)
    if arguments.runs:
        settings = replace(settings, runs=arguments.runs)
    parts = tuple(arguments.only or PARTS)
    doc = arguments.doc or (None if arguments.quick or arguments.only else DEFAULT_DOC)
    raise_open_files_limit()
    if settings.patient:
        wait_for_other_benchmarks()
    else:  # a sanity check runs anyway, but never beside another run of this bench's database
        wait_for_other_benchmarks(only="-m bench.realtime")
        for running in other_benchmarks_running():
            print(f"warning: another benchmark is running: {running[:80]}")
    admin = admin_engine(os.environ.get(ADMIN_URL_ENV, DEFAULT_ADMIN_URL))
    machine = machine_description(admin)
    for name, value in machine.items():
        print(f"{name}: {value}")
    log_dir = Path(tempfile.mkdtemp(prefix="omnicard-bench-realtime-"))
    print(f"server logs: {log_dir}")
    try:
        results = run_everything(admin, settings, log_dir, parts)
    finally:
        drop_database(admin, BENCH_DATABASE)
        admin.dispose()
    print_summary(results)
    if doc is not None and parts == PARTS:
        write_doc(doc.resolve(), results, machine, settings)


if __name__ == "__main__":
    main()

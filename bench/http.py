"""A sale through the API, measured against pgbench: the production server driven by wrk.

Run by hand from the repository root (it is not part of the test suite)::

    .venv/bin/python -m bench.http           # full run, ~10 minutes; writes docs/benchmarks.md
    .venv/bin/python -m bench.http --quick   # sanity check, ~4 minutes; writes no doc
    .venv/bin/python -m bench.http --rounds 5 --slice-s 30   # longer; writes the doc

It needs, from Debian's packages: ``wrk`` (the load generator), ``pgbench`` (postgresql-client)
and ``tcpdump`` (the capture of the sale's traffic to PostgreSQL, run as root or with
CAP_NET_RAW)::

    DEBIAN_FRONTEND=noninteractive apt-get install -y wrk tcpdump postgresql-client

On one PostgreSQL server (``OMNICARD_BENCH_POSTGRES_URL``, a superuser URL; default: the
local ``test`` database), with a fresh database made by the migrations and filled through the
services (4 stores of 8 tills, each with a signed-in cashier; shoppers with funded cards), the
production server as the README runs it, ``gunicorn -c gunicorn.conf.py wsgi:app``
(``WEB_CONCURRENCY=2`` gevent workers, each running its event hub), with 100 event streams
open:

(1) sales: each wrk connection is one till with its cashier's session, sending ``POST
    /v1/sales`` (one latte paid from the card balance, a new ``Idempotency-Key`` each), in
    slices of one run interleaved with pgbench's tpcb-like (8 clients, scale 10, its own
    database): [8 tills][pgbench][32 tills], round after round. Sales/s, the ratio to pgbench,
    latency, CPU per sale by process, transactions per sale (``pg_stat_database``);
(2) the wire: 200 sales at one till on a freshly started server, the loopback traffic to
    PostgreSQL captured with tcpdump and the protocol's messages counted: round trips,
    statements, transactions per sale, by the server's connections (requests, event hub);
(3) a top-up (a shopper, the sandbox gateway), ``GET /v1/me`` and a refund, each in slices
    alternating with ``GET /v1/health`` on the same server: each one's requests/s as a share
    of health's around it.

After each run the ledger is verified (``app.ledger.verify``) and every event committed during
it is checked to have reached every stream that may see it. Any 5xx answer, or any answer
other than the one expected, stops the bench. The databases are dropped at the end.
"""

from __future__ import annotations

import argparse
import http.client
import json
import math
import os
import re
import shutil
import signal
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import make_url, select, text
from sqlalchemy.engine import Engine
from sqlalchemy.pool import NullPool

from app.auth import services as auth
from app.cards import services as cards
from app.cards.models import Card
from app.catalog import services as catalog
from app.core.db import database, make_engine, session
from app.core.settings import settings as app_settings
from app.customers import services as customers
from app.events.models import Event
from app.ledger.models import Account
from app.payments import services as payments
from app.sales.models import Refund, Sale
from app.stores import services as stores
from app.stores.models import Store
from bench import ledger as ledger_bench
from bench import realtime as rt
from bench.ledger import (
    ADMIN_URL_ENV,
    DEFAULT_ADMIN_URL,
    DEFAULT_DOC,
    PGBENCH_CLIENTS,
    PGBENCH_DATABASE,
    PGBENCH_SCALE,
    ROOT,
    add_doc_option,
    admin_engine,
    command_and_machine,
    create_fresh_database,
    drop_database,
    git_commit,
    initialise_pgbench,
    migrate,
    run_pgbench,
    verify_ledger,
)

DATABASE = "omnicard_bench_http"
WRK = "wrk"
TCPDUMP = "tcpdump"
INSTALL_HINT = "DEBIAN_FRONTEND=noninteractive apt-get install -y wrk tcpdump postgresql-client"

#: The server as the README's "Production serving" runs it, with two workers (one per core).
SERVER_WORKERS = 2
STORES = 4
TILLS = 32  # 8 a store
TILL_COUNTS = (8, 32)  # tills selling at once: the 8 first are 2 of each store
LATTE_SKU, LATTE_MINOR = rt.LATTE_SKU, rt.LATTE_MINOR
TOP_UP_MINOR = 500  # the smallest top-up: a card takes 100 of them from empty
CARDS_PER_SHOPPER = 2
#: The streams open during every measurement: what the tills, a back office and shoppers'
#: phones hold. Admin streams follow everything.
ADMIN_STREAMS = 2
SALE_SHOPPER_STREAMS = 33
TOP_UP_SHOPPER_STREAMS = 33  # with the 32 tills': 100
STREAMS = ADMIN_STREAMS + TILLS + SALE_SHOPPER_STREAMS + TOP_UP_SHOPPER_STREAMS
HEALTH_CONNECTIONS = 8  # wrk connections of part (3), 8 tills for the refunds

#: Sizing only: enough funded cards that no till runs dry even at this many sales a second
#: (several times today's rate, and above the target), and enough empty cards for top-ups.
SALES_PER_S_AT_MOST = 1000
TOP_UPS_PER_S_AT_MOST = 600
#: Part (2): sales at one till before the capture's window (caches, prepared statements), and
#: in it.
CAPTURE_WARMUP_SALES = 50
#: After a slice, the server has finished the requests that were on their way once its
#: workers use less than this share of a core (looked at every DRAIN_LOOK_S).
IDLE_WORKERS_CPU = 0.15
DRAIN_LOOK_S = 0.25
DRAIN_TIMEOUT_S = 60.0
#: Seconds of an idle server over which the bench database's background transactions are
#: counted (they are taken off each slice's).
BACKGROUND_S = 10.0


@dataclass(frozen=True)
class Settings:
    rounds: int
    slice_s: int  # a sales or pgbench slice (pgbench takes whole seconds)
    health_slice_s: float  # a slice of part (3)
    warmup_s: float  # sales before the first slice; each kind of part (3) before its own
    capture_sales: int


FULL = Settings(rounds=3, slice_s=20, health_slice_s=10.0, warmup_s=5.0, capture_sales=200)
QUICK = Settings(rounds=2, slice_s=5, health_slice_s=3.0, warmup_s=2.0, capture_sales=60)


# --------------------------------------------------------------------------------------------
# The data: made through the services, in the bench process (not measured)


@dataclass(frozen=True)
class Shopper:
    customer_id: int
    token: str
    cards: tuple[tuple[int, str], ...]  # (card id, number)


@dataclass
class Fixtures:
    tills: list[rt.Till]  # till n is in store n % STORES
    #: The cards each till sells to, funded to the limit; no two tills share a card.
    sale_cards: list[list[str]]
    sale_shoppers: list[Shopper]
    top_up_shoppers: list[Shopper]  # their cards start empty
    admin_token: str


def cards_for_sales(settings: Settings, till: int, card_limit: int) -> int:
    """Funded cards till ``till`` needs for a whole run at SALES_PER_S_AT_MOST."""
    per_card = card_limit // LATTE_MINOR  # sales a full card pays for
    seconds_32 = settings.rounds * settings.slice_s + settings.warmup_s
    sales = SALES_PER_S_AT_MOST / 32 * seconds_32
    if till < 8:
        sales += SALES_PER_S_AT_MOST / 8 * settings.rounds * settings.slice_s
    if till == 0:
        sales += CAPTURE_WARMUP_SALES + settings.capture_sales
    return math.ceil(sales / per_card) + 1


def top_up_cards_needed(settings: Settings, card_limit: int) -> int:
    seconds = settings.rounds * settings.health_slice_s + settings.warmup_s
    per_card = card_limit // TOP_UP_MINOR - 1
    return math.ceil(TOP_UPS_PER_S_AT_MOST * seconds / per_card) + HEALTH_CONNECTIONS


def set_up(app, settings: Settings) -> Fixtures:
    with app.app_context():
        s = session()
        catalog.create_product(
            s, sku=LATTE_SKU, currency=cards.currency(), name="Caffè Latte", category="coffee",
            price_minor=LATTE_MINOR,
        )  # fmt: skip
        store_rows = [
            stores.create_store(
                s, code=f"bench-http-{n}", name=f"Bench store {n}", currency=app_settings().currency
            )
            for n in range(STORES)
        ]
        tills = [open_till(s, store_rows[n % STORES], n) for n in range(TILLS)]
        admin = auth.create_staff(
            s, app_settings(), email="admin@bench.test", name="Bench admin", role="admin",
            password="a bench admin password",
        )  # fmt: skip
        admin_token, _ = auth.issue_token(s, "staff", 24 * 3600, staff_id=admin.id)
        s.commit()
        limit = app.config["CARD_MAX_BALANCE_MINOR"]
        sale_shoppers, sale_cards = [], []
        for till in range(TILLS):
            wanted = cards_for_sales(settings, till, limit)
            numbers = []
            while len(numbers) < wanted:
                shopper = sign_up(s, f"till{till}-{len(numbers)}")
                sale_shoppers.append(shopper)
                for card_id, number in shopper.cards:
                    fund(s, app, s.get(Card, card_id), tills[till], limit)
                    numbers.append(number)
                s.commit()
            sale_cards.append(numbers)
        top_up_shoppers = []
        while (
            sum(len(t.cards) for t in top_up_shoppers) < top_up_cards_needed(settings, limit)
            or len(top_up_shoppers) < TOP_UP_SHOPPER_STREAMS
        ):
            top_up_shoppers.append(sign_up(s, f"topup{len(top_up_shoppers)}"))
        s.commit()
    return Fixtures(tills, sale_cards, sale_shoppers, top_up_shoppers, admin_token)


def open_till(s, store: Store, n: int) -> rt.Till:
    device, _secret = stores.register_device(s, store_id=store.id, kind="pos", name=f"Till {n}")
    staff_code, pin = f"H{n:03d}", "2468"
    cashier = auth.create_staff(
        s, app_settings(), email=f"cashier{n}@bench.test", name=f"Cashier {n}", role="cashier",
        password="a bench cashier password", staff_code=staff_code, pin=pin, store_id=store.id,
    )  # fmt: skip
    token, _row, _staff = auth.sign_in_cashier(s, app_settings(), device, staff_code, pin)
    return rt.Till(store.id, device.id, cashier.id, token)


def sign_up(s, name: str) -> Shopper:
    token, customer = customers.sign_up(
        s, app_settings(), email=f"{name}@bench.test", password="a bench shopper password",
        name=name,
    )  # fmt: skip
    for _ in range(CARDS_PER_SHOPPER - 1):
        cards.issue_card(s, kind="digital", customer_id=customer.id)
    owned = cards.cards_of(s, customer.id)
    return Shopper(customer.id, token, tuple((c.id, c.number) for c in owned))


def fund(s, app, card: Card, till: rt.Till, limit: int) -> None:
    """Top the card up to its limit at the till, in cash, as a shopper would."""
    balance, most = cards.card_balance(s, card), app.config["TOPUP_MAX_MINOR"]
    while limit - balance >= app.config["TOPUP_MIN_MINOR"]:
        amount = min(limit - balance, most)
        payments.top_up_at_till(
            s, card=card, amount=amount, tender="cash", store=s.get(Store, till.store_id),
            device_id=till.device_id, principal=till.principal, idempotency_key=uuid.uuid4().hex,
        )  # fmt: skip
        balance += amount


# --------------------------------------------------------------------------------------------
# The load generator: wrk, one thread per connection, each connection its own list of requests

#: Each thread reads the requests of its connection from ``<dir>/<n>.txt``, a line each:
#: ``METHOD PATH TOKEN [BODY]`` (TOKEN ``-``: none), and sends them in turn, round and round,
#: or once each (``once``: a thread that has sent them all stops and says so). Every POST gets
#: a new Idempotency-Key. ``done`` prints the figures as one JSON line.
LUA = r"""
local threads = {}

function setup(thread)
  table.insert(threads, thread)
  thread:set("id", #threads)
end

function init(args)
  tag, once = args[2], args[3] == "once"
  lines = {}
  for line in io.lines(args[1] .. "/" .. id .. ".txt") do
    local method, path, token, body = line:match("^(%S+) (%S+) (%S+) ?(.*)$")
    local headers = {}
    if token ~= "-" then headers["Authorization"] = "Bearer " .. token end
    if body ~= "" then headers["Content-Type"] = "application/json" else body = nil end
    table.insert(lines, {method, path, headers, body})
  end
  at, posts = 0, 0
  ok, client_errors, server_errors, ran_out = 0, 0, 0, 0
  first_error = ""
end

function request()
  at = at + 1
  if at > #lines then
    if once then
      ran_out = 1
      wrk.thread:stop()
    end
    at = 1
  end
  local l = lines[at]
  if l[1] == "POST" then
    posts = posts + 1
    l[3]["Idempotency-Key"] = tag .. "-" .. id .. "-" .. posts
  end
  return wrk.format(l[1], l[2], l[3], l[4])
end

function response(status, headers, body)
  if status >= 200 and status < 300 then
    ok = ok + 1
  else
    if status >= 500 then server_errors = server_errors + 1
    else client_errors = client_errors + 1 end
    if first_error == "" then first_error = status .. " " .. string.sub(body, 1, 300) end
  end
end

local function quoted(s)
  return '"' .. s:gsub('[%c"\\]', function(c) return string.format("\\u%04x", c:byte()) end) .. '"'
end

function done(summary, latency, requests)
  local sums = {ok = 0, client_errors = 0, server_errors = 0, ran_out = 0}
  local first = ""
  for _, thread in ipairs(threads) do
    for name, _ in pairs(sums) do sums[name] = sums[name] + thread:get(name) end
    if first == "" then first = thread:get("first_error") end
  end
  local e = summary.errors
  io.write(string.format(
    'RESULT {"requests": %d, "duration_us": %d, "ok": %d, "client_errors": %d, ' ..
    '"server_errors": %d, "ran_out": %d, "connect_errors": %d, "read_errors": %d, ' ..
    '"write_errors": %d, "status_errors": %d, "timeouts": %d, "p50_us": %d, "p90_us": %d, ' ..
    '"p99_us": %d, "max_us": %d, "mean_us": %.1f, "first_error": %s}\n',
    summary.requests, summary.duration, sums.ok, sums.client_errors, sums.server_errors,
    sums.ran_out, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
    latency.mean, quoted(first)))
end
"""


@dataclass(frozen=True)
class WrkResult:
    requests: int
    duration_s: float
    ok: int  # 2xx answers
    client_errors: int  # 4xx
    server_errors: int  # 5xx
    ran_out: bool  # a "once" connection sent all its requests
    socket_errors: int  # connect, read, write, timeouts
    latency_ms: dict[str, float]  # p50, p90, p99, max, mean
    first_error: str
    cpu_s: float  # wrk's own user + system time, as the kernel accounts it
    output: str

    @property
    def per_second(self) -> float:
        """Successful answers a second."""
        return self.ok / self.duration_s


class Wrk:
    """Runs wrk against the server: one thread and one connection per list of requests."""

    def __init__(self, port: int, work_dir: Path):
        self.port = port
        self.dir = work_dir
        self.script = work_dir / "omnicard.lua"
        self.script.write_text(LUA)
        self.runs = 0

    def run(self, requests: list[list[str]], seconds: float, *, once: bool = False) -> WrkResult:
        self.runs += 1
        data = self.dir / f"run-{self.runs}"
        data.mkdir()
        for n, lines in enumerate(requests, start=1):
            (data / f"{n}.txt").write_text("\n".join(lines) + "\n")
        tag = uuid.uuid4().hex[:12]
        connections = str(len(requests))
        command = [
            WRK, "-t", connections, "-c", connections, "-d", f"{max(1, round(seconds))}s",
            "--timeout", "30s", "-s", str(self.script), f"http://127.0.0.1:{self.port}",
            "--", str(data), tag, "once" if once else "cycle",
        ]  # fmt: skip
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        output = process.stdout.read().decode(errors="replace")
        # wait4: the child's own CPU time, from the kernel's accounting, once it has ended
        # (its /proc entry is gone by then).
        _pid, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        process.stdout.close()
        shutil.rmtree(data)
        found = re.search(r"^RESULT (\{.*\})$", output, re.MULTILINE)
        if process.returncode != 0 or found is None:
            raise RuntimeError(f"wrk failed ({process.returncode}):\n{output}")
        r = json.loads(found.group(1))
        return WrkResult(
            requests=r["requests"], duration_s=r["duration_us"] / 1e6, ok=r["ok"],
            client_errors=r["client_errors"], server_errors=r["server_errors"],
            ran_out=bool(r["ran_out"]),
            socket_errors=sum(r[k] for k in ("connect_errors", "read_errors", "write_errors",
                                             "timeouts")),
            latency_ms={k: r[f"{k}_us"] / 1000 for k in ("p50", "p90", "p99", "max", "mean")},
            first_error=r["first_error"], cpu_s=usage.ru_utime + usage.ru_stime, output=output,
        )  # fmt: skip


def compact(body: dict) -> str:
    """JSON without spaces: a request's line in wrk's files is split at spaces."""
    return json.dumps(body, separators=(",", ":"))


def sale_line(till: rt.Till, number: str) -> str:
    body = {
        "customer": {"card_number": number},
        "lines": [{"sku": LATTE_SKU, "quantity": 1}],
        "tenders": [{"type": "card_balance", "amount": {"amount": LATTE_MINOR, "currency": "USD"}}],
    }
    return f"POST /v1/sales {till.cashier_token} {compact(body)}"


def top_up_line(shopper: Shopper, card_id: int) -> str:
    body = {"amount": {"amount": TOP_UP_MINOR, "currency": "USD"}, "payment_token": "tok_visa"}
    return f"POST /v1/cards/{card_id}/top-ups {shopper.token} {compact(body)}"


# --------------------------------------------------------------------------------------------
# CPU by process (Linux: /proc)


def yardstick_ms() -> float:
    """CPU milliseconds this process takes for a fixed piece of pure Python work: how fast the
    machine runs Python just now (this virtual machine's speed drifts with what else runs on
    its host; the figures of a run are comparable with another's only at a like yardstick)."""
    started = time.process_time()
    sum(range(3_000_000))
    "".join(str(n) for n in range(300_000))
    return 1000 * (time.process_time() - started)


def postgres_processes(database_name: str) -> dict[str, list[int]]:
    """PostgreSQL's processes: the backends of ``database_name``, the server's own (postmaster,
    WAL writer, checkpointer, ...), and the backends of other databases (other work)."""
    found: dict[str, list[int]] = {"backends": [], "server": [], "elsewhere": []}
    for pid in rt.postgres_pids():
        try:
            title = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        # A backend's title is "postgres: [cluster:] <user> <database> <client> <state>", its
        # client "host(port)" or "[local]"; an autovacuum worker's "postgres: [cluster:]
        # autovacuum worker <database>".
        words = title.split()[1:]
        if words and words[0].endswith(":"):
            words = words[1:]
        if words[:2] == ["autovacuum", "worker"] and len(words) >= 3:
            database_of = words[2]
        elif len(words) >= 3 and words[2].endswith((")", "]")):
            database_of = words[1]
        else:
            found["server"].append(pid)
            continue
        found["backends" if database_of == database_name else "elsewhere"].append(pid)
    return found


class CpuWatch:
    """CPU seconds used by each part of the system between ``start()`` and ``stop()``."""

    def __init__(self, server: rt.Server, streams: rt.Subscribers):
        self.server, self.streams = server, streams

    def _read(self) -> tuple[float, dict[str, float], dict[int, float]]:
        by_pid = {}
        groups = postgres_processes(DATABASE)
        for pids in groups.values():
            for pid in pids:
                by_pid[pid] = rt.cpu_seconds(pid)
        sums = {
            "workers": self.server.cpu_seconds(),
            "stream client": self.streams.cpu_seconds(),
            "machine": rt.machine_busy_seconds(),
        }
        return time.monotonic(), sums, {"groups": groups, "pids": by_pid}

    def start(self) -> None:
        self.before = self._read()

    def stop(self) -> dict[str, float]:
        """Seconds of CPU by part, and ``wall`` (seconds)."""
        began, sums_before, pg_before = self.before
        ended, sums_after, pg_after = self._read()
        used = {name: sums_after[name] - sums_before[name] for name in sums_after}
        for group, pids in pg_after["groups"].items():
            # A process that ended meanwhile took its CPU time with it; one that started
            # meanwhile counts from zero.
            used[f"postgres {group}"] = sum(
                pg_after["pids"][pid] - pg_before["pids"].get(pid, 0.0) for pid in pids
            )
        used["wall"] = ended - began
        return used


# --------------------------------------------------------------------------------------------
# The server and its streams


@dataclass
class Streams:
    """The 100 streams held by the stream client, and what each may see."""

    client: rt.Subscribers
    #: Stream number: ("admin", None) / ("till", (store id, device id)) / ("shopper", id).
    kinds: dict[int, tuple[str, object]]


def open_streams(server: rt.Server, fixtures: Fixtures) -> Streams:
    client = rt.Subscribers()
    kinds: dict[int, tuple[str, object]] = {}
    try:
        opened = client.open(server.port, [fixtures.admin_token], ADMIN_STREAMS)
        kinds |= dict.fromkeys(opened.numbers, ("admin", None))
        for till in fixtures.tills:
            opened = client.open(server.port, [till.cashier_token], 1)
            kinds[opened.numbers[0]] = ("till", (till.store_id, till.device_id))
        for shoppers, count in (
            (fixtures.sale_shoppers, SALE_SHOPPER_STREAMS),
            (fixtures.top_up_shoppers, TOP_UP_SHOPPER_STREAMS),
        ):
            # Spread over the tills' shoppers (sale shoppers are made till by till).
            step = max(1, len(shoppers) // count)
            for shopper in shoppers[::step][:count]:
                opened = client.open(server.port, [shopper.token], 1)
                kinds[opened.numbers[0]] = ("shopper", shopper.customer_id)
    except BaseException:
        client.stop()
        raise
    return Streams(client, kinds)


@contextmanager
def serving(bench: Bench) -> Iterator[tuple[rt.Server, Streams]]:
    """A fresh production server with the 100 streams open on it."""
    with rt.Server(bench.url, bench.log_dir, workers=SERVER_WORKERS) as server:
        streams = open_streams(server, bench.fixtures)
        try:
            rt.wait_until_sequenced(bench.engine)
            yield server, streams
        finally:
            streams.client.stop()


@dataclass(frozen=True)
class Deliveries:
    events: int  # committed during the run
    streams: int
    complete: int  # streams that received every event they may see, in order, once each
    received: int  # events received, all streams together
    problems: list[str]


def wait_until_still(engine: Engine, still_s: float = 2.0, timeout_s: float = 120.0) -> None:
    """Until every event is sequenced and no new one has come for ``still_s``."""
    deadline = time.monotonic() + timeout_s
    newest, since = None, time.monotonic()
    while time.monotonic() < deadline:
        rt.wait_until_sequenced(engine)
        now = rt.newest_event_id(engine)
        if now != newest:
            newest, since = now, time.monotonic()
        elif time.monotonic() - since >= still_s:
            return
        time.sleep(0.2)
    raise RuntimeError(f"events still being written {timeout_s:.0f} s after the run")


def check_deliveries(engine: Engine, streams: Streams, after: int) -> Deliveries:
    """Did every event committed after position ``after`` reach every stream that may see it?

    Admin streams and shoppers' must have received exactly what they may see; a till's at
    least its store's and device's events (it may also get the events of the cards presented
    to it, for a while)."""
    wait_until_still(engine)
    with engine.connect() as c:
        rows = c.execute(
            select(Event.position, Event.type, Event.customer_id, Event.store_id, Event.device_id)
            .where(Event.position > after)
            .order_by(Event.position)
        ).all()
    every = [r.position for r in rows]
    by_customer: dict[int, list[int]] = defaultdict(list)
    for r in rows:
        if r.customer_id is not None and r.type != "card.presented":
            by_customer[r.customer_id].append(r.position)

    def owed(kind: str, whose) -> tuple[list[int], bool]:
        """The positions the stream must receive, and whether it may receive only those."""
        if kind == "admin":
            return every, True
        if kind == "shopper":
            return by_customer.get(whose, []), True
        store_id, device_id = whose
        return [
            r.position
            for r in rows
            if r.device_id == device_id or (r.store_id == store_id and r.type != "card.presented")
        ], False

    deadline = time.monotonic() + 60
    while True:
        positions, lost = streams.client.positions()
        problems = []
        received = 0
        for number, (kind, whose) in streams.kinds.items():
            got = [p for p in positions[number] if p > after]
            received += len(got)
            wanted, exactly = owed(kind, whose)
            if got != sorted(set(got)):
                problems.append(f"stream {number} ({kind}): events out of order or repeated")
            missing = set(wanted) - set(got)
            if missing:
                problems.append(f"stream {number} ({kind}): {len(missing)} of {len(wanted)} "
                                f"events missing (first: {min(missing)})")  # fmt: skip
            elif exactly and len(got) != len(wanted):
                problems.append(f"stream {number} ({kind}): {len(got) - len(wanted)} events "
                                "it may not see")  # fmt: skip
        if lost:
            problems.append(f"{lost} streams were lost")
        if not problems or time.monotonic() > deadline:
            break
        time.sleep(0.5)  # the last events may still be on their way
    return Deliveries(len(rows), len(streams.kinds), len(streams.kinds) - len(problems),
                      received, problems)  # fmt: skip


def after_run(bench: Bench, streams: Streams, after: int, what: str) -> Deliveries:
    """The checks after every run: the ledger, and the events on the streams."""
    print(f"\nchecks after {what}:")
    verify_ledger(bench.url)
    deliveries = check_deliveries(bench.engine, streams, after)
    print(f"    events: {deliveries.events:,} committed, {deliveries.received:,} deliveries; "
          f"{deliveries.complete} of {deliveries.streams} streams received every event they "
          "may see")  # fmt: skip
    if deliveries.problems:
        for problem in deliveries.problems[:10]:
            print(f"    {problem}")
        raise SystemExit(f"events were not delivered after {what}: the figures mean nothing")
    return deliveries


# --------------------------------------------------------------------------------------------
# Slices


@dataclass(frozen=True)
class Slice:
    kind: str  # "sales 8", "sales 32", "health", "top-up", "me", "refund"
    round: int
    wrk: WrkResult
    cpu: dict[str, float]  # seconds, by part; "wall"
    #: pg_stat_database of the bench database, from this slice's start to the next's (or the
    #: phase's end), less the background over as long: commits, rollbacks.
    transactions: tuple[float, float] = (0.0, 0.0)

    def cpu_ms_per_request(self, part: str) -> float:
        if part == "wrk":
            return 1000 * self.wrk.cpu_s / self.wrk.requests
        return 1000 * self.cpu[part] / self.wrk.requests

    @property
    def other_cpu_percent(self) -> float:
        """The machine's CPU not used by the bench's parts: other work sharing it."""
        ours = sum(v for k, v in self.cpu.items() if k not in ("machine", "wall",
                                                              "postgres elsewhere"))  # fmt: skip
        return 100 * (self.cpu["machine"] - ours - self.wrk.cpu_s) / self.cpu["wall"]


@dataclass(frozen=True)
class PgbenchSlice:
    round: int
    tps: float
    observation: ledger_bench.Observation

    def cpu_ms_per_transaction(self, part: str) -> float:
        percent = {"clients": self.observation.client_cpu,
                   "backends": self.observation.server_cpu}[part]  # fmt: skip
        return 10 * percent / self.tps


@dataclass(frozen=True)
class Counts:
    """``pg_stat_database``'s transactions of the bench database at a moment."""

    at: float  # time.monotonic()
    commits: int
    rollbacks: int


def xact_counts(engine: Engine) -> Counts:
    with engine.connect() as c:
        row = c.execute(
            text(
                "SELECT xact_commit, xact_rollback FROM pg_stat_database "
                "WHERE datname = current_database()"
            )
        ).one()
    return Counts(time.monotonic(), row.xact_commit, row.xact_rollback)


#: A backend reports its transactions to pg_stat_database when it goes idle, at most once a
#: second; what is left then, it reports after this long idle (PostgreSQL 15).
STATS_IDLE_REPORT_S = 11.0


def background_transactions(engine: Engine, seconds: float) -> tuple[float, float]:
    """Commits and rollbacks a second in the bench database while no one sends requests: the
    hubs' and the webhook workers' looks, with their pool's pre-pings (each a transaction of
    its own). Counted after STATS_IDLE_REPORT_S of quiet, over ``seconds``."""
    time.sleep(STATS_IDLE_REPORT_S)
    before = xact_counts(engine)
    time.sleep(seconds)
    after = xact_counts(engine)
    elapsed = after.at - before.at
    return (after.commits - before.commits) / elapsed, (
        after.rollbacks - before.rollbacks
    ) / elapsed


class Driver:
    """Runs slices of load on one server and measures each."""

    def __init__(
        self, bench: Bench, server: rt.Server, streams: Streams, background: tuple[float, float]
    ):
        self.bench, self.server, self.streams = bench, server, streams
        self.wrk = Wrk(server.port, Path(tempfile.mkdtemp(dir=bench.log_dir, prefix="wrk-")))
        self.cpu = CpuWatch(server, streams.client)
        self.background = background
        #: Slices waiting for the transaction count at the next one's start.
        self.open: list[tuple[Slice, Counts]] = []
        self.done: list[Slice] = []
        self.last_end = 0.0

    def run(
        self, kind: str, round_number: int, requests: list[list[str]], seconds: float,
        *, once: bool = False, warmup: bool = False,
    ) -> Slice | WrkResult:  # fmt: skip
        """One slice of load; measured unless it is a ``warmup`` (then wrk's result only)."""
        counts = xact_counts(self.bench.engine)
        self._close_open(counts)
        self.cpu.start()
        result = self.wrk.run(requests, seconds, once=once)
        cpu = self.cpu.stop()
        check_answers(kind, result)
        self.drain(kind)
        self.last_end = time.monotonic()
        if warmup:
            return result
        measured = Slice(kind, round_number, result, cpu)
        self.open.append((measured, counts))
        return measured

    def drain(self, kind: str) -> None:
        """Wait for the requests still on their way when wrk stopped: the server finishes
        them (and writes their events) after their clients have gone, and the next slice
        must not pay for them."""
        started = time.monotonic()
        while time.monotonic() - started < DRAIN_TIMEOUT_S:
            before = self.server.cpu_seconds()
            time.sleep(DRAIN_LOOK_S)
            if self.server.cpu_seconds() - before < IDLE_WORKERS_CPU * DRAIN_LOOK_S:
                break
        waited = time.monotonic() - started - DRAIN_LOOK_S
        if waited > 1.0:
            print(f"    {kind}: the server finished what was on its way {waited:.1f} s later")

    def _close_open(self, counts: Counts) -> None:
        """The slices measured since the last count: their transactions, from their start to
        now, less the background's over as long."""
        for measured, before in self.open:
            elapsed = counts.at - before.at
            net = (
                counts.commits - before.commits - self.background[0] * elapsed,
                counts.rollbacks - before.rollbacks - self.background[1] * elapsed,
            )
            self.done.append(replace(measured, transactions=net))
        self.open = []

    def finish(self) -> list[Slice]:
        """Every slice with its transactions, once the backends have reported them."""
        time.sleep(max(0.0, self.last_end + STATS_IDLE_REPORT_S - time.monotonic()))
        self._close_open(xact_counts(self.bench.engine))
        return self.done


def check_answers(kind: str, result: WrkResult) -> None:
    """Stop the bench on any 5xx, and on any answer that is not the one expected: the figures
    would measure errors."""
    if result.server_errors:
        raise SystemExit(
            f"{kind}: {result.server_errors} answers were 5xx (of {result.requests}); the first: "
            f"{result.first_error}"
        )
    if result.client_errors or result.socket_errors:
        raise SystemExit(
            f"{kind}: {result.client_errors} answers were 4xx and {result.socket_errors} "
            f"requests failed (of {result.requests}); the first: {result.first_error}"
        )
    if result.ran_out:
        raise SystemExit(f"{kind}: a connection ran out of requests: give it more")


def print_slice(measured: Slice) -> None:
    w = measured.wrk
    cpu = ", ".join(
        f"{part} {measured.cpu_ms_per_request(part):.2f}"
        for part in ("workers", "postgres backends", "postgres server", "wrk", "stream client")
    )
    print(f"  round {measured.round} {measured.kind:>8}: {w.per_second:8,.1f}/s  "
          f"p50 {w.latency_ms['p50']:.1f} ms, p99 {w.latency_ms['p99']:.1f} ms; CPU ms per "
          f"request: {cpu}; other work {measured.other_cpu_percent:.0f}% of a core")  # fmt: skip


# --------------------------------------------------------------------------------------------
# Part (1): sales, interleaved with pgbench


@dataclass
class Bench:
    url: str
    pgbench_url: str
    engine: Engine
    fixtures: Fixtures
    settings: Settings
    log_dir: Path


def sale_requests(fixtures: Fixtures, tills: int) -> list[list[str]]:
    return [
        [sale_line(fixtures.tills[n], number) for number in fixtures.sale_cards[n]]
        for n in range(tills)
    ]


@dataclass
class SalesPhase:
    slices: list[Slice]
    pgbench: list[PgbenchSlice]
    deliveries: Deliveries
    yardsticks_ms: list[float]  # before each round
    #: Commits and rollbacks a second in the bench database with the server idle.
    background: tuple[float, float]


def sales_phase(bench: Bench) -> SalesPhase:
    settings = bench.settings
    print(f"\n(1) sales at 8 and 32 tills, interleaved with pgbench tpcb-like "
          f"({settings.rounds} rounds of {settings.slice_s} s slices)")  # fmt: skip
    pgbench_settings = replace(ledger_bench.FULL, pgbench_seconds=settings.slice_s)
    with serving(bench) as (server, streams):
        background = background_transactions(bench.engine, BACKGROUND_S)
        print(f"  background, the server idle: {background[0]:.1f} commits and "
              f"{background[1]:.1f} rollbacks a second")  # fmt: skip
        driver = Driver(bench, server, streams, background)
        after = rt.newest_event_id(bench.engine)
        streams.client.reset()
        # Each till's cards in turn, from about where the last slice left them, so that the
        # cards are used evenly and none runs dry.
        requests = sale_requests(bench.fixtures, TILLS)
        used = dict.fromkeys(range(TILLS), 0)

        def rotated(tills: int) -> list[list[str]]:
            return [requests[n][used[n] :] + requests[n][: used[n]] for n in range(tills)]

        def advance(tills: int, sent: int) -> None:
            for n in range(tills):
                used[n] = (used[n] + sent // tills) % len(requests[n])

        warmup = driver.run("warm-up", 0, rotated(32), settings.warmup_s, warmup=True)
        advance(32, warmup.requests)

        pgbench, yardsticks = [], []
        for round_number in range(1, settings.rounds + 1):
            yardsticks.append(yardstick_ms())
            print(f"  round {round_number} yardstick: {yardsticks[-1]:.0f} ms of CPU")
            for step in ("sales 8", "pgbench", "sales 32"):
                if step == "pgbench":
                    tps, observation = run_pgbench(bench.pgbench_url, pgbench_settings)
                    pgbench.append(PgbenchSlice(round_number, tps, observation))
                    print(f"  round {round_number}  pgbench: {tps:8,.1f}/s  "
                          f"({observation.summary()})")  # fmt: skip
                    continue
                tills = int(step.split()[1])
                measured = driver.run(step, round_number, rotated(tills), settings.slice_s)
                print_slice(measured)
                advance(tills, measured.wrk.requests)
        deliveries = after_run(bench, streams, after, "the sales")
        slices = driver.finish()
    return SalesPhase(slices, pgbench, deliveries, yardsticks, background)


# --------------------------------------------------------------------------------------------
# Part (2): the wire. The loopback traffic to PostgreSQL, captured by tcpdump from before the
# server starts (so that every connection of its is seen from its first byte, the text of its
# prepared statements included), and read as the PostgreSQL protocol: frontend and backend
# messages, a type byte and a length each.

SSL_REQUEST, GSS_REQUEST, CANCEL_REQUEST = 80877103, 80877104, 80877102
#: Statements that are the event hub's own (its listening and sequencing connections).
HUB_CONNECTION_SQL = re.compile(
    r"pg_try_advisory_lock|\bLISTEN\b|\bNOTIFY\b|DELETE FROM event_outbox", re.IGNORECASE
)
#: What the hub (and the webhook worker beside it) reads through the pool of a worker: the log
#: of events, the webhook deliveries.
HUB_POOL_SQL = re.compile(r"\bFROM events\b|\bwebhook", re.IGNORECASE)
#: The kiosk suggestions' counts of new sales, which a worker makes after a sale's commit, at
#: most once a second, in a transaction of their own (app.kiosk.counts).
#: (A sale's own INSERT names the column too: these are the statements that look for it.)
KIOSK_COUNTS_SQL = re.compile(r"\bkiosk_counted\s+IS\b|\bSET\s+kiosk_counted\b", re.IGNORECASE)
CONTROL_SQL = re.compile(r"^\s*(BEGIN|COMMIT|ROLLBACK)\b", re.IGNORECASE)
#: The pool's pre-ping at each checkout (SQLAlchemy sends an empty statement).
PING_SQL = re.compile(r"^\s*(select 1)?\s*;?\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class Segment:
    at: float  # capture time, seconds of the realtime clock
    client_port: int
    from_client: bool
    seq: int
    syn: bool
    payload: bytes


def read_pcap(path: Path, server_port: int) -> Iterator[Segment]:
    """The TCP segments to and from ``server_port`` in a pcap file (IPv4 and IPv6)."""
    data = path.read_bytes()
    if len(data) < 24:
        return
    magic = data[:4]
    order = {b"\xd4\xc3\xb2\xa1": "<", b"\x4d\x3c\xb2\xa1": "<", b"\xa1\xb2\xc3\xd4": ">",
             b"\xa1\xb2\x3c\x4d": ">"}[magic]  # fmt: skip
    fraction = 1e9 if magic in (b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d") else 1e6
    link = struct.unpack(order + "I", data[20:24])[0]
    offset = 24
    while offset + 16 <= len(data):
        seconds, part, captured, _length = struct.unpack(order + "IIII", data[offset : offset + 16])
        packet = data[offset + 16 : offset + 16 + captured]
        offset += 16 + captured
        if link == 1:  # Ethernet (the loopback device's too)
            ethertype, ip = packet[12:14], packet[14:]
        elif link == 113:  # Linux cooked capture
            ethertype, ip = packet[14:16], packet[16:]
        else:
            raise RuntimeError(f"unknown link type {link} in {path}")
        if ethertype == b"\x08\x00":
            header = (ip[0] & 0x0F) * 4
            total = struct.unpack(">H", ip[2:4])[0]
            if ip[9] != 6:
                continue
            tcp = ip[header:total]
        elif ethertype == b"\x86\xdd":
            if ip[6] != 6:
                continue
            tcp = ip[40 : 40 + struct.unpack(">H", ip[4:6])[0]]
        else:
            continue
        source, destination, seq = struct.unpack(">HHI", tcp[:8])
        if server_port not in (source, destination):
            continue
        from_client = destination == server_port
        yield Segment(
            at=seconds + part / fraction, client_port=source if from_client else destination,
            from_client=from_client, seq=seq, syn=bool(tcp[13] & 0x02),
            payload=bytes(tcp[(tcp[12] >> 4) * 4 :]),
        )  # fmt: skip


@dataclass
class Message:
    at: float
    from_client: bool
    kind: str  # the type byte; "startup" for the StartupMessage
    body: bytes
    flight: int  # the connection's client flight it went out in (client messages)


class Conversation:
    """One connection's messages, both ways, in the order they went."""

    def __init__(self, port: int):
        self.port = port
        self.messages: list[Message] = []
        self.parameters: dict[str, str] = {}  # from the StartupMessage
        self.broken = ""  # why the rest could not be read
        self._buffers = {True: bytearray(), False: bytearray()}
        self._next_seq: dict[bool, int | None] = {True: None, False: None}
        self._started = False  # the StartupMessage has gone
        self._answer_byte = False  # the server answers an SSL/GSS request with one byte
        self._last_from_client: bool | None = None
        self.flights = 0

    def feed(self, segment: Segment) -> None:
        side = segment.from_client
        if segment.syn:
            self._next_seq[side] = (segment.seq + 1) & 0xFFFFFFFF
            return
        if self.broken or not segment.payload:
            return
        expected = self._next_seq[side]
        payload = segment.payload
        if expected is None:  # opened before the capture: its first bytes are unknown
            self.broken = "opened before the capture"
            return
        ahead = (segment.seq - expected) & 0xFFFFFFFF
        if ahead and ahead < 1 << 31:
            self.broken = "bytes missing from the capture"
            return
        if ahead:  # a retransmission, in part or whole
            payload = payload[(expected - segment.seq) & 0xFFFFFFFF :]
            if not payload:
                return
        self._next_seq[side] = (expected + len(payload)) & 0xFFFFFFFF
        if side and self._last_from_client is not True:
            self.flights += 1
        self._last_from_client = side
        self._buffers[side] += payload
        self._take(side, segment.at)

    def _take(self, from_client: bool, at: float) -> None:
        buffer = self._buffers[from_client]
        while True:
            if from_client and not self._started:
                if len(buffer) < 8:
                    return
                length, code = struct.unpack(">II", buffer[:8])
                if len(buffer) < length:
                    return
                body = bytes(buffer[8:length])
                del buffer[:length]
                if code in (SSL_REQUEST, GSS_REQUEST):
                    self._answer_byte = True
                    continue
                if code == CANCEL_REQUEST:
                    self.broken = "a cancel request"
                    return
                words = body.split(b"\0")
                self.parameters = {
                    words[n].decode(): words[n + 1].decode() for n in range(0, len(words) - 1, 2)
                    if words[n]
                }  # fmt: skip
                self._started = True
                self.messages.append(Message(at, True, "startup", body, self.flights))
                continue
            if not from_client and self._answer_byte:
                if not buffer:
                    return
                if buffer[:1] != b"N":
                    self.broken = "encrypted (TLS or GSS)"
                    return
                del buffer[:1]
                self._answer_byte = False
                continue
            if len(buffer) < 5:
                return
            length = struct.unpack(">I", buffer[1:5])[0]
            if len(buffer) < 1 + length:
                return
            kind, body = chr(buffer[0]), bytes(buffer[5 : 1 + length])
            del buffer[: 1 + length]
            self.messages.append(Message(at, from_client, kind, body, self.flights))


def conversations(path: Path, server_port: int) -> dict[int, Conversation]:
    """By client port. A port used again starts a new conversation: only the last connection
    from a port is kept (the workers' pooled connections stay open)."""
    found: dict[int, Conversation] = {}
    for segment in read_pcap(path, server_port):
        conversation = found.get(segment.client_port)
        if (segment.syn and segment.from_client) or conversation is None:
            conversation = found[segment.client_port] = Conversation(segment.client_port)
        conversation.feed(segment)
    return found


def c_string(body: bytes, start: int = 0) -> tuple[str, int]:
    end = body.index(b"\0", start)
    return body[start:end].decode(errors="replace"), end + 1


@dataclass
class Unit:
    """What a connection did from idle to idle: a transaction, or one statement outside any
    (a ping, a read in autocommit)."""

    port: int
    started: float
    ended: float = 0.0
    statements: list[tuple[int, str, str]] = field(default_factory=list)  # (flight, SQL, how)
    prepares: list[tuple[int, str]] = field(default_factory=list)  # (flight, SQL) named Parse
    flights: set[int] = field(default_factory=set)
    flight_at: dict[int, float] = field(default_factory=dict)  # when each flight went
    client_messages: Counter = field(default_factory=Counter)
    tags: list[str] = field(default_factory=list)  # CommandComplete, in order
    errors: int = 0
    ping: bool = False  # only the pool's pre-ping
    by: str = ""  # "request", "event hub" or "kiosk counts", once classified

    @property
    def work(self) -> list[str]:
        return [sql for _, sql, _ in self.statements if not CONTROL_SQL.match(sql)]


def units_of(conversation: Conversation) -> list[Unit]:
    """Split a conversation into units, with the SQL each executed and how it was sent:
    ``simple`` (a Query message), ``unnamed`` (Parse, Bind, Execute: parsed and planned for
    this one execution) or ``prepared`` (Bind, Execute of a statement prepared earlier on the
    connection)."""
    named: dict[str, str] = {}
    unnamed = ""
    portals: dict[str, tuple[str, str]] = {}
    units: list[Unit] = []
    unit: Unit | None = None
    for m in conversation.messages:
        if m.from_client:
            if m.kind in ("startup", "X", "p"):
                continue
            if unit is None:
                unit = Unit(conversation.port, m.at)
            unit.flights.add(m.flight)
            unit.flight_at.setdefault(m.flight, m.at)
            unit.client_messages[m.kind] += 1
            if m.kind == "Q":
                unit.statements.append((m.flight, c_string(m.body)[0].strip(), "simple"))
            elif m.kind == "P":
                name, rest = c_string(m.body)
                sql = c_string(m.body, rest)[0].strip()
                if name:
                    named[name] = sql
                    unit.prepares.append((m.flight, sql))
                else:
                    unnamed = sql
            elif m.kind == "B":
                portal, rest = c_string(m.body)
                statement = c_string(m.body, rest)[0]
                portals[portal] = (
                    (named.get(statement, f"<prepared before the capture: {statement}>"),
                     "prepared") if statement else (unnamed, "unnamed")
                )  # fmt: skip
            elif m.kind == "E":
                sql, how = portals.get(c_string(m.body)[0], ("<unknown portal>", "unnamed"))
                unit.statements.append((m.flight, sql, how))
            elif m.kind == "C" and m.body[:1] == b"S":
                named.pop(c_string(m.body, 1)[0], None)
        elif unit is not None:
            if m.kind == "C":
                unit.tags.append(c_string(m.body)[0])
            elif m.kind == "E":
                unit.errors += 1
            elif m.kind == "Z":
                unit.ended = m.at
                if m.body[:1] == b"I":  # idle: the unit is over
                    unit.ping = bool(unit.statements) and all(
                        PING_SQL.match(sql) for _, sql, _ in unit.statements
                    )
                    units.append(unit)
                    unit = None
    return units


@dataclass(frozen=True)
class WireFigures:
    """Per sale, over the capture's window, of one kind of connection work."""

    units: int
    flights: int
    statements: int  # executed (Execute or Query)
    by_how: dict[str, int]  # simple, unnamed, prepared
    prepares: int  # Parse of a named statement: a statement being prepared
    messages: int  # frontend messages
    commits: int
    rollbacks: int
    pings: int
    errors: int

    @classmethod
    def of(cls, units: list[Unit]) -> WireFigures:
        return cls(
            units=sum(not u.ping for u in units),
            flights=sum(len(u.flights) for u in units),
            statements=sum(len(u.statements) for u in units),
            by_how=dict(Counter(how for u in units for _, _, how in u.statements)),
            prepares=sum(len(u.prepares) for u in units),
            messages=sum(sum(u.client_messages.values()) for u in units),
            commits=sum(t == "COMMIT" for u in units for t in u.tags),
            rollbacks=sum(t == "ROLLBACK" for u in units for t in u.tags),
            pings=sum(u.ping for u in units),
            errors=sum(u.errors for u in units),
        )  # fmt: skip


@dataclass
class Wire:
    sales: int
    window_s: float
    request: WireFigures
    hub: WireFigures
    kiosk_counts: WireFigures
    #: SQL (abbreviated) of the requests' statements: (times executed, of them prepared).
    statements: list[tuple[str, int, int]]
    #: One sale (the median by round trips), round trip by round trip: its statements.
    one_sale: list[list[str]]
    connections: dict[str, int]  # by what they are: requests' pool, hub, other
    latency_ms_p50: float
    notes: list[str]


def shown(sql: str, how: str) -> str:
    """A statement of one sale's, as the listing of its round trips shows it."""
    if PING_SQL.match(sql):
        return f"{sql.strip() or '(empty)'} (the pool's pre-ping)"
    return abbreviated(sql, 90) + ("" if how == "prepared" else f" [{how}]")


def abbreviated(sql: str, width: int = 110) -> str:
    flat = " ".join(sql.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def classify(conversations_of_workers: list[Conversation]) -> list[Unit]:
    """Every unit of the workers' connections, with ``by`` set: the event hub's own
    connections, the hub's (and webhook worker's) reads through the pool, the kiosk counts
    made after the commits, or a request's work. A pool's pre-ping goes with what follows it
    on its connection."""
    classified = []
    for conversation in conversations_of_workers:
        units = units_of(conversation)
        hub_connection = any(
            HUB_CONNECTION_SQL.search(sql) for u in units for _, sql, _ in u.statements
        )
        pending_pings: list[Unit] = []
        for u in units:
            if u.ping:
                pending_pings.append(u)
                continue
            hub = hub_connection or (u.work and all(HUB_POOL_SQL.search(s) for s in u.work))
            counts = any(KIOSK_COUNTS_SQL.search(s) for s in u.work)
            u.by = "event hub" if hub else "kiosk counts" if counts else "request"
            for ping in pending_pings:
                ping.by = u.by
            classified += [*pending_pings, u]
            pending_pings = []
        for ping in pending_pings:
            ping.by = "request"
            classified.append(ping)
    return classified


class Capture:
    """tcpdump writing the loopback traffic to and from PostgreSQL's port to a file."""

    def __init__(self, path: Path, port: int):
        if shutil.which(TCPDUMP) is None:
            raise SystemExit(f"tcpdump is missing; install it: {INSTALL_HINT}")
        self.path = path
        self.log = path.with_suffix(".log")
        self.process = subprocess.Popen(
            # --immediate-mode: each packet handed over as it comes, not in blocks that a
            # stop would leave unread.
            [TCPDUMP, "-i", "lo", "-s", "0", "-B", "65536", "--immediate-mode", "-U", "-n",
             "-w", str(path),
             f"tcp port {port}"],
            stdout=subprocess.DEVNULL, stderr=self.log.open("wb"),
        )  # fmt: skip
        deadline = time.monotonic() + 30
        while "listening on" not in self.log.read_text(errors="replace"):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(
                    f"tcpdump did not start (it needs root or CAP_NET_RAW):\n"
                    f"{self.log.read_text(errors='replace')}"
                )
            time.sleep(0.05)

    def stop(self) -> str:
        """Stop; tcpdump's own account of what it captured (and dropped)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return ", ".join(
            line.strip() for line in self.log.read_text(errors="replace").splitlines()
            if "packets" in line
        )  # fmt: skip


def check_plain_connections(url: str) -> None:
    """The capture reads the protocol: connections made as the server makes them must not be
    encrypted."""
    engine = make_engine(url, poolclass=NullPool)
    with engine.connect() as c:
        encrypted = c.scalar(text("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"))
    engine.dispose()
    if encrypted:
        raise SystemExit(
            "connections to PostgreSQL use TLS: the capture cannot read them. Run the bench "
            "with sslmode=disable in OMNICARD_BENCH_POSTGRES_URL's query string."
        )


def fullest_cards(engine: Engine, numbers: list[str], count: int) -> list[str]:
    """The ``count`` cards of ``numbers`` with the most money left, for the capture's sales."""
    with engine.connect() as c:
        return list(
            c.scalars(
                select(Card.number)
                .join(Account, Account.id == Card.account_id)
                .where(Card.number.in_(numbers))
                .order_by(Account.balance.desc())
                .limit(count)
            )
        )


def capture_sales(bench: Bench, server: rt.Server, capture: Capture) -> Wire:
    """Sales at one till, one after another on one connection (so on one worker), timed."""
    settings = bench.settings
    till = bench.fixtures.tills[0]
    total = CAPTURE_WARMUP_SALES + settings.capture_sales
    sale_cards = fullest_cards(bench.engine, bench.fixtures.sale_cards[0], 10)
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    times: list[tuple[float, float]] = []  # (sent, answered), time.time()
    for n in range(total):
        line = sale_line(till, sale_cards[n % len(sale_cards)])
        _method, path, token, body = line.split(" ", 3)
        sent = time.time()
        connection.request("POST", path, body=body, headers={
            "Authorization": f"Bearer {token}", "Content-Type": "application/json",
            "Idempotency-Key": uuid.uuid4().hex,
        })  # fmt: skip
        response = connection.getresponse()
        answer = response.read()
        if response.status != 201:
            raise SystemExit(f"capture: a sale answered {response.status}: {answer[:300]!r}")
        times.append((sent, time.time()))
    connection.close()
    measured = times[CAPTURE_WARMUP_SALES:]
    window = (measured[0][0], measured[-1][1])
    time.sleep(0.5)  # the hub's work for the last sales' events
    ports = {port: pid for pid in server.worker_pids() for port in rt.local_tcp_ports(pid)}
    tcpdump_says = capture.stop()
    return read_wire(bench, capture.path, ports, measured, window, tcpdump_says)


def read_wire(
    bench: Bench, path: Path, worker_ports: dict[int, int], measured: list[tuple[float, float]],
    window: tuple[float, float], tcpdump_says: str,
) -> Wire:  # fmt: skip
    server_port = make_url(bench.url).port or 5432
    everything = conversations(path, server_port)
    ours = [
        c for c in everything.values()
        if c.parameters.get("database") == DATABASE and c.port in worker_ports
    ]  # fmt: skip
    notes = [f"tcpdump: {tcpdump_says}."]
    unattributed = [
        c for c in everything.values()
        if c.parameters.get("database") == DATABASE and c.port not in worker_ports
    ]  # fmt: skip
    if unattributed:
        notes.append(
            f"{len(unattributed)} connections to the bench database were not the workers' "
            "(the bench's own look-ups, or closed before the end): not counted."
        )
    for c in ours:
        if c.broken:
            notes.append(f"Connection from port {c.port}: {c.broken}.")
    units = classify(ours)
    inside = [u for u in units if window[0] <= u.started <= window[1]]
    requests = [u for u in inside if u.by == "request"]
    hub = [u for u in inside if u.by == "event hub"]
    counts = [u for u in inside if u.by == "kiosk counts"]
    sales = len(measured)
    statements: Counter = Counter()
    prepared: Counter = Counter()
    for u in requests:
        for _, sql, how in u.statements:
            key = (
                f"{sql.strip()} (the pool's pre-ping)" if PING_SQL.match(sql) else abbreviated(sql)
            )
            statements[key] += 1
            prepared[key] += how == "prepared"
    # One sale: the units of the request connections that began while it was on its way,
    # flight by flight in the order they went.
    per_sale = []
    for sent, answered in measured:
        flights: dict[tuple[float, int, int], list[str]] = {}
        for u in requests:
            if sent <= u.started <= answered:
                for flight, at in u.flight_at.items():
                    flights[at, u.port, flight] = [
                        *(f"PREPARE {abbreviated(sql, 80)}" for f, sql in u.prepares
                          if f == flight),
                        *(shown(sql, how) for f, sql, how in u.statements if f == flight),
                    ]  # fmt: skip
        per_sale.append([flights[key] for key in sorted(flights)])
    per_sale.sort(key=len)
    hub_ports = {u.port for u in units if u.by == "event hub"}
    request_ports = {u.port for u in units if u.by == "request"}
    latencies = sorted(1000 * (answered - sent) for sent, answered in measured)
    return Wire(
        sales=sales, window_s=window[1] - window[0], request=WireFigures.of(requests),
        hub=WireFigures.of(hub), kiosk_counts=WireFigures.of(counts),
        statements=[(sql, n, prepared[sql]) for sql, n in statements.most_common()],
        one_sale=per_sale[len(per_sale) // 2],
        connections={"requests (pool)": len(request_ports),
                     "event hub only": len(hub_ports - request_ports),
                     "all the workers'": len(ours)},
        latency_ms_p50=statistics.median(latencies), notes=notes,
    )  # fmt: skip


def print_wire(wire: Wire) -> None:
    r, h, k = wire.request, wire.hub, wire.kiosk_counts
    n = wire.sales
    print(f"  {n} sales in {wire.window_s:.1f} s (p50 {wire.latency_ms_p50:.1f} ms); per sale:")
    for name, figures in (("requests", r), ("event hub", h), ("kiosk counts", k)):
        print(f"    {name}: {figures.flights / n:.2f} round trips, {figures.units / n:.2f} "
              f"transactions ({figures.commits / n:.2f} commits, {figures.rollbacks / n:.2f} "
              f"rollbacks), {figures.statements / n:.2f} statements "
              f"({', '.join(f'{k} {v / n:.2f}' for k, v in sorted(figures.by_how.items()))}), "
              f"{figures.prepares / n:.2f} prepared anew, {figures.pings / n:.2f} pings, "
              f"{figures.messages / n:.1f} messages, {figures.errors / n:.2f} errors")  # fmt: skip
    for note in wire.notes:
        print(f"    {note}")
    print("    one sale, round trip by round trip:")
    for number, flight in enumerate(wire.one_sale, start=1):
        print(f"      {number}. {' | '.join(flight) or '(continues the statement before)'}")


# --------------------------------------------------------------------------------------------
# Part (3): a top-up, GET /v1/me and a refund, each against GET /v1/health around it

HEALTH_KINDS = ("top-up", "me", "refund")


def refundable(engine: Engine) -> dict[int, list[int]]:
    """Sales paid from a card and not refunded yet, by store."""
    found: dict[int, list[int]] = defaultdict(list)
    with engine.connect() as c:
        rows = c.execute(
            select(Sale.id, Sale.store_id)
            .where(Sale.card_id.is_not(None), ~select(Refund.id).where(
                Refund.sale_id == Sale.id).exists())
            .order_by(Sale.id)
        )  # fmt: skip
        for sale_id, store_id in rows:
            found[store_id].append(sale_id)
    return found


def refund_requests(bench: Bench) -> list[list[str]]:
    """For each of the connections (tills 0..7, two of each store), its share of its store's
    sales not refunded yet: each refund on a sale of its own."""
    tills = bench.fixtures.tills[:HEALTH_CONNECTIONS]
    by_store = refundable(bench.engine)
    per_store: dict[int, list[rt.Till]] = defaultdict(list)
    for till in tills:
        per_store[till.store_id].append(till)
    requests = []
    for till in tills:
        share = per_store[till.store_id]
        mine = by_store[till.store_id][share.index(till) :: len(share)]
        requests.append(
            [f"POST /v1/sales/{sale}/refunds {till.cashier_token} {{}}" for sale in mine]
        )
    return requests


@dataclass
class HealthPhase:
    slices: list[Slice]
    deliveries: Deliveries | None = None

    def of(self, kind: str) -> list[Slice]:
        return [s for s in self.slices if s.kind == kind]

    def ratios(self, kind: str) -> list[float]:
        """Each slice of ``kind`` over the mean of the health slices just before and after."""
        found = []
        for n, s in enumerate(self.slices):
            if s.kind == kind:
                around = [self.slices[n - 1], self.slices[n + 1]]
                health = statistics.mean(a.wrk.per_second for a in around)
                found.append(s.wrk.per_second / health)
        return found


def health_phase(
    bench: Bench, server: rt.Server, streams: Streams, background: tuple[float, float]
) -> HealthPhase:
    settings = bench.settings
    print(f"\n(3) a top-up, GET /v1/me and a refund, each between slices of GET /v1/health "
          f"({settings.rounds} rounds of {settings.health_slice_s:g} s slices, "
          f"{HEALTH_CONNECTIONS} connections)")  # fmt: skip
    driver = Driver(bench, server, streams, background)
    shoppers = bench.fixtures.top_up_shoppers
    top_up_cards = [(s, card_id) for s in shoppers for card_id, _ in s.cards]
    top_ups = [
        [top_up_line(s, card_id) for s, card_id in top_up_cards[n::HEALTH_CONNECTIONS]]
        for n in range(HEALTH_CONNECTIONS)
    ]
    used = [0] * HEALTH_CONNECTIONS

    def requests(kind: str) -> tuple[list[list[str]], bool]:
        """Each connection's requests, and whether each may be sent once only."""
        if kind == "health":
            return [["GET /v1/health -"]] * HEALTH_CONNECTIONS, False
        if kind == "me":
            return [
                [f"GET /v1/me {s.token}" for s in shoppers[n::HEALTH_CONNECTIONS]]
                for n in range(HEALTH_CONNECTIONS)
            ], False
        if kind == "refund":
            return refund_requests(bench), True
        # Top-ups: each connection's cards in turn, from where the last slice left off.
        return [t[used[n]:] + t[:used[n]] for n, t in enumerate(top_ups)], False  # fmt: skip

    def advance(result: WrkResult) -> None:
        for n in range(HEALTH_CONNECTIONS):
            used[n] = (used[n] + result.requests // HEALTH_CONNECTIONS) % len(top_ups[n])

    for kind in ("health", *HEALTH_KINDS):
        lines, once = requests(kind)
        warm = driver.run(kind, 0, lines, max(1.0, settings.warmup_s / 2), once=once, warmup=True)
        if kind == "top-up":
            advance(warm)
    print(f"  sales to refund: {sum(len(r) for r in refund_requests(bench)):,}")
    order = ["health"] + [k for kind in HEALTH_KINDS for k in (kind, "health")]
    for round_number in range(1, settings.rounds + 1):
        for kind in order if round_number == 1 else order[1:]:
            lines, once = requests(kind)
            measured = driver.run(kind, round_number, lines, settings.health_slice_s, once=once)
            print_slice(measured)
            if kind == "top-up":
                advance(measured.wrk)
    return HealthPhase(driver.finish())


# --------------------------------------------------------------------------------------------
# The whole run


@dataclass
class Results:
    settings: Settings
    sales: SalesPhase
    wire: Wire
    health: HealthPhase
    setup_s: float
    fixtures_summary: str
    elapsed_s: float = 0.0

    def sales_slices(self, tills: int) -> list[Slice]:
        return [s for s in self.sales.slices if s.kind == f"sales {tills}"]

    def sales_per_s(self, tills: int) -> float:
        return statistics.median(s.wrk.per_second for s in self.sales_slices(tills))

    @property
    def pgbench_tps(self) -> float:
        return statistics.median(p.tps for p in self.sales.pgbench)

    def round_ratios(self) -> list[float]:
        return [
            s.wrk.per_second / p.tps
            for s, p in zip(self.sales_slices(8), self.sales.pgbench, strict=True)
        ]

    def median_of(self, slices: list[Slice], pick: Callable[[Slice], float]) -> float:
        return statistics.median(pick(s) for s in slices)


@dataclass(frozen=True)
class Verdict:
    title: str
    required: str
    measured: str
    rounds: str
    met: bool


def verdicts(r: Results) -> list[Verdict]:
    def each(values, form: str) -> str:
        return ", ".join(form.format(v) for v in values)

    eight, thirty_two = r.sales_slices(8), r.sales_slices(32)
    ratio = r.sales_per_s(8) / r.pgbench_tps
    worker_ms = [s.cpu_ms_per_request("workers") for s in eight]
    p99_8 = [s.wrk.latency_ms["p99"] for s in eight]
    p99_32 = [s.wrk.latency_ms["p99"] for s in thirty_two]
    round_trips = r.wire.request.flights / r.wire.sales
    found = [
        Verdict("HTTP sales/s at 8 tills vs pgbench tpcb-like at 8 clients", "≥ 20%",
                f"{ratio:.1%} ({r.sales_per_s(8):,.0f} vs {r.pgbench_tps:,.0f}/s)",
                each(r.round_ratios(), "{:.1%}"), ratio >= 0.20),
        Verdict("Worker CPU per sale (8 tills)", "≤ 4 ms", f"{statistics.median(worker_ms):.1f} ms",
                each(worker_ms, "{:.1f}"), statistics.median(worker_ms) <= 4),
        Verdict("PostgreSQL round trips per sale", "≤ 6", f"{round_trips:.2f}",
                f"one capture of {r.wire.sales} sales", round_trips <= 6),
        Verdict("Sale latency p99 at 8 tills, no 5xx", "≤ 50 ms",
                f"{statistics.median(p99_8):.0f} ms, no 5xx", each(p99_8, "{:.0f}"),
                statistics.median(p99_8) <= 50),
        Verdict("Sale latency p99 at 32 tills, no 5xx", "≤ 150 ms",
                f"{statistics.median(p99_32):.0f} ms, no 5xx", each(p99_32, "{:.0f}"),
                statistics.median(p99_32) <= 150),
    ]  # fmt: skip
    for kind, title in (("top-up", "Top-up"), ("me", "`GET /v1/me`")):
        ratios = r.health.ratios(kind)
        found.append(Verdict(
            f"{title} vs `GET /v1/health`, requests/s", "≥ 40%",
            f"{statistics.median(ratios):.1%}", each(ratios, "{:.1%}"),
            statistics.median(ratios) >= 0.40,
        ))  # fmt: skip
    return found


def run_everything(admin: Engine, settings: Settings, log_dir: Path) -> Results:
    started = time.monotonic()
    url = create_fresh_database(admin, DATABASE)
    pgbench_url = create_fresh_database(admin, PGBENCH_DATABASE)
    print(f"pgbench: initialising {PGBENCH_DATABASE} at scale {PGBENCH_SCALE}")
    initialise_pgbench(pgbench_url)
    migrate(url)
    check_plain_connections(url)
    app = rt.bench_app(url, events_hub=False)
    fixtures = set_up(app, settings)
    database(app).engine.dispose()
    summary = (
        f"{STORES} stores of {TILLS // STORES} tills, each with a signed-in cashier; "
        f"{sum(len(c) for c in fixtures.sale_cards):,} cards funded to their limit for the "
        f"sales ({len(fixtures.sale_shoppers):,} shoppers, {CARDS_PER_SHOPPER} cards each, "
        f"{min(len(c) for c in fixtures.sale_cards)} to {max(len(c) for c in fixtures.sale_cards)}"
        f" cards a till, no card at two tills); {len(fixtures.top_up_shoppers):,} shoppers with "
        f"{sum(len(s.cards) for s in fixtures.top_up_shoppers):,} empty cards for the top-ups "
        "and `GET /v1/me`; an admin"
    )
    setup_s = time.monotonic() - started
    print(f"set-up ({setup_s:.0f} s): {summary}")
    engine = make_engine(url, poolclass=NullPool)
    bench = Bench(url, pgbench_url, engine, fixtures, settings, log_dir)
    try:
        sales = sales_phase(bench)
        print(f"\n(2) the wire: {settings.capture_sales} sales at one till on a fresh server, "
              "its traffic to PostgreSQL captured")  # fmt: skip
        capture = Capture(log_dir / "postgres.pcap", make_url(url).port or 5432)
        try:
            with serving(bench) as (server, streams):
                after = rt.newest_event_id(bench.engine)
                streams.client.reset()
                wire = capture_sales(bench, server, capture)
                print_wire(wire)
                health = health_phase(bench, server, streams, sales.background)
                health.deliveries = after_run(bench, streams, after, "the capture and (3)")
        finally:
            capture.stop()
    finally:
        engine.dispose()
    results = Results(settings, sales, wire, health, setup_s, summary)
    results.elapsed_s = time.monotonic() - started
    return results


def print_summary(r: Results) -> None:
    print(f"\nsummary ({r.elapsed_s / 60:.1f} minutes):")
    for tills in TILL_COUNTS:
        each = ", ".join(f"{s.wrk.per_second:,.0f}" for s in r.sales_slices(tills))
        print(f"  sales at {tills} tills: {r.sales_per_s(tills):,.1f}/s ({each})")
    each = ", ".join(f"{p.tps:,.0f}" for p in r.sales.pgbench)
    print(f"  pgbench: {r.pgbench_tps:,.0f} tps ({each})")
    for kind in ("health", *HEALTH_KINDS):
        each = ", ".join(f"{s.wrk.per_second:,.0f}" for s in r.health.of(kind))
        print(f"  {kind}: {statistics.median(s.wrk.per_second for s in r.health.of(kind)):,.1f}/s"
              f" ({each})")  # fmt: skip
    print("targets:")
    for v in verdicts(r):
        print(f"  {v.title}: {v.measured} (required {v.required}; {v.rounds}) "
              f"{'met' if v.met else 'MISSED'}")  # fmt: skip


# --------------------------------------------------------------------------------------------
# docs/benchmarks.md: this bench rewrites its own part, between its markers, and keeps the
# analysis inside it; the rest of the file belongs to the other benchmarks.

SECTION_BEGIN = "<!-- http benchmarks:begin -->"
SECTION_END = "<!-- http benchmarks:end -->"
ANALYSIS_BEGIN = "<!-- http analysis:begin (kept when bench/http.py rewrites this part) -->"
ANALYSIS_END = "<!-- http analysis:end -->"
ANALYSIS_PLACEHOLDER = (
    "_To be completed: for every target missed above, what limits it and what would fix it._"
)


def write_doc(path: Path, r: Results, machine: dict[str, str]) -> None:
    old = path.read_text() if path.exists() else ""
    before, _, rest = old.partition(SECTION_BEGIN)
    old_section, _, after = rest.partition(SECTION_END)
    if not rest:  # not there yet: goes at the end
        before, after = old, ""
    analysis = ANALYSIS_PLACEHOLDER
    if ANALYSIS_BEGIN in old_section and ANALYSIS_END in old_section:
        analysis = old_section.split(ANALYSIS_BEGIN, 1)[1].split(ANALYSIS_END, 1)[0].strip("\n")
    lines = [
        SECTION_BEGIN,
        "# HTTP benchmarks",
        "",
        f"Written by `bench/http.py` on {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, at commit "
        f"`{git_commit()}`; the run took {r.elapsed_s / 60:.1f} minutes. Running the bench again "
        "rewrites this part of the file, except the analysis between its markers.",
        "",
        *command_and_machine("bench.http", machine),
        *method_section(r),
        *figures_section(r),
        "## Targets",
        "",
        "Medians of the rounds; each round's own figure after it.",
        "",
        "| Target | Required | Measured | Each round | Verdict |",
        "|---|---:|---:|---|---|",
        *[
            f"| {v.title} | {v.required} | {v.measured} | {v.rounds} | "
            f"{'met' if v.met else '**missed**'} |"
            for v in verdicts(r)
        ],
        "",
        "## Analysis",
        "",
        ANALYSIS_BEGIN,
        analysis,
        ANALYSIS_END,
        SECTION_END,
    ]
    head = before.rstrip("\n") + "\n\n" if before.strip() else ""
    tail = "\n" + after.lstrip("\n") if after.strip() else "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(head + "\n".join(lines) + tail)
    print(f"\nwrote {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")


def method_section(r: Results) -> list[str]:
    s = r.settings
    return [
        "## What is measured",
        "",
        f"A fresh database (`{DATABASE}`), made by the Alembic migrations; its data made through "
        f"the services in the bench process (not measured): {r.fixtures_summary}. The server "
        "is the README's production one, `gunicorn -c gunicorn.conf.py wsgi:app`: gevent "
        f"workers, `WEB_CONCURRENCY={SERVER_WORKERS}`, `OMNICARD_BIND` a free port of "
        "127.0.0.1, `DATABASE_URL` the bench database, every other setting at its default (each "
        f"worker runs its event hub). {STREAMS} "
        f"`GET /v1/events` streams are open throughout, held by one separate process (asyncio, "
        f"a socket each, `bench/realtime.py`'s): {ADMIN_STREAMS} of an admin (every event), "
        f"one per till with its cashier's session (its store's events), "
        f"{SALE_SHOPPER_STREAMS} of shoppers who buy and {TOP_UP_SHOPPER_STREAMS} of shoppers "
        "who top up (their own).",
        "",
        "The load generator is wrk (Debian's), with a Lua script; one wrk thread per "
        "connection, each connection its own list of requests, sent one after another (a "
        "closed loop: a connection sends its next request when the answer to the last has "
        "come). Every POST carries a new `Idempotency-Key`. Latency percentiles are wrk's, over "
        "every request of the slice. CPU is read from /proc (`utime + stime`) at the start and "
        "end of each slice: the two gunicorn workers; PostgreSQL's backends of the bench "
        "database; PostgreSQL's own processes (postmaster, WAL writer, checkpointer, ...: "
        "shared with whatever else uses the server); the stream client; wrk's own from its "
        "rusage when it ends. Any 5xx, or any answer but the one expected, stops the bench.",
        "",
        f"**(1) Sales.** Each wrk connection is a till with its cashier's session, sending "
        f"`POST /v1/sales`: one latte ({LATTE_MINOR} cents) paid from the card balance, the card "
        "given by its number; each till goes round its own cards (no card at two tills), "
        "funded to their limit. In slices of one run, round after round: "
        f"[8 tills {s.slice_s} s][pgbench {s.slice_s} s][32 tills {s.slice_s} s], "
        f"{s.rounds} rounds, after a {s.warmup_s:g} s warm-up at 32 tills. The 8 tills are two "
        f"of each store. pgbench is `tpcb-like`, {PGBENCH_CLIENTS} clients, 2 threads, on its own "
        f"database initialised with `pgbench -i -s {PGBENCH_SCALE}` (`bench/ledger.py`'s; its "
        "CPU sampled from 2 s after its start). Sales/s count the 201s over wrk's duration. "
        "Transactions per sale are `pg_stat_database`'s `xact_commit` and `xact_rollback` of "
        "the bench database, from the slice's start to the next slice's on this database (a "
        "backend reports them when it goes idle, at most once a second), less the background "
        f"counted over {BACKGROUND_S:g} s with the server idle before the first slice "
        f"({r.sales.background[0]:.1f} commits and {r.sales.background[1]:.1f} rollbacks a "
        "second: the hubs' and webhook workers' looks; what is left of a slice with little "
        "traffic can come out a little below zero). PostgreSQL counts each statement sent "
        "outside a transaction as a committed transaction of its own: the pool's pre-ping (an "
        "empty statement) at each checkout, and the hub's sequencing rounds, among them. "
        "At 32 tills the requests still on their way when wrk stops are not counted, but the "
        "CPU they used is: while a sale takes seconds, that adds up to half a sale per till "
        "to the CPU of a slice.",
        "",
        f"**(2) The wire.** On a freshly started server (same settings, same streams), "
        f"{CAPTURE_WARMUP_SALES} sales at one till, then {s.capture_sales} measured, one after "
        "another on one keep-alive connection (so on one worker), from the bench process. "
        "tcpdump captures the loopback traffic to PostgreSQL's port from before the server "
        "starts, so that every connection of the workers is seen from its first byte (the text "
        "of its prepared statements too). The bench reassembles each TCP connection and reads "
        "the PostgreSQL protocol's messages, both ways. Only the two workers' connections to "
        "the bench database count (by their client ports, from /proc). A *round trip* is a "
        "flight of the client's messages (one or more TCP segments with no answer from the "
        "server between them); a *transaction* what a connection does from idle to idle "
        "(ReadyForQuery `I`): BEGIN … COMMIT, or one statement on its own; *statements* are "
        "executions (an Execute or a Query message): *unnamed* ones are parsed and planned for "
        "that one execution, *prepared* ones run a statement prepared earlier on the "
        "connection, *prepared anew* counts Parse messages that name a statement. The work is "
        "split by what did it: the *event hub* is its own connections (listening, sequencing) "
        "and its and the webhook worker's reads through the pool (of `events`, of webhook "
        "deliveries); the *kiosk counts* are the transactions that count the new sales for "
        "the kiosks' suggestions after their commits (at most once a second per worker); "
        "everything else is the *requests'*. A pool's pre-ping goes with what "
        "follows it. Counted over the window from the first measured sale's sending to the "
        "last one's answer.",
        "",
        f"**(3) Other requests.** {HEALTH_CONNECTIONS} wrk connections: `GET /v1/health` "
        "(no one signed in); a top-up by a shopper with their own session, "
        f"`POST /v1/cards/{{id}}/top-ups` ({TOP_UP_MINOR} cents, the sandbox gateway's "
        "`tok_visa`), each connection going round its own shoppers' cards, empty at the start "
        "(none reaches its limit); `GET /v1/me` of those shoppers; a refund, "
        "`POST /v1/sales/{id}/refunds` (everything left) by a till (tills 0-7) of the sale's "
        "store, each on a different sale: the sales of (1) and (2), made before. In slices of "
        f"{s.health_slice_s:g} s, health around each: [health][top-up][health][me][health]"
        f"[refund][health], {s.rounds} rounds (each round's last health slice is the next "
        "one's first), after a warm-up of each. Each slice's requests/s is compared with the "
        "mean of the health slices just before and after it.",
        "",
        "After each run (the sales, and the capture with (3)): `app.ledger.verify` passes, and "
        "every event committed during the run reached every stream that may see it (admin "
        "and shopper streams exactly those, a till's at least its store's and device's), in "
        "order, once.",
        "",
    ]


def figures_section(r: Results) -> list[str]:
    eight, thirty_two = r.sales_slices(8), r.sales_slices(32)
    lines = [
        "## Figures",
        "",
        "### (1) Sales against pgbench",
        "",
        "| Round | Sales/s, 8 tills | pgbench tpcb-like tps | Ratio | Sales/s, 32 tills "
        "| Other work on the machine (% of a core): 8 tills, pgbench, 32 tills | Yardstick |",
        "|---|---:|---:|---:|---:|---|---:|",
    ]
    for e, p, t, y in zip(eight, r.sales.pgbench, thirty_two, r.sales.yardsticks_ms, strict=True):
        lines.append(
            f"| {e.round} | {e.wrk.per_second:,.1f} | {p.tps:,.0f} | {e.wrk.per_second / p.tps:.1%}"
            f" | {t.wrk.per_second:,.1f} | {e.other_cpu_percent:.0f}, "
            f"{p.observation.other_cpu:.0f}, {t.other_cpu_percent:.0f} | {y:.0f} ms |"
        )
    lines += [
        f"| **median** | **{r.sales_per_s(8):,.1f}** | **{r.pgbench_tps:,.0f}** | "
        f"**{r.sales_per_s(8) / r.pgbench_tps:.1%}** | **{r.sales_per_s(32):,.1f}** | | |",
        "",
        "*Other work* is the machine's CPU used by anything but the bench's processes (other "
        "test runs sharing it). The *yardstick* is the CPU time of a fixed piece of Python "
        "work, taken before each round: this virtual machine's speed moves with what runs on "
        "its host, and figures of runs at different yardsticks do not compare.",
        "",
        "Sale latency (wrk, every request of the slice), median of the rounds, each round's "
        "in brackets:",
        "",
        "| Tills | p50 | p90 | p99 | max | non-2xx |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for tills, slices in ((8, eight), (32, thirty_two)):

        def cell(name: str, slices=slices) -> str:
            values = [s.wrk.latency_ms[name] for s in slices]
            each = ", ".join(f"{v:.1f}" for v in values)
            return f"{statistics.median(values):.1f} ms ({each})"

        non_2xx = sum(s.wrk.requests - s.wrk.ok for s in slices)
        lines.append(f"| {tills} | {cell('p50')} | {cell('p90')} | {cell('p99')} | "
                     f"{cell('max')} | {non_2xx} |")  # fmt: skip
    lines += [
        "",
        "CPU per sale, by process, in milliseconds (median of the rounds); pgbench's per "
        "transaction:",
        "",
        "| Process | 8 tills | 32 tills | pgbench |",
        "|---|---:|---:|---:|",
    ]
    pg = r.sales.pgbench
    for title, part, reference in (
        ("gunicorn workers (both)", "workers", ("client (pgbench)", "clients")),
        ("PostgreSQL backends of the bench database", "postgres backends",
         ("backends", "backends")),
        ("PostgreSQL's own processes", "postgres server", None),
        ("wrk", "wrk", None),
        ("stream client (100 streams)", "stream client", None),
    ):  # fmt: skip
        row = f"| {title} | " + " | ".join(
            f"{r.median_of(slices, lambda s, part=part: s.cpu_ms_per_request(part)):.2f}"
            for slices in (eight, thirty_two)
        )
        if reference is not None:
            ms = statistics.median(p.cpu_ms_per_transaction(reference[1]) for p in pg)
            row += f" | {ms:.2f} ({reference[0]})"
        else:
            row += " |"
        lines.append(row + " |")
    machine = [
        r.median_of(slices, lambda s: 1000 * s.cpu["machine"] / s.wrk.ok)
        for slices in (eight, thirty_two)
    ]
    wrk_share = [
        r.median_of(slices, lambda s: 100 * s.wrk.cpu_s / s.cpu["wall"])
        for slices in (eight, thirty_two)
    ]
    lines += [
        f"| the whole machine (everything busy, other work included) | {machine[0]:.2f} | "
        f"{machine[1]:.2f} | |",
        "",
        f"wrk itself used {wrk_share[0]:.1f}% of one core at 8 tills and {wrk_share[1]:.1f}% at "
        "32 (median of the rounds); much of it its own timers, whatever the rate.",
        "",
        "Transactions per sale in `pg_stat_database` (commits, rollbacks; median of the "
        "rounds): "
        + "; ".join(
            f"{tills} tills {hundredths(r.median_of(sl, lambda s: s.transactions[0] / s.wrk.ok))}, "
            f"{hundredths(r.median_of(sl, lambda s: s.transactions[1] / s.wrk.ok))}"
            for tills, sl in ((8, eight), (32, thirty_two))
        )
        + ".",
        "",
        f"Checks: the ledger verified; {r.sales.deliveries.events:,} events committed during the "
        f"sales, {r.sales.deliveries.received:,} deliveries, every one of the "
        f"{r.sales.deliveries.streams} streams received every event it may see.",
        "",
        *wire_section(r.wire),
        *health_section(r),
    ]
    return lines


def hundredths(value: float) -> str:
    """Two decimals, and no minus sign on a figure that rounds to zero."""
    shown = f"{value:.2f}"
    return "0.00" if shown == "-0.00" else shown


def wire_section(w: Wire) -> list[str]:
    n = w.sales

    def row(title: str, pick: Callable[[WireFigures], float]) -> str:
        return (
            f"| {title} | {pick(w.request) / n:.2f} | {pick(w.hub) / n:.2f} "
            f"| {pick(w.kiosk_counts) / n:.2f} |"
        )

    hows = ("simple", "unnamed", "prepared")
    lines = [
        f"### (2) The wire: {n} sales at one till",
        "",
        f"{n} sales in {w.window_s:.1f} s (p50 {w.latency_ms_p50:.1f} ms, one at a time). "
        "Per sale, over the window:",
        "",
        "| Per sale | Requests | Event hub | Kiosk counts |",
        "|---|---:|---:|---:|",
        row("**round trips**", lambda f: f.flights),
        row("transactions (idle to idle)", lambda f: f.units),
        row("commits", lambda f: f.commits),
        row("rollbacks", lambda f: f.rollbacks),
        row("statements executed", lambda f: f.statements),
        *[row(f"… {how}", lambda f, how=how: f.by_how.get(how, 0)) for how in hows],
        row("statements prepared anew", lambda f: f.prepares),
        row("pool pre-pings", lambda f: f.pings),
        row("frontend messages", lambda f: f.messages),
        row("errors", lambda f: f.errors),
        "",
        "Connections: "
        + ", ".join(f"{k} {v}" for k, v in w.connections.items())
        + ". "
        + " ".join(w.notes),
        "",
        "The requests' statements, by how often a sale runs them:",
        "",
        "| Statement (abbreviated) | Per sale | Of them prepared |",
        "|---|---:|---:|",
        *[
            f"| `{sql.replace('|', '¦')}` | {count / n:.2f} | {prepared / n:.2f} |"
            for sql, count, prepared in w.statements
        ],
        "",
        "One sale (the median by round trips), round trip by round trip (statements not "
        "marked were prepared):",
        "",
        "```",
        *[
            f"{k:2}. {' | '.join(f) or '(the statement before, continued)'}"
            for k, f in enumerate(w.one_sale, start=1)
        ],  # fmt: skip
        "```",
        "",
    ]
    return lines


def health_section(r: Results) -> list[str]:
    h = r.health
    lines = [
        f"### (3) Other requests against `GET /v1/health`, {HEALTH_CONNECTIONS} connections",
        "",
        "| Request | Requests/s (median) | Each round | vs health around it (median) | Each round "
        "| p50 | p99 | Worker CPU per request | PostgreSQL backends' CPU per request "
        "| Commits, rollbacks per request |",
        "|---|---:|---|---:|---|---:|---:|---:|---:|---|",
    ]
    titles = {"health": "`GET /v1/health`", "top-up": "top-up (shopper, gateway)",
              "me": "`GET /v1/me`", "refund": "refund (till)"}  # fmt: skip
    for kind in ("health", *HEALTH_KINDS):
        slices = h.of(kind)
        rates = [s.wrk.per_second for s in slices]
        if kind == "health":
            ratio, each_ratio = "100%", ""
        else:
            ratios = h.ratios(kind)
            ratio = f"{statistics.median(ratios):.1%}"
            each_ratio = ", ".join(f"{v:.0%}" for v in ratios)

        def median(pick: Callable[[Slice], float], slices=slices) -> float:
            return statistics.median(pick(s) for s in slices)

        lines.append(
            f"| {titles[kind]} | {statistics.median(rates):,.0f} | "
            f"{', '.join(f'{v:,.0f}' for v in rates)} | {ratio} | {each_ratio} | "
            f"{median(lambda s: s.wrk.latency_ms['p50']):.1f} ms | "
            f"{median(lambda s: s.wrk.latency_ms['p99']):.1f} ms | "
            f"{median(lambda s: s.cpu_ms_per_request('workers')):.2f} ms | "
            f"{median(lambda s: s.cpu_ms_per_request('postgres backends')):.2f} ms | "
            f"{hundredths(median(lambda s: s.transactions[0] / s.wrk.ok))}, "
            f"{hundredths(median(lambda s: s.transactions[1] / s.wrk.ok))} |"
        )
    d = h.deliveries
    lines += [
        "",
        f"Checks: the ledger verified; {d.events:,} events committed during the capture and "
        f"(3), {d.received:,} deliveries, every one of the {d.streams} streams received every "
        "event it may see.",
        "",
    ]
    return lines


# --------------------------------------------------------------------------------------------


def machine_description(admin: Engine) -> dict[str, str]:
    machine = rt.machine_description(admin)
    del machine["Open files limit"]
    wrk = subprocess.run([WRK, "--version"], capture_output=True, text=True)
    tcpdump = subprocess.run([TCPDUMP, "--version"], capture_output=True, text=True)
    machine["Load generator"] = (wrk.stdout + wrk.stderr).splitlines()[0].split(" Copyright")[0]
    machine["Capture"] = (tcpdump.stdout + tcpdump.stderr).splitlines()[0]
    machine["Client and server"] = (
        "same machine: PostgreSQL, the gunicorn workers, wrk, the stream client, pgbench and "
        "the bench share the cores, and so does whatever else runs on it (shown per slice as "
        "*other work*)"
    )
    return machine


def check_tools() -> None:
    missing = [tool for tool in (WRK, "pgbench", TCPDUMP) if shutil.which(tool) is None]
    if missing:
        raise SystemExit(f"missing: {', '.join(missing)}; install them: {INSTALL_HINT}")


def parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.http", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--quick", action="store_true",
        help="short slices, 2 rounds: a sanity check while developing, not a figure",
    )  # fmt: skip
    parser.add_argument("--rounds", type=int, help="rounds of slices (default 3)")
    parser.add_argument(
        "--slice-s", type=int,
        help="seconds of a sales or pgbench slice (default 20); part (3)'s are half as long",
    )  # fmt: skip
    add_doc_option(parser)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    # Stopped with kill: unwind as for Ctrl-C, so that the server, the stream client and
    # tcpdump are stopped and the databases dropped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    arguments = parse_arguments(argv)
    check_tools()
    settings = QUICK if arguments.quick else FULL
    if arguments.rounds:
        settings = replace(settings, rounds=arguments.rounds)
    if arguments.slice_s:
        settings = replace(settings, slice_s=arguments.slice_s,
                           health_slice_s=arguments.slice_s / 2)  # fmt: skip
    doc = arguments.doc or (None if arguments.quick else DEFAULT_DOC)
    rt.raise_open_files_limit()
    for running in rt.other_benchmarks_running():
        print(f"warning: other work shares the machine: {running[:100]}")
    admin = admin_engine(os.environ.get(ADMIN_URL_ENV, DEFAULT_ADMIN_URL))
    machine = machine_description(admin)
    for name, value in machine.items():
        print(f"{name}: {value}")
    log_dir = Path(tempfile.mkdtemp(prefix="omnicard-bench-http-"))
    print(f"server logs and the capture: {log_dir}")
    try:
        results = run_everything(admin, settings, log_dir)
    finally:
        for name in (DATABASE, PGBENCH_DATABASE):
            with suppress(Exception):
                drop_database(admin, name)
        admin.dispose()
    print_summary(results)
    if doc is not None:
        write_doc(doc.resolve(), results, machine)
    # The capture and the wrk files are large; the server logs stay for a look.
    with suppress(OSError):
        (log_dir / "postgres.pcap").unlink()


if __name__ == "__main__":
    main()

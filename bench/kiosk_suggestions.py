"""How long the kiosk's "you might also like" takes on a big history.

A fresh database (SQLite file and/or PostgreSQL), made by the migrations, gets stores with a
kiosk and a till each, shoppers, 10,000 products each sold in most stores, 1,000,000 kiosk
taps in kiosk sessions of 1 to 9 taps, and sales of 1 to 5 lines: bulk inserts (COPY on
PostgreSQL), not the services, so that it takes minutes and not hours. Taps and sales lean
on popular products and stay mostly within one category per session or basket, as shoppers
do. ``app.kiosk.counts.recount`` then computes the co-occurrence counts the services keep up
to date as taps and sales come in.

Measured: ``app.kiosk.suggestions.suggest`` as the kiosk's tap service calls it (a store, the
product on the screen, the session's earlier taps, a joined shopper for some), one call at a
time on one connection, after warm-up calls; and a whole tap through
``app.kiosk.services.record_tap`` (resolving the tag, the kiosk session, the counts, the
screen's payload with its suggestions, the event), rolled back.

Run from the repository root (appends its results to docs/benchmarks.md):

    .venv/bin/python -m bench.kiosk_suggestions

Smaller, for a try: ``--products 500 --taps 20000 --sales 5000 --calls 200 --no-doc``.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import statistics
import subprocess
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlalchemy
from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine, func, insert, select, text
from sqlalchemy.pool import NullPool

from app import create_app
from app.auth.principal import Principal
from app.auth.services import create_staff
from app.catalog.models import Product, StoreProduct
from app.core.db import database
from app.core.settings import settings
from app.customers.services import sign_up
from app.kiosk import counts
from app.kiosk.models import KioskSession, KioskTap
from app.kiosk.services import TapRead, record_tap
from app.kiosk.suggestions import suggest
from app.sales.models import Sale, SaleLine
from app.sales.services import make_sale
from app.stores.services import create_store, register_device

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DOC = ROOT / "docs" / "benchmarks.md"
ADMIN_URL_ENV = "OMNICARD_BENCH_POSTGRES_URL"
DEFAULT_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
BENCH_DATABASE = "omnicard_bench_kiosk"

STORES = 10
CATEGORIES = 50
DAYS = 60
CHUNK = 20_000
#: The share of kiosk sessions joined by a shopper, and of sales to a known shopper.
KNOWN_SESSIONS = 0.2
KNOWN_SALES = 0.1


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--products", type=int, default=10_000)
    parser.add_argument("--taps", type=int, default=1_000_000)
    parser.add_argument("--sales", type=int, default=200_000)
    parser.add_argument("--shoppers", type=int, default=1_000)
    parser.add_argument("--calls", type=int, default=2_000, help="suggest() calls measured")
    parser.add_argument("--tap-calls", type=int, default=300, help="whole taps measured")
    parser.add_argument("--seed", type=int, default=15)
    parser.add_argument("--doc", type=Path, default=DEFAULT_DOC)
    parser.add_argument("--no-doc", action="store_true", help="print only")
    parser.add_argument("--sqlite-path", type=Path, default=None)
    return parser.parse_args(argv)


# -- the data ----------------------------------------------------------------------------------


class Catalog:
    """Products by category, with a popularity that falls off like Zipf's law."""

    def __init__(self, ids: list[int], rng: random.Random):
        self.ids = ids
        self.category = {pid: i % CATEGORIES for i, pid in enumerate(ids)}
        self.by_category: dict[int, list[int]] = {}
        for pid in ids:
            self.by_category.setdefault(self.category[pid], []).append(pid)
        self.weights = {c: [1 / (rank + 1) for rank in range(len(members))]
                        for c, members in self.by_category.items()}  # fmt: skip
        self.rng = rng

    def basket(self, size: int) -> list[int]:
        """Mostly one category, sometimes a product from anywhere."""
        rng = self.rng
        category = rng.randrange(CATEGORIES)
        members, weights = self.by_category[category], self.weights[category]
        chosen = rng.choices(members, weights, k=size)
        return [rng.choice(self.ids) if rng.random() < 0.15 else pid for pid in chosen]


def _bulk(s, table, rows):
    for i in range(0, len(rows), CHUNK):
        s.execute(insert(table), rows[i : i + CHUNK])


def _copy(s, table_name: str, columns: list[str], rows) -> None:
    """PostgreSQL's COPY through psycopg: the fastest way in."""
    raw = s.connection().connection.dbapi_connection
    statement = f"COPY {table_name} ({', '.join(columns)}) FROM STDIN"
    with raw.cursor() as cursor, cursor.copy(statement) as copy:
        for row in rows:
            copy.write_row(row)


def _load(s, dialect: str, table, columns: list[str], rows) -> None:
    if dialect == "postgresql":
        _copy(s, table.name, columns, rows)
    else:
        batch = []
        for row in rows:
            batch.append(dict(zip(columns, row, strict=True)))
            if len(batch) == CHUNK:
                s.execute(insert(table), batch)
                batch = []
        if batch:
            s.execute(insert(table), batch)


def populate(app, args, rng: random.Random) -> dict:
    """Everything the bench needs; returns what the calls pick from."""
    sessions = database(app).sessions
    timings = {}
    with app.app_context():
        s = sessions()
        dialect = s.get_bind().dialect.name
        started = time.perf_counter()
        stores, kiosks, tills = [], [], []
        for n in range(STORES):
            store = create_store(
                s, code=f"bench-{n}", name=f"Bench store {n}", currency=settings().currency
            )
            kiosk, _ = register_device(s, store_id=store.id, kind="kiosk", name="kiosk")
            till, _ = register_device(s, store_id=store.id, kind="pos", name="till")
            stores.append(store.id)
            kiosks.append(kiosk)
            tills.append(till)
        cashier = create_staff(
            s, settings(), email="cashier@bench.test", name="Cashier", role="cashier",
            password="bench password long", staff_code="B0001", pin="2468", store_id=stores[0],
        )  # fmt: skip
        customers = []
        for n in range(args.shoppers):
            _, customer = sign_up(
                s, settings(), email=f"shopper{n}@bench.test", password="bench password long",
                name="Shop",
            )  # fmt: skip
            customers.append(customer.id)
        s.commit()

        now = datetime.now(UTC)
        _bulk(s, Product.__table__, [
            {"sku": f"B-{n:06d}", "barcode": None, "name": f"Bench product {n}",
             "description": "", "category": f"category-{n % CATEGORIES}",
             "price_minor": 100 + n % 900, "currency": "USD", "image_url": "", "active": True,
             "created_at": now, "updated_at": now, "extra": {}}
            for n in range(args.products)
        ])  # fmt: skip
        product_ids = list(s.scalars(select(Product.id).where(Product.sku.like("B-%"))))
        product_ids.sort()
        catalog = Catalog(product_ids, rng)
        carried = {store: set() for store in stores}
        rows = []
        for pid in product_ids:
            for store in stores:
                if rng.random() < 0.8:
                    carried[store].add(pid)
                    rows.append({"product_id": pid, "store_id": store, "in_stock": True,
                                 "updated_at": now})  # fmt: skip
        _bulk(s, StoreProduct.__table__, rows)
        s.commit()

        # One real sale gives the bench sales a ledger transaction to point at.
        principal = Principal(
            "cashier", staff_id=cashier.id, role="cashier", device_id=tills[0].id,
            device_kind="pos", store_id=stores[0],
        )  # fmt: skip
        first = s.scalar(select(Product).where(Product.id == product_ids[0]))
        real = make_sale(
            s, settings(), principal, presented=None, lines=[(first.sku, 1)],
            tenders=[("cash", first.price_minor)],
        ).sale  # fmt: skip
        ledger_transaction_id, shift_id = real.ledger_transaction_id, real.shift_id
        s.commit()
        timings["base data"] = time.perf_counter() - started

        started = time.perf_counter()
        session_id = (s.scalar(select(func.max(KioskSession.id))) or 0) + 1
        first_session = session_id
        session_rows, tap_rows = [], []
        taps_left = args.taps
        start = now - timedelta(days=DAYS)
        while taps_left > 0:
            size = min(rng.randint(1, 9), taps_left)
            taps_left -= size
            i = rng.randrange(STORES)
            store, kiosk = stores[i], kiosks[i].id
            customer = rng.choice(customers) if rng.random() < KNOWN_SESSIONS else None
            at = start + timedelta(seconds=rng.randrange(DAYS * 86400))
            session_rows.append(
                (
                    session_id,
                    kiosk,
                    store,
                    customer,
                    at,
                    at + timedelta(seconds=10 * size),
                    at + timedelta(minutes=5),
                )
            )
            for k, pid in enumerate(catalog.basket(size)):
                tapped = at + timedelta(seconds=10 * k)
                tap_rows.append((kiosk, store, uuid.uuid4().hex, tapped, tapped, "product", pid,
                                 None, customer, session_id, ""))  # fmt: skip
            session_id += 1
        _load(s, dialect, KioskSession.__table__,
              ["id", "device_id", "store_id", "customer_id", "started_at", "last_tap_at",
               "ended_at"], session_rows)  # fmt: skip
        _load(s, dialect, KioskTap.__table__,
              ["device_id", "store_id", "tap_ref", "tapped_at", "received_at", "kind",
               "product_id", "category", "customer_id", "kiosk_session_id", "detail"],
              tap_rows)  # fmt: skip
        s.commit()
        del tap_rows
        timings[f"{args.taps:,} taps in {session_id - first_session:,} sessions"] = (
            time.perf_counter() - started
        )

        started = time.perf_counter()
        sale_id = (s.scalar(select(func.max(Sale.id))) or 0) + 1
        first_sale = sale_id
        sale_rows, line_rows = [], []
        for _ in range(args.sales):
            i = rng.randrange(STORES)
            customer = rng.choice(customers) if rng.random() < KNOWN_SALES else None
            at = start + timedelta(seconds=rng.randrange(DAYS * 86400))
            basket = list(dict.fromkeys(catalog.basket(rng.randint(1, 5))))
            total = 0
            for n, pid in enumerate(basket, start=1):
                quantity = rng.randint(1, 3)
                line_rows.append((sale_id, n, pid, "B", "Bench product", quantity, 100,
                                  100 * quantity, 0, 0))  # fmt: skip
                total += 100 * quantity
            sale_rows.append((sale_id, stores[i], tills[i].id, cashier.id,
                              customer, None, None, "USD", total, 0, ledger_transaction_id,
                              shift_id, at))  # fmt: skip
            sale_id += 1
        _load(s, dialect, Sale.__table__,
              ["id", "store_id", "device_id", "cashier_id", "customer_id", "card_id",
               "identified_by", "currency", "total_minor", "stars_earned",
               "ledger_transaction_id", "shift_id", "created_at"], sale_rows)  # fmt: skip
        _load(s, dialect, SaleLine.__table__,
              ["sale_id", "line_no", "product_id", "sku", "name", "quantity",
               "unit_price_minor", "line_total_minor", "stars_earned", "refunded_quantity"],
              line_rows)  # fmt: skip
        if dialect == "postgresql":
            for table in ("kiosk_sessions", "sales"):
                s.execute(text(
                    f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                    f"(SELECT max(id) FROM {table}))"
                ))  # fmt: skip
        s.commit()
        timings[f"{sale_id - first_sale:,} sales, {len(line_rows):,} lines"] = (
            time.perf_counter() - started
        )
        del sale_rows, line_rows

        started = time.perf_counter()
        counts.recount(s)
        s.commit()
        timings["counts (recount)"] = time.perf_counter() - started
        if dialect == "postgresql":
            with (
                database(app).engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c
            ):
                c.execute(text("VACUUM (ANALYZE)"))
        else:
            s.execute(text("ANALYZE"))
            s.commit()
        pair_rows = s.scalar(text("SELECT count(*) FROM kiosk_pair_counts"))
        s.close()
    return {
        "stores": stores,
        "kiosks": kiosks,
        "customers": customers,
        "catalog": catalog,
        "carried": carried,
        "timings": timings,
        "pair_rows": pair_rows,
    }


# -- the measurements --------------------------------------------------------------------------


def percentile(samples: list[float], p: float) -> float:
    ordered = sorted(samples)
    k = max(0, min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1))))
    return ordered[k]


def measure_suggest(app, world: dict, calls: int, rng: random.Random) -> dict:
    sessions = database(app).sessions
    catalog = world["catalog"]
    samples, empty = [], 0
    with app.app_context():
        s = sessions()
        for n in range(calls + calls // 10):
            i = rng.randrange(STORES)
            store = world["stores"][i]
            session_products = catalog.basket(rng.randint(1, 5))
            product_id = session_products[-1]
            customer = rng.choice(world["customers"]) if rng.random() < 0.3 else None
            started = time.perf_counter()
            found = suggest(
                s,
                store_id=store,
                product_id=product_id,
                session_product_ids=list(dict.fromkeys(reversed(session_products))),
                customer_id=customer,
                limit=4,
            )
            elapsed = time.perf_counter() - started
            s.rollback()
            if n >= calls // 10:  # the first tenth warms up
                samples.append(elapsed * 1000)
                empty += not found
        s.close()
    return {"samples": samples, "empty": empty}


def measure_taps(app, world: dict, calls: int, rng: random.Random) -> list[float]:
    """Whole taps through the kiosk's tap service, each rolled back."""
    sessions = database(app).sessions
    catalog = world["catalog"]
    samples = []
    with app.app_context():
        s = sessions()
        skus = dict(s.execute(select(Product.id, Product.sku)).all())
        for n in range(calls + calls // 10):
            i = rng.randrange(STORES)
            kiosk = s.get(type(world["kiosks"][i]), world["kiosks"][i].id)
            [pid] = catalog.basket(1)
            read = TapRead(
                tap_ref=uuid.uuid4().hex,
                tapped_at=datetime.now(UTC),
                uris=(f"https://shop.example/p/{skus[pid]}",),
            )
            started = time.perf_counter()
            record_tap(s, kiosk, read, idle_s=settings().kiosk_session_idle_s)
            s.flush()
            elapsed = time.perf_counter() - started
            s.rollback()
            if n >= calls // 10:
                samples.append(elapsed * 1000)
        s.close()
    return samples


# -- running it -------------------------------------------------------------------------------


def migrate(app) -> None:
    with database(app).engine.begin() as connection:
        config = Config(str(ROOT / "alembic.ini"))
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


def run_one(kind: str, args, workdir: Path) -> dict:
    rng = random.Random(args.seed)
    admin = None
    if kind == "sqlite":
        path = args.sqlite_path or workdir / "kiosk-bench.sqlite3"
        if path.exists():
            path.unlink()
        url = f"sqlite:///{path}"
    else:
        admin_url = os.environ.get(ADMIN_URL_ENV, DEFAULT_ADMIN_URL)
        admin = create_engine(admin_url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
        with admin.connect() as c:
            c.execute(text(f'DROP DATABASE IF EXISTS "{BENCH_DATABASE}" WITH (FORCE)'))
            c.execute(text(f'CREATE DATABASE "{BENCH_DATABASE}"'))
        url = admin.url.set(database=BENCH_DATABASE).render_as_string(hide_password=False)
    # Cheap password hashing: the shoppers are made through the sign-up service.
    app = create_app({"DATABASE_URL": url, "ARGON2_TIME_COST": 1, "ARGON2_MEMORY_KIB": 1024})
    try:
        print(f"[{kind}] migrating")
        migrate(app)
        print(f"[{kind}] generating data")
        world = populate(app, args, rng)
        for what, seconds in world["timings"].items():
            print(f"[{kind}]   {what}: {seconds:.1f} s")
        print(f"[{kind}] {args.calls} suggest() calls")
        suggested = measure_suggest(app, world, args.calls, rng)
        print(f"[{kind}] {args.tap_calls} whole taps")
        taps = measure_taps(app, world, args.tap_calls, rng) if args.tap_calls else []
        version = ""
        if kind == "postgresql":
            with database(app).engine.connect() as c:
                version = c.execute(text("SHOW server_version")).scalar_one()
        else:
            import sqlite3

            version = sqlite3.sqlite_version
        return {
            "kind": kind,
            "version": version,
            "world": world,
            "suggest": suggested,
            "taps": taps,
        }
    finally:
        database(app).engine.dispose()
        if admin is not None:
            with admin.connect() as c:
                c.execute(text(f'DROP DATABASE IF EXISTS "{BENCH_DATABASE}" WITH (FORCE)'))
            admin.dispose()


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _memory_gib() -> float:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 1024**2
    except OSError:
        pass
    return 0.0


def _commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
            check=True,
        ).stdout.strip()  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def report(results: list[dict], args, argv: list[str]) -> str:
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    command_line = " ".join([".venv/bin/python -m bench.kiosk_suggestions", *argv])
    lines = [
        "# Kiosk suggestion benchmarks",
        "",
        f"Written by `bench/kiosk_suggestions.py` on {when}, at commit `{_commit()}`. Running "
        "the bench again appends another section like this one.",
        "",
        "## Command",
        "",
        "Run from the repository root:",
        "",
        "```",
        command_line,
        "```",
        "",
        "## Machine",
        "",
        f"- **CPU**: {_cpu_model()}, {os.cpu_count()} cores",
        f"- **RAM**: {_memory_gib():.1f} GiB",
        f"- **OS**: {platform.platform()}",
        *[
            f"- **{'PostgreSQL' if r['kind'] == 'postgresql' else 'SQLite'}**: {r['version']}"
            for r in results
        ],
        f"- **Python**: {platform.python_implementation()} {platform.python_version()}",
        f"- **Libraries**: SQLAlchemy {sqlalchemy.__version__}",
        "- **Client and server**: same machine (PostgreSQL shares the 2 cores with the bench)",
        "",
        "## What is measured",
        "",
        f"A fresh database made by the migrations, with {STORES} stores (a kiosk and a till "
        f"each), {args.shoppers} shoppers, {args.products:,} products in {CATEGORIES} "
        "categories (each sold in a store with probability 0.8), "
        f"{args.taps:,} kiosk taps in sessions of 1 to 9 taps and {args.sales:,} sales of 1 to "
        f"5 lines over {DAYS} days, loaded in bulk; {KNOWN_SESSIONS:.0%} of the sessions and "
        f"{KNOWN_SALES:.0%} of the sales are a known shopper's. Products are picked mostly "
        "within one category per session "
        "or basket, with Zipf-like popularity. `app.kiosk.counts.recount` then computes the "
        "co-occurrence counts the services otherwise keep up to date on every tap and sale.",
        "",
        f"**suggest()**: {args.calls:,} calls (after {args.calls // 10:,} warm-up calls) of "
        "`app.kiosk.suggestions.suggest(limit=4)` one after another on one connection, as the "
        "tap service makes them: a random store, the product on the screen and 0 to 4 "
        "earlier taps of the session, a joined shopper in 30% of the calls. "
        f"**Whole tap**: {args.tap_calls:,} product taps through "
        "`app.kiosk.services.record_tap` (tag resolved, kiosk session, counts updated, the "
        "screen's payload with its suggestions, the event), each flushed and rolled back. "
        "Times are `time.perf_counter()` around the call, in milliseconds.",
        "",
        "## Figures",
        "",
        "| Database | Measurement | p50 ms | p99 ms | mean ms | max ms |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for r in results:
        name = "PostgreSQL" if r["kind"] == "postgresql" else "SQLite"
        for what, samples in (("suggest()", r["suggest"]["samples"]), ("whole tap", r["taps"])):
            if not samples:
                continue
            lines.append(
                f"| {name} | {what} | {percentile(samples, 50):.2f} | "
                f"{percentile(samples, 99):.2f} | {statistics.fmean(samples):.2f} | "
                f"{max(samples):.2f} |"
            )
    lines += ["", "Loading (seconds):", ""]
    for r in results:
        name = "PostgreSQL" if r["kind"] == "postgresql" else "SQLite"
        parts = ", ".join(f"{what} {sec:.0f}" for what, sec in r["world"]["timings"].items())
        lines.append(
            f"- {name}: {parts}; {r['world']['pair_rows']:,} pair-count rows; "
            f"{r['suggest']['empty']} of the measured calls found nothing to suggest."
        )
    return "\n".join(lines) + "\n"


def main(argv=None) -> str:
    import sys

    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    kinds = ("sqlite", "postgresql") if args.db == "both" else (args.db,)
    with tempfile.TemporaryDirectory(prefix="kiosk-bench-") as workdir:
        results = [run_one(kind, args, Path(workdir)) for kind in kinds]
    text_ = report(results, args, argv)
    print(text_)
    if not args.no_doc:
        existing = args.doc.read_text() if args.doc.exists() else ""
        args.doc.write_text(existing.rstrip("\n") + "\n\n" + text_)
        print(f"appended to {args.doc}")
    return text_


if __name__ == "__main__":
    main()

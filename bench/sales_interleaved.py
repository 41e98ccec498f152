"""What events cost the sales, with the machine's drift cancelled: events on and off in
alternating slices of one run, instead of separate runs minutes apart.

Run by hand from the repository root (it is not part of the test suite)::

    .venv/bin/python -m bench.sales_interleaved              # 40 slices of 2 s, ~2 minutes
    .venv/bin/python -m bench.sales_interleaved --slices 20  # a quicker look

This virtual machine's speed drifts by a third over minutes (the same "events off" run gave 122
and 195 sales/s three minutes apart), which swamps the few percent that events cost when on and
off are measured in separate runs, as ``bench.realtime`` part (2) does. Here the same 8 sale
workers (as in part (2): each an app process with its event hub running, selling lattes through
``make_sale`` as its own till, one commit per sale) switch ``emit`` on and off together every
slice, in the order on, off, off, on, on, off, ... so that a steady drift hits both alike
(after a warm-up second, not counted). The production server (gunicorn, gevent) holds the
sequencer's lock and 100 streams are open, as in part (2). The figure is the sales committed
in the "on" slices over those in the "off" slices. ``bench.realtime`` takes its part (2)
verdict from this run.
"""

from __future__ import annotations

import argparse
import itertools
import math
import multiprocessing
import statistics
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from bench import realtime as rt
from bench.ledger import (
    DEFAULT_ADMIN_URL,
    admin_engine,
    create_fresh_database,
    drop_database,
    migrate,
    verify_ledger,
)

DATABASE = "omnicard_bench_interleaved"
#: Sales a worker may make in a second on a fast machine: its shoppers get cards enough.
MOST_SALES_PER_S = 40
#: The workers sell this long, events on, before the first slice: their first sales pay for
#: caches and connections, which would otherwise count against the first ("on") slice.
WARMUP_S = 1.0


def events_on(slice_number: int) -> bool:
    """On, off, off, on, on, off, off, on, ...: each pair of pairs is balanced in time."""
    return (slice_number % 2 == 0) == ((slice_number // 2) % 2 == 0)


def sale_worker(url: str, till, shoppers, start, slice_s: float, slices: int, results) -> None:
    from app.core.db import database, session
    from app.core.settings import settings
    from app.events import changes, outbox
    from app.events.api import hub as event_hub_of
    from app.sales import services as sales

    app = rt.bench_app(url, events_hub=True)
    emit = outbox.emit

    def emit_nothing(*_args, **_kwargs) -> None:
        return None

    plan = rt.SalesPlan(
        url=url, number=0, till=till, shoppers=tuple(shoppers), events=True, warmup_s=0,
        duration_s=0,
    )  # fmt: skip
    sold = [0] * slices
    with app.app_context():
        event_hub = event_hub_of(app)
        s = session()
        balances = rt.fill_cards(s, plan)
        s.commit()
        results.put("ready")
        while time.monotonic() < start.value - WARMUP_S:
            time.sleep(0.001)
        for number in itertools.cycle(list(balances)):
            now_slice = int((time.monotonic() - start.value) // slice_s)  # < 0: warming up
            if now_slice >= slices:
                break
            on = now_slice < 0 or events_on(now_slice)
            outbox.emit = changes.emit = emit if on else emit_nothing
            if balances[number] < rt.LATTE_MINOR:
                if all(balance < rt.LATTE_MINOR for balance in balances.values()):
                    raise RuntimeError("the cards ran dry: fewer or shorter slices")
                continue
            outcome = sales.make_sale(
                s, settings(), till.principal, presented={"card_number": number},
                lines=[(rt.LATTE_SKU, 1)], tenders=[("card_balance", rt.LATTE_MINOR)],
            )  # fmt: skip
            s.commit()
            balances[number] = outcome.card_balance_after
            if now_slice >= 0 and int((time.monotonic() - start.value) // slice_s) == now_slice:
                sold[now_slice] += 1  # committed inside the slice it began in
        event_hub.stop()
    database(app).engine.dispose()
    results.put(sold)


@dataclass(frozen=True)
class Interleaved:
    """One interleaved run: the sales of each slice, the CPU the groups of processes had
    used at each slice's end, and the delays of the sales' events to the streams."""

    slice_s: float
    sold: list[int]
    readings: list[dict[str, float]]
    delays_ms: list[float]

    @property
    def on(self) -> list[int]:
        return [n for k, n in enumerate(self.sold) if events_on(k)]

    @property
    def off(self) -> list[int]:
        return [n for k, n in enumerate(self.sold) if not events_on(k)]

    @property
    def ratio(self) -> float:
        return sum(self.on) / sum(self.off)

    def report(self) -> list[str]:
        on, off, slice_s, delays = self.on, self.off, self.slice_s, self.delays_ms
        blocks = [sum(on[i : i + 2]) / sum(off[i : i + 2]) for i in range(0, len(on) - 1, 2)]
        on_rate, off_rate = sum(on) / len(on) / slice_s, sum(off) / len(off) / slice_s
        lines = [
            f"sales per slice of {slice_s:g} s (on, off, off, on, ...): {self.sold}",
            f"events on {on_rate:,.0f}/s, off {off_rate:,.0f}/s: on is {self.ratio:.1%} of off "
            f"(blocks of four slices: median {statistics.median(blocks):.1%}, from "
            f"{min(blocks):.0%} to {max(blocks):.0%})",
            "sales' events reaching the streams while events were on, from the sale's emit "
            f"(inside its transaction) to the socket: p50 {rt.percentile(delays, 0.5):.0f} ms, "
            f"p99 {rt.percentile(delays, 0.99):.0f} ms, max {delays[-1]:.0f} ms "
            f"({len(delays):,} events)",
            "CPU per sale (ms), on / off / the difference:",
        ]
        readings, slices = self.readings, len(self.sold)
        for name in readings[0]:
            spent = [readings[k + 1][name] - readings[k][name] for k in range(slices)]
            per_on = sum(c for k, c in enumerate(spent) if events_on(k)) / sum(on) * 1000
            per_off = sum(c for k, c in enumerate(spent) if not events_on(k)) / sum(off) * 1000
            lines.append(f"  {name}: {per_on:.2f} / {per_off:.2f} / {per_on - per_off:+.2f}")
        return lines


def measure(slices: int = 40, slice_s: float = 2.0) -> Interleaved:
    """An interleaved run on a fresh database of its own (dropped at the end)."""
    admin = admin_engine(DEFAULT_ADMIN_URL)
    url = create_fresh_database(admin, DATABASE)
    try:
        migrate(url)
        setup_app = rt.bench_app(url, events_hub=False)
        spent_minor = MOST_SALES_PER_S * (slices * slice_s + WARMUP_S) * rt.LATTE_MINOR
        per_card_minor = setup_app.config["CARD_MAX_BALANCE_MINOR"] * rt.SHOPPERS_PER_TILL
        cards = math.ceil(spent_minor / per_card_minor)
        fixtures = rt.set_up(setup_app, rt.QUICK, cards_per_sale_shopper=cards)
        context = multiprocessing.get_context("spawn")
        start, results = context.Value("d", float("inf")), context.Queue()
        engine = rt.make_engine(url)
        with rt.Server(url, Path(tempfile.mkdtemp())) as server, rt.Subscribers() as streams:
            by_turn = [s for turn in zip(*fixtures.sale_shoppers, strict=True) for s in turn]
            streamed = by_turn[:100]
            streams.open(server.port, [s.token for s in streamed], len(streamed))
            rt.wait_for_sequencer(engine, server)
            workers = [
                context.Process(
                    target=sale_worker,
                    args=(url, till, fixtures.sale_shoppers[n], start, slice_s, slices, results),
                )
                for n, till in enumerate(fixtures.sale_tills)
            ]
            for worker in workers:
                worker.start()
            for _ in workers:
                if results.get(timeout=rt.SETUP_TIMEOUT_S) != "ready":
                    raise RuntimeError("a sale worker failed to set up")
            rt.wait_until_sequenced(engine)
            rt.wait_for_quiet_machine()
            start.value = time.monotonic() + 0.5 + WARMUP_S
            groups = {
                "sale workers": lambda: sum(rt.cpu_seconds(w.pid) for w in workers),
                "server": server.cpu_seconds,
                "subscribers": streams.cpu_seconds,
                "PostgreSQL": lambda: sum(rt.cpu_seconds(pid) for pid in rt.postgres_pids()),
                "machine": rt.machine_busy_seconds,
            }
            readings: list[dict[str, float]] = []
            sampler = threading.Thread(
                target=read_cpu_at_slice_ends,
                args=(groups, start.value, slice_s, slices, readings),
                daemon=True,
            )
            sampler.start()
            sold = [0] * slices
            for _ in workers:
                for n, count in enumerate(results.get(timeout=slices * slice_s + 120)):
                    sold[n] += count
            for worker in workers:
                worker.join()
            sampler.join()
            delays = sorted(ms for _, ms in streams.sale_delays_ms())
            rt.wait_until_sequenced(engine)
        engine.dispose()
        verify_ledger(url)
    finally:
        drop_database(admin, DATABASE)
    return Interleaved(slice_s, sold, readings, delays)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.sales_interleaved")
    parser.add_argument("--slices", type=int, default=40)
    parser.add_argument("--slice-s", type=float, default=2.0)
    arguments = parser.parse_args()
    rt.raise_open_files_limit()
    for line in measure(arguments.slices, arguments.slice_s).report():
        print(line)


def read_cpu_at_slice_ends(groups, start: float, slice_s: float, slices: int, readings) -> None:
    """The CPU seconds each group of processes has used, at the start and at each slice's end
    (the machine's: all its processes, busy time)."""
    for k in range(slices + 1):
        time.sleep(max(0.0, start + k * slice_s - time.monotonic()))
        readings.append({name: read() for name, read in groups.items()})


if __name__ == "__main__":
    main()

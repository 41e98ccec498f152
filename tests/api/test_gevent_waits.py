"""A gevent worker's psycopg connections wait in gevent's own loop
(``app.core.serving.wait_in_gevent_loop``, installed by ``gunicorn.conf.py``): while one
request waits for PostgreSQL the worker serves the others, every answer is its own, and a
wait with a deadline ends at it. Run in a process of its own, monkey-patched as a gunicorn
gevent worker is (the test process must not be)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
from sqlalchemy import make_url

from app.core.serving import wait_in_gevent_loop

SCRIPT = textwrap.dedent(
    """
    from gevent import monkey

    monkey.patch_all()

    import json
    import socket
    import sys
    import time

    import gevent
    import psycopg
    import psycopg.waiting
    from psycopg.errors import OperationalError

    from app.core.serving import use_gevent_waits, wait_in_gevent_loop

    use_gevent_waits()
    dsn = sys.argv[1]
    found = {"installed": psycopg.waiting.wait is wait_in_gevent_loop}

    # One connection waits half a second for PostgreSQL; the worker goes on meanwhile.
    ticks = []
    def tick():
        while True:
            ticks.append(time.monotonic())
            gevent.sleep(0.01)
    ticker = gevent.spawn(tick)
    with psycopg.connect(dsn) as slow:
        began = time.monotonic()
        found["slow"] = slow.execute("SELECT 7 FROM pg_sleep(0.5)").fetchone()[0]
        ended = time.monotonic()
    ticker.kill()
    found["ticks_while_waiting"] = sum(began < t < ended for t in ticks)

    # Twenty connections at once, each asking its own questions, in and out of pipelines.
    def ask(n):
        answers = []
        with psycopg.connect(dsn) as c:
            for i in range(30):
                answers.append(c.execute("SELECT %s::int * 1000 + %s::int", (n, i)).fetchone()[0])
            with c.pipeline():
                cursors = [c.execute("SELECT %s::text || '-' || %s::text", (n, i))
                           for i in range(10)]
            answers += [cur.fetchone()[0] for cur in cursors]
        return answers
    jobs = [gevent.spawn(ask, n) for n in range(20)]
    gevent.joinall(jobs, raise_error=True)
    found["answers_right"] = all(
        job.value == [n * 1000 + i for i in range(30)] + [f"{n}-{i}" for i in range(10)]
        for n, job in enumerate(jobs)
    )

    # A wait with a deadline, on a socket nothing ever comes to.
    quiet, _other_end = socket.socketpair()
    def never_ready():
        yield psycopg.waiting.Wait.R
        raise AssertionError("woken with nothing to read")
    began = time.monotonic()
    try:
        wait_in_gevent_loop(never_ready(), quiet.fileno(), timeout=0.2)
        found["deadline"] = "never ended"
    except OperationalError as ended:
        found["deadline"] = type(ended).__name__
    found["deadline_waited_s"] = round(time.monotonic() - began, 2)
    print(json.dumps(found))
    """
)


def test_a_gevent_workers_queries_wait_in_its_loop_and_each_gets_its_own_answer(
    db_kind, database_url
):
    if db_kind != "postgresql":
        pytest.skip("psycopg's waits are PostgreSQL's")
    dsn = make_url(database_url).set(drivername="postgresql").render_as_string(False)
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, dsn], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr[-3000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found["installed"] and found["slow"] == 7
    assert found["ticks_while_waiting"] >= 3  # about 50: the worker was not held up
    assert found["answers_right"]
    assert found["deadline"] == "_WaitTimeout" and 0.2 <= found["deadline_waited_s"] < 5


def test_the_wait_gives_back_what_the_generator_returns():
    """Without waiting at all: a generator that needs no socket answers at once."""

    def done_at_once():
        return "answer"
        yield  # a generator all the same

    assert wait_in_gevent_loop(done_at_once(), -1) == "answer"

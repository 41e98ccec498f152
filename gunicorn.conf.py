"""Production serving: ``gunicorn -c gunicorn.conf.py wsgi:app``.

gevent workers hold thousands of open event streams each: a stream is a greenlet waiting on
its queue, not a thread. Each worker process runs its own event hub (one LISTEN connection);
they share the work through PostgreSQL. Settings come from the environment.
"""

import gc
import multiprocessing
import os
import resource
import signal
import sys
import threading
import time

import gevent

bind = os.environ.get("OMNICARD_BIND", "127.0.0.1:8000")
workers = int(os.environ.get("WEB_CONCURRENCY", multiprocessing.cpu_count()))
worker_class = "gevent"
#: Open connections per worker: every live event stream is one.
worker_connections = int(os.environ.get("OMNICARD_WORKER_CONNECTIONS", "12000"))
# Streams stay open for hours; gevent workers still heartbeat to the arbiter on their own.
timeout = 60
graceful_timeout = 30
keepalive = 75
accesslog = os.environ.get("OMNICARD_ACCESS_LOG")  # off unless asked for
errorlog = "-"


def post_fork(server, worker):
    # Each stream is a socket: let the worker open as many as the system allows.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def post_worker_init(worker):
    # A request gunicorn refuses before the app sees it is answered in the API's error shape.
    from app.core.serving import answer_refusals_in_json

    answer_refusals_in_json()
    # The app is loaded: its hundreds of thousands of long-lived objects (modules, mappers,
    # schemas) need never be looked at by the garbage collector again. Without this, each
    # full collection walks them all and stalls every open stream for a tenth of a second.
    gc.freeze()
    # Handing one event to a thousand streams briefly holds a few thousand objects; with the
    # default threshold (700) that alone set off several collections per event.
    gc.set_threshold(20_000, 10, 10)
    # psycopg waits for PostgreSQL in gevent's loop, one watcher a wait (its own choice under
    # gevent, gevent's emulation of poll(), took 7.5% of a sale's instructions).
    if worker.cfg.worker_class_str == "gevent":
        from app.core.serving import use_gevent_waits

        use_gevent_waits()
    # This worker sends a streamed response to an HTTP/1.1 client as chunks on the plain
    # socket: the event hub may write events to the live streams itself.
    if getattr(worker.cfg, "protocol", "http") == "http" and not worker.cfg.is_ssl:
        from app.events.api import write_streams_directly

        write_streams_directly(worker.wsgi)
    # SIGTERM (a stop, or a restart's old workers): gunicorn's own handler stops taking
    # connections and waits for the open ones to close, up to graceful_timeout; but a stream
    # never ends, nor does an idle keep-alive connection within keepalive. Omnicard ends the
    # streams at once and exits as soon as no request is in progress: one that moves money
    # finishes and answers first. (Gevent workers only: another worker class, chosen on the
    # command line, keeps gunicorn's own handling.)
    worker.omnicard_requests = 0
    worker.omnicard_idle = threading.Event()
    worker.omnicard_idle.set()
    if worker.cfg.worker_class_str == "gevent":
        signal.signal(signal.SIGTERM, lambda sig, frame: gevent.spawn(_stop_gracefully, worker))
        signal.siginterrupt(signal.SIGTERM, False)


def pre_request(worker, req):
    worker.log.debug("%s %s", req.method, req.path)
    worker.omnicard_requests += 1
    worker.omnicard_idle.clear()


def post_request(worker, req, environ, resp):
    worker.omnicard_requests -= 1
    if not worker.omnicard_requests:
        worker.omnicard_idle.set()


def _stop_gracefully(worker):
    from app.events.api import close_streams

    worker.alive = False  # no new connections; each open one closes after its answer
    close_streams(worker.wsgi)  # their clients resume from Last-Event-ID
    deadline = time.monotonic() + worker.cfg.graceful_timeout
    while worker.omnicard_requests and time.monotonic() < deadline:
        worker.omnicard_idle.wait(deadline - time.monotonic())
    # What is still open is idle keep-alive connections (or a request past graceful_timeout,
    # which gunicorn would cut as well): gunicorn's own quick exit (SIGQUIT) ends a gevent
    # worker the same way.
    sys.exit(0)


# gunicorn's control socket has one default path per user, so a second server on the same
# machine would fight over it: off unless a path is given.
control_socket = os.environ.get("OMNICARD_CONTROL_SOCKET", "")
control_socket_disable = not control_socket

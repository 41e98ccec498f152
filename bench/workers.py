"""What the benchmarks' worker processes share: how a worker reports a failure, and how the
bench hears its workers and stops them."""

from __future__ import annotations

import time
from dataclasses import dataclass
from queue import Empty

SETUP_TIMEOUT_S = 180.0  # seconds for every worker to start, connect and set up


@dataclass(frozen=True)
class Failed:
    worker: int
    error: str


class WorkerFailed(RuntimeError):
    pass


def collect(results, kind: type, count: int) -> list:
    """The next ``count`` messages, all of ``kind``; a worker's failure stops the run."""
    collected = []
    while len(collected) < count:
        try:
            message = results.get(timeout=SETUP_TIMEOUT_S)
        except Empty:
            raise WorkerFailed(f"no word from the workers for {SETUP_TIMEOUT_S:.0f} s") from None
        if isinstance(message, Failed):
            raise WorkerFailed(f"worker {message.worker} failed:\n{message.error}")
        if not isinstance(message, kind):
            raise WorkerFailed(f"expected {kind.__name__}, got {message!r}")
        collected.append(message)
    return collected


def first_failure(results) -> str:
    try:
        while True:
            message = results.get(timeout=10)
            if isinstance(message, Failed):
                return f"worker {message.worker} failed:\n{message.error}"
    except Empty:
        return "a worker did not reach the start line"


def stop_workers(workers, results) -> None:
    """Wait for every worker to end on its own; terminate (by its pid) any that does not."""
    deadline = time.monotonic() + 30
    for worker in workers:
        worker.join(timeout=max(0.1, deadline - time.monotonic()))
    for worker in workers:
        if worker.is_alive():
            worker.terminate()
            worker.join(timeout=10)
    try:  # whatever a failed run left in the queue, so that its feeder thread can finish
        while True:
            results.get_nowait()
    except Empty:
        pass
    results.close()
    results.join_thread()

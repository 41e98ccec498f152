"""The webhook worker: a thread in every serving process that sends the deliveries due.

It runs beside the process's event hub (``app.events.api.run_beside_hub``), which wakes it when
a sequencing round of its own has written deliveries; otherwise it looks once a second. Any
number of processes may run one: a delivery is claimed by one of them at a time (see
``deliver_due``).
"""

from __future__ import annotations

import logging
import threading

from sqlalchemy.engine import Engine

from app.webhooks.services import deliver_due, seconds_until_next_due

log = logging.getLogger(__name__)

#: How often the worker looks for due deliveries without being woken.
LOOK_EVERY_S = 1.0


class WebhookWorker:
    """Sends due webhook deliveries from this process (any number of processes may)."""

    def __init__(self, engine: Engine, settings: dict) -> None:
        self.engine, self.settings = engine, settings
        self.wake = threading.Event()
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, name="omnicard-webhooks", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def rows_written(self) -> None:
        """The sequencer wrote deliveries in this process: look now."""
        self.wake.set()

    def stop(self) -> None:
        self.stopping.set()
        self.wake.set()
        self.thread.join(timeout=10)

    def _run(self) -> None:
        wait_s = LOOK_EVERY_S
        while not self.stopping.is_set():
            self.wake.wait(wait_s)
            self.wake.clear()
            try:
                # While nothing is due, a look is one short read: it runs every second in
                # every serving process, beside the streams.
                due_in = seconds_until_next_due(self.engine)
                if due_in == 0:
                    while deliver_due(self.engine, **self.settings):
                        if self.stopping.is_set():
                            return
                    due_in = seconds_until_next_due(self.engine)
                # Due again at once only if another process claimed it meanwhile (and has
                # not yet leased it): look again shortly, not in a loop.
                wait_s = LOOK_EVERY_S if due_in is None else min(LOOK_EVERY_S, max(due_in, 0.05))
            except Exception:
                log.exception("webhook delivery round failed")
                wait_s = 0.5

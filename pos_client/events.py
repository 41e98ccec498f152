"""The till's view of the event stream: GET /v1/events with the cashier's session.

The server shows a till the changes of its store and, for half an hour, of any card presented
to it; the till uses them to keep the presented shopper's balance and Stars live on screen (a
top-up made from the shopper's phone in the queue shows at once). The follower resumes after
a dropped connection with Last-Event-ID and reconnects with backoff; it never raises.
"""

from __future__ import annotations

import contextlib
import json
import threading

import httpx

MAX_BACKOFF_S = 15.0


def parse_sse(lines):
    """Server-Sent Events from an iterator of text lines: (id, type, data) tuples."""
    event_id = event_type = None
    data: list[str] = []
    for line in lines:
        if line == "":
            if data:
                yield event_id, event_type or "message", "\n".join(data)
            event_type, data = None, []
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "id":
            event_id = value
        elif name == "event":
            event_type = value
        elif name == "data":
            data.append(value)


class EventFollower(threading.Thread):
    def __init__(self, till):
        super().__init__(name="till-events", daemon=True)
        self.till = till
        self.last_event_id: str | None = None
        self.connected = False
        self._stopping = threading.Event()
        self._restart = threading.Event()
        self._response = None
        self._lock = threading.Lock()

    def stop(self) -> None:
        self._stopping.set()
        self._close()
        self.join(timeout=5)

    def restart(self) -> None:
        """The session changed (a new cashier): follow with the new token."""
        self._restart.set()
        self._close()

    def _close(self) -> None:
        with self._lock:
            response = self._response
        if response is not None:
            with contextlib.suppress(Exception):  # closing from another thread may race the read
                response.close()

    def run(self) -> None:
        backoff = 0.5
        cfg = self.till.config
        timeout = httpx.Timeout(cfg.read_timeout_s + 20, connect=cfg.connect_timeout_s)
        with httpx.Client(base_url=cfg.api_url, timeout=timeout) as client:
            while not self._stopping.is_set():
                self._restart.clear()
                token = self.till.token
                if not token:
                    self._restart.wait(1.0)
                    continue
                headers = {"Authorization": f"Bearer {token}", "Accept": "text/event-stream"}
                if self.last_event_id:
                    headers["Last-Event-ID"] = self.last_event_id
                try:
                    with client.stream("GET", "/v1/events", headers=headers) as response:
                        with self._lock:
                            self._response = response
                        if response.status_code == 401:
                            self._restart.wait(5.0)  # the session ended: wait for a new one
                            continue
                        if response.status_code != 200:
                            raise httpx.HTTPStatusError(
                                "stream refused", request=response.request, response=response
                            )
                        self.connected = True
                        backoff = 0.5
                        for event_id, kind, data in parse_sse(response.iter_lines()):
                            if event_id:
                                self.last_event_id = event_id
                            self._handle(kind, data)
                            if self._stopping.is_set() or self._restart.is_set():
                                break
                except (httpx.HTTPError, OSError, RuntimeError, ValueError):
                    pass  # dropped, refused, closed by stop(): reconnect below
                finally:
                    self.connected = False
                    with self._lock:
                        self._response = None
                if self._stopping.is_set() or self._restart.is_set():
                    continue
                self._stopping.wait(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_S)

    def _handle(self, kind: str, data: str) -> None:
        try:
            event = json.loads(data)
        except ValueError:
            return
        body = event.get("data") or {}
        till = self.till
        shopper = till.shopper
        if shopper is None or shopper.card_id is None:
            return
        if kind == "card.balance_changed" and body.get("card_id") == shopper.card_id:
            till._set_available(shopper, body["balance"]["amount"])
            till.on_change("shopper")
        elif kind == "card.status_changed" and body.get("card_id") == shopper.card_id:
            with till._lock:
                shopper.status = body.get("status", shopper.status)
            till.on_change("shopper")

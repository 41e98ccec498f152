"""The kiosk daemon: taps in from the NFC reader, out to the API through the outbox.

Three parts on their own threads: the reader (store_devices.nfc.NfcReader, which reopens a
reader that was unplugged), the debouncer in its callback (a tag held on the reader, or
wobbling at the edge of its field, is one tap), and the sender, which sends the outbox's taps
to ``POST /v1/kiosk/taps`` one at a time, oldest first, and waits and tries again while the
API does not answer. A tap is in the outbox before anything is sent.
"""

from __future__ import annotations

import fcntl
import logging
import threading
import time
from collections.abc import Callable

from kiosk.api import Api, ApiError, Unreachable
from kiosk.config import Config
from kiosk.outbox import Outbox
from kiosk.tags import describe
from store_devices.nfc import NfcReader, Tap

log = logging.getLogger("kiosk")
TAPS_PATH = "/v1/kiosk/taps"


class Debouncer:
    """One tap per presentation: the tag on the reader now is not counted again, nor when it
    comes back within *debounce_s* after it was taken away; any other tag counts at once."""

    def __init__(self, debounce_s: float, clock: Callable[[], float] = time.monotonic):
        self.debounce_s = debounce_s
        self._clock = clock
        self._last_uid: str | None = None
        self._removed_at: float | None = None  # None while the last tag is still there
        self._lock = threading.Lock()

    def accept(self, tap: Tap) -> bool:
        with self._lock:
            now = self._clock()
            if tap.uid == self._last_uid and (
                self._removed_at is None or now - self._removed_at < self.debounce_s
            ):
                self._removed_at = None  # it is back: the wait starts again when it leaves
                return False
            self._last_uid, self._removed_at = tap.uid, None
            return True

    def removed(self, tap: Tap) -> None:
        with self._lock:
            if tap.uid == self._last_uid:
                self._removed_at = self._clock()


class Kiosk:
    """The daemon. `start()` and `stop()`; `run()` blocks until `stop()` (or a signal)."""

    def __init__(
        self,
        config: Config,
        *,
        on_event: Callable[[str, dict], None] | None = None,
        reader_options: dict | None = None,
    ):
        """*on_event(kind, data)*: "tap", "sent", "refused", "offline", "online", "reader".
        *reader_options*: passed on to the NfcReader (retry_s, open_frontend)."""
        self.config = config
        self._on_event = on_event
        config.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._lock_file = open(config.state_dir / "kiosk.lock", "w")  # noqa: SIM115
        try:
            fcntl.flock(self._lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock_file.close()
            raise RuntimeError(f"another kiosk daemon runs on {config.state_dir}") from None
        self.outbox = Outbox(config.outbox_path)
        self.api = Api(config.api_url, config.device_secret,
                       connect_timeout_s=config.connect_timeout_s,
                       read_timeout_s=config.read_timeout_s)  # fmt: skip
        self.debouncer = Debouncer(config.debounce_s)
        self.reader = NfcReader(config.reader, self._tap, on_status=self._status,
                                on_removed=self.debouncer.removed,
                                **(reader_options or {}))  # fmt: skip
        self.stopping = threading.Event()
        self._wake = threading.Event()
        self._sender: threading.Thread | None = None
        self.online: bool | None = None  # unknown until the first send
        self._stopped = False

    # the reader's side --------------------------------------------------------------------

    def _tap(self, tap: Tap) -> None:
        if not self.debouncer.accept(tap):
            log.debug("tag %s still on the reader: not counted again", tap.uid)
            return
        self.record(tap)

    def record(self, tap: Tap):
        """Writes the tap to the outbox and wakes the sender."""
        queued = self.outbox.add(uid=tap.uid, uris=tap.uris, texts=tap.texts,
                                 unreadable=tap.unreadable)  # fmt: skip
        seen = describe(tap)
        log.info("tap %s: %s %s (ref %s)", queued.id, seen["kind"],
                 seen.get("sku") or seen.get("category") or tap.uid, queued.tap_ref)  # fmt: skip
        self._event("tap", queued.summary())
        self._wake.set()
        return queued

    def _status(self, status: str) -> None:
        (log.warning if status.startswith("no reader") else log.info)(
            "NFC reader %s: %s", self.config.reader, status
        )
        self._event("reader", {"status": status})

    # the sender ---------------------------------------------------------------------------

    def _send_loop(self) -> None:
        while not self.stopping.is_set():
            queued = self.outbox.next_pending()
            if queued is None:
                self._wake.wait(1.0)
                self._wake.clear()
                continue
            if not self._send(queued) and self.stopping.wait(self.config.replay_interval_s):
                return

    def _send(self, queued) -> bool:
        """Sends one tap; False when it must wait (the API did not answer or cannot now)."""
        self.outbox.attempted(queued.id)
        try:
            answer = self.api.post(TAPS_PATH, queued.body, idempotency_key=queued.tap_ref)
        except Unreachable as e:
            self.outbox.failed_attempt(queued.id, {"code": "unreachable", "message": str(e)})
            self._offline(str(e))
            return False
        except ApiError as e:
            if e.retryable:
                self.outbox.failed_attempt(queued.id, e.body()["error"])
                self._offline(str(e))
                return False
            self.outbox.refused(queued.id, e.status, e.body()["error"])
            self._online()
            log.warning("tap %s refused by the API: %s", queued.id, e)
            self._event("refused", {"id": queued.id, "error": e.body()["error"]})
            return True
        self.outbox.sent(queued.id, 201, answer)
        self._online()
        tap = (answer or {}).get("tap") or {}
        log.info("tap %s sent: %s (server tap %s)", queued.id, tap.get("kind"), tap.get("id"))
        self._event("sent", {"id": queued.id, "tap": tap})
        return True

    def _offline(self, why: str) -> None:
        if self.online is not False:
            self.online = False
            log.warning("API unreachable, keeping taps to send later: %s", why)
            self._event("offline", {"why": why})

    def _online(self) -> None:
        if self.online is False:
            log.info("API back: sending %d waiting taps", self.outbox.pending_count())
        if self.online is not True:
            self.online = True
            self._event("online", {})

    def _event(self, kind: str, data: dict) -> None:
        if self._on_event is not None:
            try:
                self._on_event(kind, data)
            except Exception:
                log.exception("on_event callback failed")

    # life ---------------------------------------------------------------------------------

    def start(self) -> None:
        log.info("kiosk starting: API %s, reader %s, %d taps waiting", self.config.api_url,
                 self.config.reader or "(none)", self.outbox.pending_count())  # fmt: skip
        self._sender = threading.Thread(target=self._send_loop, name="kiosk-sender", daemon=True)
        self._sender.start()
        self.reader.start()

    def run(self) -> None:
        self.start()
        try:
            while not self.stopping.wait(0.5):
                pass
        finally:
            self.stop()

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        self.stopping.set()
        self._wake.set()
        self.reader.stop()
        if self._sender is not None:
            self._sender.join(self.config.read_timeout_s + 2)
            self._sender = None
        self.api.close()
        self.outbox.close()
        self._lock_file.close()
        log.info("kiosk stopped")

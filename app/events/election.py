"""Which process sequences, and how the others wake it: on PostgreSQL only (on SQLite the one
process sequences its own events).

Each process holds one listening connection (not one per stream). On it, once a second until
it succeeds, it tries for the sequencer's advisory lock: whoever holds it sequences, until its
connection goes. The same statement tells the others where the sequencer hears asks: a UDP
port of its own, which its listening connection names in its ``application_name`` with a
token. After a commit, a process that does not sequence asks it to look with one datagram (a
NOTIFY where no datagram can go: a NOTIFY is a transaction of its own, and they queue on one
lock). The connection LISTENs only for what the process must hear: asks, in the sequencer
(the NOTIFY fallback); announcements of the new top, in a process with streams open. A
wake-up is only a hint: the database rows are the truth, and a lost one only delays an event
until the hub's own look.
"""

from __future__ import annotations

import logging
import secrets
import socket
import threading
import time
from collections.abc import Callable

import psycopg

from app.core.db import POSTGRESQL_OPTIONS
from app.events.sequencing import EVENTS_CHANNEL, PlainConnection

log = logging.getLogger(__name__)

#: The NOTIFY channel of asks, where a datagram cannot go.
PENDING_CHANNEL = "omnicard_outbox"
#: Held by whichever process sequences events (PostgreSQL advisory lock key).
SEQUENCER_LOCK = 0x0C0A_2D_E7
#: How often a process that does not sequence tries for the lock (and learns where the
#: sequencer hears asks).
TRY_EVERY_S = 1.0
#: How the sequencer is asked to look: its listening connection's ``application_name`` names
#: a UDP port of its own and a token (PostgreSQL keeps at most 63 bytes of it).
ASKS_NAME = "omnicard-asks {host} {port} {token}"
#: One statement tries for the sequencer's lock and, failing, finds where the one who holds it
#: hears asks (a PostgreSQL advisory lock on one 32-bit key shows in ``pg_locks`` as ``objid``,
#: in the database it was taken in: another Omnicard on the same server holds its own).
TRY_TO_SEQUENCE_SQL = (
    "SELECT pg_try_advisory_lock(%(key)s), "
    "(SELECT activity.application_name FROM pg_locks AS held "
    " JOIN pg_stat_activity AS activity ON activity.pid = held.pid "
    " WHERE held.locktype = 'advisory' AND held.classid = 0 AND held.objid = %(key)s "
    " AND held.objsubid = 1 AND held.granted AND held.pid <> pg_backend_pid() "
    " AND held.database = (SELECT oid FROM pg_database WHERE datname = current_database())"
    " LIMIT 1)"
)

Asks = tuple[tuple[str, int], bytes]


def asks_address(application_name: str | None) -> Asks | None:
    """Where the sequencer hears asks, ((host, port), token), from its connection's
    ``application_name``."""
    words = (application_name or "").split(" ")
    if len(words) != 4 or words[0] != "omnicard-asks" or not words[2].isdigit():
        return None  # an older version, or a name cut short: asks go by NOTIFY
    return (words[1], int(words[2])), words[3].encode()


def family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


class Election:
    """This process's listening connection, its part in electing the sequencer, and its asks.

    It tells the hub what it hears through the callables it is given: ``wake()`` (look now:
    asked, or just became the sequencer), ``look()`` (look in the database even if nothing
    was announced: it has just started to hear the announcements), ``announced(top)`` and
    ``moved()`` (the sequencer is another process now: ask it).
    ``streams_open()`` says whether the process must hear the announcements.
    """

    def __init__(
        self,
        dsn: str,
        plain: PlainConnection,
        asks_host: str | None,
        stopping: threading.Event,
        *,
        streams_open: Callable[[], bool],
        wake: Callable[[], None],
        look: Callable[[], None],
        announced: Callable[[int], None],
        moved: Callable[[], None],
    ) -> None:
        self.dsn, self.plain, self.stopping = dsn, plain, stopping
        self.streams_open, self.wake, self.look, self.announced, self.moved = (
            streams_open, wake, look, announced, moved
        )  # fmt: skip
        #: Where this process hears asks while it sequences: the address it binds (None: the
        #: one PostgreSQL sees it connect from, as the other processes can likely reach it).
        self.asks_host = asks_host
        #: Whether this process holds the sequencer's lock.
        self.leader = False
        #: Where the sequencer hears asks, if this process knows.
        self.sequencer_asks: Asks | None = None
        #: Asks this process heard as the sequencer, by datagram.
        self.asks_heard = 0
        #: The port this process hears asks on, while it sequences.
        self.asks_in: socket.socket | None = None
        self._asks_out: socket.socket | None = None
        self.listener: psycopg.Connection | None = None
        #: Set when a first stream opens: the listener must LISTEN for the announcements now.
        self.listen_changed = threading.Event()
        #: Set once the listening connection is open.
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._listen, name="omnicard-listen", daemon=True)

    # --- asking the sequencer ----------------------------------------------------------

    def ask(self) -> None:
        """A datagram to the sequencer's port, if this process knows it; else a plain NOTIFY
        on the hub's own connection. A datagram costs PostgreSQL nothing: a NOTIFY is a
        transaction of its own, and they queue on one lock."""
        if self.sequencer_asks is not None and self.send_datagram(self.sequencer_asks):
            return
        try:
            self.plain.get().execute(f"NOTIFY {PENDING_CHANNEL}")
        except psycopg.Error:
            self.plain.drop()
            raise

    def send_datagram(self, asks: Asks) -> bool:
        """Whether the ask went (a lost datagram only delays: the sequencer's own look)."""
        address, token = asks
        try:
            if self._asks_out is None:
                self._asks_out = socket.socket(family(address[0]), socket.SOCK_DGRAM)
            self._asks_out.sendto(token, address)
            return True
        except OSError:  # then a NOTIFY
            log.warning("could not send an ask to the sequencer at %s", address)
            return False

    def close(self) -> None:
        if self._asks_out is not None:
            self._asks_out.close()

    # --- the listening connection ------------------------------------------------------

    def _listen(self) -> None:
        while not self.stopping.is_set():
            try:
                with psycopg.connect(self.dsn, autocommit=True, options=POSTGRESQL_OPTIONS) as conn:
                    self.listener = conn
                    hearing = False  # the sequencer's announcements
                    self.ready.set()
                    tried_at = 0.0
                    while not self.stopping.is_set():
                        # Only a process with streams to serve, and not sequencing itself,
                        # needs the announcements: the others are not woken by every round.
                        wanted = self.streams_open() and not self.leader
                        if wanted != hearing:
                            conn.execute(f"{'' if wanted else 'UN'}LISTEN {EVENTS_CHANNEL}")
                            hearing = wanted
                            if hearing:  # what was announced before it listened
                                self.look()
                        if not self.leader and time.monotonic() - tried_at >= TRY_EVERY_S:
                            tried_at = time.monotonic()
                            self._try_to_sequence(conn)
                        if not (hearing or self.leader):
                            # LISTENing for nothing: PostgreSQL wakes every listening backend
                            # of the database at every NOTIFY, whatever its channels.
                            self.listen_changed.wait(TRY_EVERY_S)
                            self.listen_changed.clear()
                            continue
                        for note in conn.notifies(timeout=TRY_EVERY_S, stop_after=1):
                            if note.channel == EVENTS_CHANNEL and note.payload.isdigit():
                                self.announced(int(note.payload))
                            elif note.channel == PENDING_CHANNEL:
                                self.wake()
            except psycopg.Error:
                log.exception("event listener lost its connection; reconnecting")
                self.leader = False
                time.sleep(0.5)
            finally:
                self._close_asks_port()  # the lock went with the connection
        self.leader = False

    def _try_to_sequence(self, conn: psycopg.Connection) -> None:
        self.leader, holder = conn.execute(TRY_TO_SEQUENCE_SQL, {"key": SEQUENCER_LOCK}).fetchone()
        if self.leader:
            # Only the sequencer is asked; then whatever waited for one.
            conn.execute(f"LISTEN {PENDING_CHANNEL}")
            try:
                self._open_asks_port(conn)
            except OSError:  # then asks come by NOTIFY only
                log.exception("could not open a port for asks")
            self.wake()
        else:
            asks, known = asks_address(holder), self.sequencer_asks
            self.sequencer_asks = asks
            if known is not None and asks != known:
                # A new sequencer: what this process asked of the one before since it took
                # over went to a closed port, and only an ask makes the new one look before
                # its own look, seconds away. (Asks by NOTIFY reach whichever sequencer
                # LISTENs, and a new one looks once as it starts: nothing to repeat.)
                self.moved()

    def _open_asks_port(self, conn: psycopg.Connection) -> None:
        """As the new sequencer: a UDP port for asks, named where the others look for it
        (unless told "none": then the others ask by NOTIFY)."""
        if self.asks_host == "none":
            return
        host = (
            self.asks_host
            or conn.execute("SELECT COALESCE(host(inet_client_addr()), '127.0.0.1')").fetchone()[0]
        )
        sock = socket.socket(family(host), socket.SOCK_DGRAM)
        sock.bind((host, 0))
        sock.settimeout(TRY_EVERY_S)  # to notice, now and then, that it was closed
        token = secrets.token_hex(6)
        name = ASKS_NAME.format(host=host, port=sock.getsockname()[1], token=token)
        conn.execute("SELECT set_config('application_name', %s, false)", (name,))
        self.asks_in = sock
        hear = threading.Thread(
            target=self._hear_asks, args=(sock, token.encode()), name="omnicard-asks", daemon=True
        )
        hear.start()

    def _hear_asks(self, sock: socket.socket, token: bytes) -> None:
        while self.asks_in is sock:
            try:
                ask = sock.recv(64)
            except TimeoutError:
                continue
            except OSError:
                return  # closed: no longer the sequencer
            if ask == token:  # anything else is not from this cluster's processes
                self.asks_heard += 1
                self.wake()

    def _close_asks_port(self) -> None:
        if self.asks_in is not None:
            self.asks_in.close()
            self.asks_in = None

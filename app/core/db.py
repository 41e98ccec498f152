"""The database: one engine per app, one session per request or CLI command.

Services only flush; the request (or command) commits once at the end. On SQLite every
transaction begins with ``BEGIN IMMEDIATE`` so that two writers can never both read a balance
and then race to write it: the second waits for the first (WAL mode keeps readers unblocked).

On PostgreSQL a round trip to the server is what a statement costs most, so none is spent
alone that could go with another (psycopg's pipeline mode carries several in one):

- a transaction's BEGIN goes with its first statement (psycopg would send it on its own);
- a statement whose answer can wait, ``send_ahead``, goes with the next one (the claim of an
  ``Idempotency-Key`` goes with a sale's first read);
- writes that nothing in the transaction reads back (a sale's lines and receipt, its events,
  the idempotency record), ``write_at_commit``, go with the COMMIT.

A lost database connection (PostgreSQL restarted, a backend terminated, a network cut) costs
no request that can safely run again: a connection that the server closed while it sat in
the pool is replaced at checkout (a look at its socket, not a ping: no round trip), and a
request whose connection dies before anything of it was committed is run once more from the
start, on a fresh connection. A connection lost at the
commit itself leaves the outcome unknown: the answer is a 503 ``outcome_unknown`` and the
client retries with the same ``Idempotency-Key``. A change that committed is never answered
with an error: what runs after the commit only logs its failures.
"""

from __future__ import annotations

import logging
import select
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from flask import Flask, current_app, g, json, request
from sqlalchemy import MetaData, create_engine, event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError, DisconnectionError
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker

from app.core.errors import DomainError, error_body, handle_domain_error

log = logging.getLogger(__name__)

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


#: Set on every PostgreSQL session Omnicard opens: no JIT compilation. Omnicard's statements
#: are short, and PostgreSQL compiles a plan whose estimated cost passes ``jit_above_cost``
#: afresh at every execution: 20 ms and more of the server's CPU each time. The sequencer's
#: statement did so at every round once the outbox's table had grown under load (the planner
#: then expects a full batch), which put 20 ms on every event's way to the streams.
POSTGRESQL_OPTIONS = "-c jit=off"
PIPELINE_OFF = 0  # psycopg.pq.PipelineStatus.OFF, without importing psycopg for SQLite


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def make_engine(url: str, **kwargs: Any) -> Engine:
    """An engine for ``url``; SQLite gets WAL, a busy timeout and immediate write locks."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30}, **kwargs)
        _make_sqlite_safe(engine)
        return engine
    if "poolclass" not in kwargs:
        kwargs.setdefault("pool_size", 20)
        kwargs.setdefault("max_overflow", 40)
    kwargs.setdefault("connect_args", {}).setdefault("options", POSTGRESQL_OPTIONS)
    engine = create_engine(url, **kwargs)
    event.listen(engine, "checkout", _refuse_if_closed_by_server)
    event.listen(engine, "handle_error", _a_closed_socket_is_a_lost_connection)
    _send_begin_and_ahead_with_statements(engine)
    return engine


def _a_closed_socket_is_a_lost_connection(context: Any) -> None:
    """psycopg reports a socket that the server closed under a statement as "connection socket
    closed" without always marking the connection broken; it is as lost as any other. So is a
    connection that such an error left in pipeline mode (the server went away with answers
    still owed: "cannot exit pipeline mode while busy"), which nothing can use again."""
    error = context.original_exception
    if "connection socket closed" in str(error):
        context.is_disconnect = True
        return
    connection = context.connection
    if connection is None or connection.invalidated:
        return
    if not isinstance(error, connection.dialect.loaded_dbapi.OperationalError):
        return
    driver = connection.connection.driver_connection
    if _unusable(driver):
        context.is_disconnect = True


def _unusable(driver: Any) -> bool:
    """Is this psycopg connection closed, broken, or left in pipeline mode by an error?"""
    return driver.closed or driver.broken or driver.pgconn.pipeline_status != PIPELINE_OFF


def _refuse_if_closed_by_server(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
    """A pooled connection that the server has closed (a restart, a terminated backend) is
    replaced before it is handed out. An idle connection has nothing to read unless the server
    said goodbye: one look at its socket, no round trip (as a ping at checkout would cost)."""
    if dbapi_connection.closed or select.select([dbapi_connection.fileno()], [], [], 0)[0]:
        raise DisconnectionError("closed by the server while idle in the pool")


def _make_sqlite_safe(engine: Engine) -> None:
    # pysqlite's own transaction handling defers BEGIN and cannot take the write lock up front;
    # take control of it (the recipe from SQLAlchemy's SQLite dialect documentation).
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: sqlite3.Connection, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        if connection.get_execution_options().get("omnicard_read_only"):
            connection.exec_driver_sql("BEGIN")  # a reader: WAL gives it a snapshot, no lock
        else:
            connection.exec_driver_sql("BEGIN IMMEDIATE")


@contextmanager
def read_only(engine: Engine) -> Iterator[Connection]:
    """A short read that takes no write lock (on SQLite). It ends with a COMMIT, though it wrote
    nothing: psycopg forgets every statement prepared on a connection when one of its
    transactions rolls back, and these reads share the pool with the requests'."""
    with engine.connect() as connection:
        connection = connection.execution_options(omnicard_read_only=True)
        try:
            yield connection
        except BaseException:
            connection.rollback()
            raise
        connection.commit()


class DatabaseUnavailable(DomainError):
    code = "database_unavailable"
    http_status = 503
    message = "The database cannot be reached just now; nothing was changed. Try again."

    def __init__(self) -> None:
        super().__init__(retry_after_s=1)


class OutcomeUnknown(DomainError):
    code = "outcome_unknown"
    http_status = 503
    message = (
        "The connection to the database was lost while saving: the change may or may not "
        "have been made. Retry with the same Idempotency-Key, or look before doing it again."
    )

    def __init__(self) -> None:
        super().__init__(retry_after_s=1)


def connection_lost(exc: BaseException) -> bool:
    """Did ``exc`` come from a database connection that went away (and is now discarded)?"""
    return isinstance(exc, DBAPIError) and exc.connection_invalidated


@contextmanager
def driver_cursor(connection: Connection) -> Iterator[Any]:
    """A cursor straight on the driver's connection (psycopg), for the hot statements that
    skip SQLAlchemy's execution layer, whose errors still come back as SQLAlchemy's: a lost
    connection is invalidated and said to be, like any other statement's."""
    send_ahead_now(connection)  # they were to go first
    driver = connection.connection.driver_connection
    try:
        if connection.connection.info.pop(_BEGIN, False):
            driver.execute("BEGIN")
        with driver.cursor() as cursor:
            yield cursor
    except connection.dialect.loaded_dbapi.Error as exc:
        lost = bool(driver.closed)
        if lost:
            connection.invalidate(exc)
        raise _as_sqlalchemys(connection, exc, lost) from exc


def _as_sqlalchemys(connection: Connection, exc: Exception, lost: bool) -> DBAPIError:
    """A driver's error as SQLAlchemy reports a statement's (``lost``: its connection too)."""
    return DBAPIError.instance(
        None,
        None,
        exc,
        connection.dialect.loaded_dbapi.Error,
        connection_invalidated=lost,
        dialect=connection.dialect,
    )


@contextmanager
def pipelined(connection: Connection) -> Iterator[None]:
    """Statements run inside are sent without waiting for each answer (psycopg's pipeline
    mode): the server's answers come back together when the block ends. Errors are reported
    as SQLAlchemy's; a connection lost or left unusable on the way is discarded, and said to
    be lost."""
    driver = connection.connection.driver_connection
    try:
        with driver.pipeline():
            yield
    except BaseException as exc:
        lost = _unusable(driver)
        if not connection.invalidated:  # whatever failed, its state is not worth trusting
            connection.invalidate(exc)
        if isinstance(exc, DBAPIError):  # a statement's, wrapped by SQLAlchemy already
            exc.connection_invalidated = exc.connection_invalidated or lost
            raise
        if not isinstance(exc, connection.dialect.loaded_dbapi.Error):
            raise
        raise _as_sqlalchemys(connection, exc, lost) from exc


# --- BEGIN and statements sent ahead go with the next statement (PostgreSQL) -------------------
#
# Omnicard's connections are in psycopg's autocommit mode, and Omnicard sends a transaction's
# BEGIN itself, in one round trip with the transaction's first statement. Nothing else changes:
# SQLAlchemy still begins, commits and rolls back each transaction, and psycopg's commit() and
# rollback() go by the server's transaction status, whatever the mode. A connection that
# SQLAlchemy puts out of autocommit (an isolation level asked for by a command) has psycopg send
# its BEGIN, as before.

#: Keys of a connection's info: its transaction's BEGIN is still to be sent; statements sent
#: ahead (``_Ahead``), waiting for the next; the pipeline now carrying them with a statement.
_BEGIN, _AHEAD, _FLIGHT = "omnicard.begin", "omnicard.ahead", "omnicard.flight"


class _Ahead:
    """A statement sent ahead: psycopg's SQL and parameters, and what to do with its rows."""

    def __init__(self, sql: str, params: tuple, answered: Callable[[list[tuple]], None]):
        self.sql, self.params, self.answered = sql, params, answered
        self.cursor = None

    def send(self, driver: Any) -> None:
        self.cursor = driver.cursor()
        self.cursor.execute(self.sql, self.params, prepare=True)

    def receive(self) -> None:
        with self.cursor:
            rows = self.cursor.fetchall() if self.cursor.description else []
        self.answered(rows)


def _send_begin_and_ahead_with_statements(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _autocommit(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.autocommit = True

    @event.listens_for(engine, "begin")
    def _begin_with_the_first_statement(connection: Connection) -> None:
        info = connection.connection.info
        info.pop(_AHEAD, None)  # a new transaction: nothing of another goes with it
        info[_BEGIN] = connection.connection.driver_connection.autocommit

    event.listen(engine, "before_cursor_execute", _board)
    event.listen(engine, "after_cursor_execute", _land)
    event.listen(engine, "handle_error", _drop_flight)


def _board(connection: Connection, cursor: Any, *_statement: Any) -> None:
    """Before a statement: what must go with it (BEGIN, statements sent ahead) goes first, in
    the same round trip."""
    info = connection.connection.info
    begin = info.pop(_BEGIN, False)
    if not begin and not info.get(_AHEAD):
        return
    driver = connection.connection.driver_connection
    if driver._pipeline is not None or getattr(cursor, "name", None):
        # Inside a pipeline already (the commit's writes), everything goes with it anyway; a
        # server-side cursor cannot go in one: BEGIN goes first, and what was sent ahead stays
        # for the next statement.
        if begin:
            driver.execute("BEGIN")
        return
    pipeline = driver.pipeline()
    pipeline.__enter__()
    ahead = info.pop(_AHEAD, [])
    info[_FLIGHT] = (pipeline, ahead)
    if begin:
        driver.execute("BEGIN")
    for statement in ahead:
        statement.send(driver)


def _land(connection: Connection, *_statement: Any) -> None:
    """After the statement is sent: the round trip ends with every answer in, and what was sent
    ahead hears its own (which may refuse to go on)."""
    flight = connection.connection.info.pop(_FLIGHT, None)
    if flight is None:
        return
    pipeline, ahead = flight
    pipeline.__exit__(None, None, None)
    for statement in ahead:
        statement.receive()


def _drop_flight(context: Any) -> None:
    """A statement that failed before it was sent leaves no pipeline open behind it."""
    connection = context.connection
    if connection is None or connection.invalidated:
        return
    flight = connection.connection.info.pop(_FLIGHT, None)
    if flight is not None:
        flight[0].__exit__(type(context.original_exception), context.original_exception, None)


def send_ahead(
    connection: Connection, sql: str, params: tuple, answered: Callable[[list[tuple]], None]
) -> None:
    """Send ``sql`` (psycopg's, ``%s`` parameters) with the next statement of the transaction,
    in the same round trip, rather than on its own now. ``answered(rows)`` hears its rows as
    soon as they come, before the statement it went with answers; whatever it raises is raised
    by that statement. PostgreSQL only. ``send_ahead_now`` sends it alone if nothing else is
    going to be."""
    connection.connection.info.setdefault(_AHEAD, []).append(_Ahead(sql, params, answered))


def send_ahead_now(connection: Connection) -> None:
    """Send what waits to go ahead, on its own (nothing else is to be sent before it is needed).
    A connection closed or lost since has nothing waiting: it went with its transaction."""
    if connection.dialect.name != "postgresql" or connection.closed or connection.invalidated:
        return
    if not connection.connection.info.get(_AHEAD):
        return
    connection.exec_driver_sql("SELECT")  # an empty statement, to carry them


#: Session.info key: (savepoint or None, statement, parameters) of each write kept for the commit.
_AT_COMMIT = "omnicard.at_commit"


def write_at_commit(s: Session, statement: Any, parameters: Any = None) -> None:
    """Send ``statement`` with the transaction's COMMIT rather than now.

    For writes that nothing in the transaction reads back: on PostgreSQL all of them and the
    COMMIT cost one round trip. Nothing is read from their results (an INSERT is ``inline()``:
    no RETURNING of its new ids). A write made inside a savepoint that rolls back is dropped
    with it.
    """
    if not s.in_transaction():
        s.connection()  # the change's transaction: its rollback must take the write with it
    s.info.setdefault(_AT_COMMIT, []).append((s.get_nested_transaction(), statement, parameters))


#: Writes that every transaction gathers for its commit, as (statement, function of the
#: session giving the parameters, or None when there is nothing to write): its events.
COMMIT_WRITES: list[tuple[Any, Callable[[Session], Any]]] = []


@event.listens_for(Session, "before_commit")
def _send_with_commit(s: Session) -> None:
    if s.get_nested_transaction() is not None:  # a savepoint released: the transaction goes on
        return
    s.flush()
    writes = [(statement, parameters) for _, statement, parameters in s.info.pop(_AT_COMMIT, [])]
    for statement, gather in COMMIT_WRITES:
        parameters = gather(s)
        if parameters is not None:
            writes.append((statement, parameters))
    if not writes:
        return
    connection = s.connection()
    send_ahead_now(connection)  # what was sent ahead is heard before anything commits
    if connection.dialect.name != "postgresql":
        for statement, parameters in writes:
            connection.execute(statement, parameters)
        return  # SQLAlchemy commits next
    with pipelined(connection):
        for statement, parameters in writes:
            connection.execute(statement, parameters)
        if isinstance(s.get_bind(), Engine):  # the session's own transaction, not a caller's
            # With the writes, in the same round trip; SQLAlchemy's own commit then finds the
            # transaction ended and sends nothing.
            connection.exec_driver_sql("COMMIT")


def write_kept_now(s: Session) -> None:
    """Send the writes kept for the commit now, for the rare caller that must read them back
    in the same transaction (a test, a command that goes on to read what it wrote)."""
    s.flush()
    for _, statement, parameters in s.info.pop(_AT_COMMIT, []):
        s.connection().execute(statement, parameters)


def made_within(transaction, savepoint) -> bool:
    """Is ``transaction`` (a session's, or None for none) ``savepoint`` or inside it?"""
    while transaction is not None:
        if transaction is savepoint:
            return True
        transaction = transaction.parent
    return False


@event.listens_for(Session, "after_soft_rollback")
def _drop_rolled_back_writes(s: Session, previous_transaction) -> None:
    if previous_transaction.nested and _AT_COMMIT in s.info:
        s.info[_AT_COMMIT] = [
            write for write in s.info[_AT_COMMIT] if not made_within(write[0], previous_transaction)
        ]


@event.listens_for(Session, "after_transaction_end")
def _drop_writes_at_the_end(s: Session, transaction) -> None:
    if transaction.parent is None:  # committed (so sent), rolled back or closed
        s.info.pop(_AT_COMMIT, None)


class Database:
    """What the app keeps in ``app.extensions['omnicard.db']``."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.sessions = sessionmaker(bind=engine, expire_on_commit=False)

        @event.listens_for(self.sessions, "after_commit")
        def _note_commit(s: Session) -> None:
            if s.get_nested_transaction() is None:  # not a savepoint released
                s.info["committed"] = True


def after_commit_apart(work: Callable[[], None], name: str) -> None:
    """Once this request's work has committed, run ``work`` in a thread of its own (a greenlet
    under gevent), so that the answer does not wait for it. When the app's sessions all share
    one connection (a test's transaction), which no other thread may use, it runs here."""
    if isinstance(database().sessions.kw.get("bind"), Engine):
        after_commit(lambda: threading.Thread(target=work, name=name, daemon=True).start())
    else:
        after_commit(work)


def init_app(app: Flask) -> None:
    db = Database(make_engine(app.config["DATABASE_URL"]))
    app.extensions["omnicard.db"] = db
    app.after_request(_commit_or_roll_back)
    app.teardown_appcontext(_close_session)
    app.register_error_handler(DBAPIError, _lost_connection)
    dispatch = app.dispatch_request  # Flask calls self.dispatch_request: wrap this app's
    app.dispatch_request = lambda: run_again_if_connection_lost(dispatch)


def run_again_if_connection_lost(dispatch: Callable):
    """Run the view; if its database connection is lost before any of its work committed,
    nothing of it happened: run it once more, from the start, on a fresh connection.

    A view that commits part of its work early (a failed guess, a top-up written down before
    the card is charged) is not run again after that commit; its retry is the client's.
    """
    try:
        return dispatch()
    except DBAPIError as exc:
        s = g.get("db_session")
        if not connection_lost(exc) or (s is not None and s.info.get("committed")):
            raise
        log.warning("database connection lost; running %s %s again", request.method, request.path)
    _close_session(None)
    for name in ("after_commit", "principal", "idempotency_key"):
        g.pop(name, None)
    return dispatch()


def _lost_connection(exc: DBAPIError):
    """A lost connection that could not be made good is a 503, not a 500."""
    if not connection_lost(exc):
        raise exc
    s = g.get("db_session")
    committed = s is not None and s.info.get("committed")
    return handle_domain_error(OutcomeUnknown() if committed else DatabaseUnavailable())


def after_commit(callback) -> None:
    """Run ``callback()`` once this request's work has committed (not if it fails)."""
    g.setdefault("after_commit", []).append(callback)


def _commit_or_roll_back(response):
    # The request commits once, at the end, and only if it succeeded; then what had to wait
    # for the commit runs, each in its own transaction, and none of it can undo the answer.
    s = g.get("db_session")
    callbacks = g.pop("after_commit", [])
    if s is not None:
        if response.status_code < 400:
            try:
                s.commit()
            except DBAPIError as exc:
                if not connection_lost(exc):
                    raise
                log.warning("database connection lost at commit: the outcome is unknown")
                return _answer_instead(response, OutcomeUnknown())
        else:
            try:
                s.rollback()
            except DBAPIError as exc:  # the error answer stands; the server rolls back
                if not connection_lost(exc):
                    raise
            callbacks = []
    for callback in callbacks:
        try:
            callback()
        except Exception:  # committed is committed: the callback's own work is retried later
            log.exception("after-commit %s failed", getattr(callback, "__qualname__", callback))
    return response


def _answer_instead(response, error: DomainError):
    """``response`` (keeping its headers) turned into ``error``'s answer."""
    response.set_data(json.dumps(error_body(error.code, error.message, error.details)))
    response.status_code = error.http_status
    response.mimetype = "application/json"
    response.headers["Retry-After"] = str(error.details["retry_after_s"])
    response.headers.pop("Idempotent-Replayed", None)
    return response


def database(app: Flask | None = None) -> Database:
    return (app or current_app).extensions["omnicard.db"]


def session() -> Session:
    """The session of the current request or command, opened on first use."""
    if "db_session" not in g:
        g.db_session = database().sessions()
    return g.db_session


def _close_session(_exc: BaseException | None) -> None:
    s = g.pop("db_session", None)
    if s is not None:
        try:
            s.close()
        except DBAPIError as exc:  # its connection is gone, and discarded with it
            if not connection_lost(exc):
                raise

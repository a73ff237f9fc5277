"""A unit of work: one way to run a write transaction on both back ends.

`transaction(db, work)` runs `work(uow)` in one transaction and commits it:
- SQLite: `BEGIN IMMEDIATE` first, so the reads that decide a write and the write are one
  atomic step even across processes (SQLite has one writer at a time); in one process the
  writers queue on an asyncio lock (`writer_lock(db)`, which a group-commit writer takes
  too) instead of spinning in SQLite's busy handler. `begin(conn)` starts it in ONE
  hand-over to the aiosqlite thread (`on_sqlite_thread`) rather than the three of a driver
  statement (cursor, execute, close); SQLAlchemy's transaction follows, so its commit or
  rollback ends the one SQLite began.
- PostgreSQL: READ COMMITTED with the locks the work asks for: `uow.lock(*keys)` takes
  transaction-scoped advisory locks on hashed keys (sorted, so two transactions never wait
  on each other in a cycle); rows are locked by the queries themselves (`FOR UPDATE`).
- A lost race on a unique key (IntegrityError), a serialization failure or a deadlock
  (40001, 40P01) rolls back and runs `work` again, up to `attempts` times: `work` must
  decide everything from what it reads inside the transaction.
- `uow.after_commit(fn)` runs `fn` once the transaction has committed, and only then, so
  metrics count committed work once however often it was retried.
- `async with uow.savepoint():` runs a part of the work that may fail alone: if it raises,
  its statements are rolled back to the savepoint, and the events it emitted and the
  after-commit hooks it added are dropped; the rest of the work goes on (a consumer runs
  each handler of a batch that failed this way).
- `uow.emit(event, subject=aggregate_id)` writes a domain event to the service's outbox
  (`transaction(db, work, outbox=...)`, mesh/events/outbox.py) in this same transaction: the
  rows are inserted in one statement just before the commit, and the relay is woken after
  it. A retried attempt starts with no events; a rolled-back one leaves none.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import sqlite3
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from mesh.db import Database
from mesh.dberrors import loggable

if TYPE_CHECKING:
    from google.protobuf.message import Message

    from mesh.events.outbox import Outbox

T = TypeVar("T")
log = logging.getLogger(__name__)

ATTEMPTS = 4
_RETRYABLE_SQLSTATES = frozenset({"40001", "40P01"})  # serialization failure, deadlock
_LOCK = sa.text(
    "SELECT pg_advisory_xact_lock(k) FROM unnest(CAST(:keys AS bigint[])) "
    "WITH ORDINALITY AS t(k, n) ORDER BY n"
)


def lock_hash(key: str) -> int:
    """The signed 64-bit advisory-lock number of a key."""
    digest = hashlib.blake2b(key.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


class UnitOfWork:
    """One transaction's connection, its locks and what runs after it commits."""

    def __init__(
        self, conn: AsyncConnection, *, is_sqlite: bool, outbox: Outbox | None = None
    ) -> None:
        self.conn = conn
        self._is_sqlite = is_sqlite
        self._after: list[Callable[[], object]] = []
        self._outbox = outbox
        self._events: list[dict[str, Any]] = []

    @property
    def is_sqlite(self) -> bool:
        """Whether the transaction is SQLite's (which holds the write lock from its start,
        so row locks are moot)."""
        return self._is_sqlite

    async def lock(self, *keys: str) -> None:
        """Serialise with every other transaction locking one of `keys` (PostgreSQL
        advisory locks; on SQLite the transaction already holds the write lock)."""
        if self._is_sqlite or not keys:
            return
        await self.conn.execute(_LOCK, {"keys": sorted({lock_hash(k) for k in keys})})

    @contextlib.asynccontextmanager
    async def savepoint(self) -> AsyncIterator[None]:
        """A savepoint: what runs inside it is undone, emitted events and after-commit
        hooks included, if it raises (the error goes on to the caller)."""
        events, after = len(self._events), len(self._after)
        nested = await self.conn.begin_nested()
        try:
            yield
        except BaseException:
            del self._events[events:], self._after[after:]
            await nested.rollback()
            raise
        await nested.commit()

    def after_commit(self, fn: Callable[[], object]) -> None:
        """Run `fn` after the commit (not at all if the transaction rolls back)."""
        self._after.append(fn)

    def emit(self, event: Message, *, subject: str) -> str:
        """Write `event` (a proto message of a `*_events.proto`) about aggregate `subject`
        to the outbox, in this transaction; returns the event id."""
        if self._outbox is None:
            raise RuntimeError(
                "this unit of work has no outbox: run it with transaction(db, work, outbox=...)"
            )
        row = self._outbox.row(event, subject=subject)
        self._events.append(row)
        return str(row["id"])

    async def _flush(self) -> None:
        """Insert the emitted events (once, just before the commit)."""
        if self._events and self._outbox is not None:
            await self._outbox.write(self.conn, self._events)
            self._after.append(self._outbox.notify)

    def _committed(self) -> None:
        for fn in self._after:
            try:
                fn()
            except Exception as e:  # the work is committed and must be answered
                log.error("a post-commit hook failed", exc_info=loggable(e))


def retryable(error: BaseException) -> bool:
    """Whether `error` is worth running the work again for: a lost race on a unique key
    (IntegrityError), a serialization failure or a deadlock (40001, 40P01)."""
    if isinstance(error, IntegrityError):
        return True
    return isinstance(error, DBAPIError) and (
        getattr(error.orig, "sqlstate", None) in _RETRYABLE_SQLSTATES
    )


_writer_locks: weakref.WeakKeyDictionary[Database, asyncio.Lock] = weakref.WeakKeyDictionary()


def writer_lock(db: Database) -> asyncio.Lock | None:
    """SQLite's in-process writer queue (one per database; None on PostgreSQL). Hold it
    around any write transaction on `db` that does not go through `transaction`."""
    if not db.is_sqlite:
        return None
    lock = _writer_locks.get(db)
    if lock is None:
        lock = _writer_locks[db] = asyncio.Lock()
    return lock


async def on_sqlite_thread(conn: AsyncConnection, fn: Callable[[Any], T]) -> T:
    """Run `fn(sqlite3_connection)` on the aiosqlite connection's own thread in ONE
    hand-over (aiosqlite's `_execute`, the primitive behind each of its own methods), for
    work that would otherwise cost a hand-over per DBAPI call. A sqlite3 error comes back
    as SQLAlchemy's (IntegrityError, OperationalError...), without its parameters, as a
    statement through the engine would."""
    raw = await conn.get_raw_connection()
    aio: Any = raw.driver_connection
    try:
        result: T = await aio._execute(fn, aio._conn)
    except sqlite3.Error as e:
        raise DBAPIError.instance(None, None, e, sqlite3.Error, hide_parameters=True) from e
    return result


def _begin_immediate(db: Any) -> None:
    db.execute("BEGIN IMMEDIATE")


async def begin(conn: AsyncConnection) -> None:
    """Start a write transaction on `conn`: SQLAlchemy's (no I/O on either back end), and
    on SQLite `BEGIN IMMEDIATE` in one hand-over, so the write lock is held from here to
    the commit or rollback of SQLAlchemy's transaction."""
    await conn.begin()
    if conn.dialect.name == "sqlite":
        await on_sqlite_thread(conn, _begin_immediate)


async def transaction(
    db: Database,
    work: Callable[[UnitOfWork], Awaitable[T]],
    *,
    attempts: int = ATTEMPTS,
    outbox: Outbox | None = None,
) -> T:
    """Run `work` in one committed write transaction (see the module docstring); with an
    `outbox`, `uow.emit` writes events to it."""
    for attempt in range(1, attempts + 1):
        try:
            return await _once(db, work, outbox)
        except (IntegrityError, DBAPIError) as error:
            if attempt == attempts or not retryable(error):
                raise
            log.info("transaction retried", extra={"attempt": attempt})
    raise AssertionError("unreachable")


async def _once(
    db: Database, work: Callable[[UnitOfWork], Awaitable[T]], outbox: Outbox | None
) -> T:
    queue = writer_lock(db)
    if queue is not None:
        await queue.acquire()
    try:
        async with db.engine.connect() as conn:
            await begin(conn)
            uow = UnitOfWork(conn, is_sqlite=db.is_sqlite, outbox=outbox)
            try:
                result = await work(uow)
                await uow._flush()
                await conn.commit()
            except BaseException:
                await conn.rollback()
                raise
    finally:
        if queue is not None:
            queue.release()
    uow._committed()
    return result

"""Group commit: many concurrent writes, one transaction, one fsync.

A commit costs an fsync on SQLite (WAL, synchronous=FULL) and a WAL flush on PostgreSQL, so
one transaction per call caps a service at the disk's flush rate (about 0.8-0.9k calls/s on
the reference machine) whatever the server does. Here callers enqueue their work and wait on
a future; a single writer task per process takes everything pending (up to `max_batch`),
hands it to `process` which does the batch's reads and writes in ONE transaction, and only
after that commit resolves each caller's future: acknowledged means committed.

Under light load a batch is a single item and latency is one transaction; under heavy load
batches grow by themselves (items queue while the previous batch commits), so throughput
rises with concurrency instead of collapsing. Each batch also has a fixed cost (hand-overs
to the database thread or round trips, one statement per table), so while the writer is
busy (its previous batch held at least `siblings` items) it lingers `linger` seconds
before taking the next one, letting callers that are about to enqueue join it: PostgreSQL's
own `commit_delay`/`commit_siblings`. A lone caller never waits for company.

A failing batch must not fail its neighbours: when `process` raises for a whole batch
(a database error), every item is retried alone, so one poisoned item fails only its own
caller.

`HeldConnection` keeps the writer's database connection from one batch to the next. Any
service can batch its hot write path with the two (the lead service's SubmitLead and
ImportLeads do).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from sqlalchemy.ext.asyncio import AsyncConnection

from mesh.db import Database
from mesh.dberrors import loggable

T = TypeVar("T")
R = TypeVar("R")

log = logging.getLogger(__name__)

BatchFn = Callable[[Sequence[T]], Awaitable[list[R | BaseException]]]


class WriterStopped(RuntimeError):
    """The writer is shut down; the work was not done."""


@dataclass(slots=True)
class _Job(Generic[T, R]):
    item: T
    future: asyncio.Future[R] = field(repr=False)


class GroupCommitter(Generic[T, R]):
    """Serialises writes of one process through one writer task, committing them in groups."""

    def __init__(
        self,
        process: BatchFn[T, R],
        *,
        max_batch: int = 256,
        name: str = "writer",
        linger: float = 0.0,
        siblings: int = 2,
    ):
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        if linger < 0 or siblings < 1:
            raise ValueError("linger must be >= 0 and siblings >= 1")
        self._process = process
        self._max_batch = max_batch
        self._linger = linger
        self._siblings = siblings
        self._name = name
        self._queue: asyncio.Queue[_Job[T, R] | None] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self.batches = 0  # how many transactions ran, for tests and benchmarks
        self.items = 0

    def start(self) -> None:
        """Start the writer task on the running loop."""
        if self._task is None:
            self._stopping = False
            self._task = asyncio.get_running_loop().create_task(self._run(), name=self._name)

    async def stop(self) -> None:
        """Finish everything already enqueued, then stop the writer task."""
        if self._task is None:
            return
        self._stopping = True
        self._queue.put_nowait(None)
        await self._task
        self._task = None

    def _enqueue(self, item: T) -> asyncio.Future[R]:
        if self._task is None or self._stopping:
            raise WriterStopped(f"{self._name} is not running")
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Job(item, future))
        return future

    async def submit(self, item: T) -> R:
        """Do `item` in the next group; returns once that group has committed."""
        return await self._enqueue(item)

    async def submit_many(self, items: Sequence[T]) -> list[R | BaseException]:
        """Enqueue a chunk at once (bulk import); results in order, exceptions returned, not
        raised, so one bad row does not hide the others."""
        futures = [self._enqueue(item) for item in items]
        return list(await asyncio.gather(*futures, return_exceptions=True))

    async def _run(self) -> None:
        previous = 0  # items in the previous batch
        while True:
            first = await self._queue.get()
            if self._linger and previous >= self._siblings and first is not None:
                await asyncio.sleep(self._linger)
            batch: list[_Job[T, R]] = []
            stop = first is None
            if first is not None:
                batch.append(first)
            while len(batch) < self._max_batch and not self._queue.empty():
                job = self._queue.get_nowait()
                if job is None:
                    stop = True
                    continue
                batch.append(job)
            previous = len(batch)
            if batch:
                await self._commit(batch)
            if stop and self._queue.empty():
                return

    async def _commit(self, batch: list[_Job[T, R]]) -> None:
        live = [job for job in batch if not job.future.cancelled()]
        if not live:
            return
        self.batches += 1
        self.items += len(live)
        try:
            outcomes = await self._process([job.item for job in live])
        except Exception as e:
            if len(live) == 1:
                log.error("%s: a write failed", self._name, exc_info=loggable(e))
                outcomes = [WriterFailed("the write could not be committed")]
            else:
                log.warning("%s: a batch of %d failed; retrying one by one", self._name, len(live))
                outcomes = []
                for job in live:
                    outcomes.append(await self._one(job.item))
        for job, outcome in zip(live, outcomes, strict=True):
            if job.future.done():
                continue
            if isinstance(outcome, BaseException):
                job.future.set_exception(outcome)
            else:
                job.future.set_result(outcome)

    async def _one(self, item: T) -> R | BaseException:
        try:
            return (await self._process([item]))[0]
        except Exception as e:
            log.error("%s: a write failed on its own", self._name, exc_info=loggable(e))
            return WriterFailed(f"the write could not be committed: {type(e).__name__}")


class HeldConnection:
    """The writer's connection, kept from one batch to the next.

    Checking a connection out of the pool for every batch costs a ping on checkout and a
    rollback on return: two more hand-overs to the SQLite thread or two more PostgreSQL
    round trips per batch. Every batch ends its own transaction (commit, or rollback on
    error), so the connection is idle between batches. A batch that fails drops it (it
    may be broken); a pause longer than `idle_seconds` returns it to the pool, so the next
    batch gets a pinged one.
    """

    def __init__(self, db: Database, idle_seconds: float = 5.0) -> None:
        self._db = db
        self._idle = idle_seconds
        self._conn: AsyncConnection | None = None
        self._last = 0.0

    async def get(self) -> AsyncConnection:
        """The connection for the next batch."""
        if self._conn is not None and time.monotonic() - self._last > self._idle:
            await self.close()
        if self._conn is None:
            self._conn = await self._db.engine.connect()
        return self._conn

    def done(self) -> None:
        """The batch ended its transaction; keep the connection."""
        self._last = time.monotonic()

    async def drop(self) -> None:
        """The batch failed: discard the connection rather than trust it again."""
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                await conn.invalidate()
            finally:
                await conn.close()

    async def close(self) -> None:
        """Return the connection to the pool (idle, or the writer stops)."""
        conn, self._conn = self._conn, None
        if conn is not None:
            await conn.close()


class WriterFailed(RuntimeError):
    """The database refused this item even alone; the caller sees an internal error."""

"""Forgetting what only needs remembering for a while, such as request ids.

A request id makes a retried call idempotent only while its caller may still retry; kept
forever, the table grows by a row per call (100k per bulk import) and so do its indexes.
A service that keeps such rows starts a `Sweeper` for the table: every `every` seconds it
deletes the rows whose time column is older than `keep`, `batch` rows per transaction, so
the write lock (all of SQLite, the rows on PostgreSQL) is held for one short batch at a time
and the service's own writers get in between. Replicas may sweep the same table at once:
each deletes what is still there. The time column needs an index (the sweep is a range scan).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Callable

import sqlalchemy as sa

from mesh.config import Settings
from mesh.db import Database
from mesh.dberrors import loggable

log = logging.getLogger(__name__)

# The first sweep runs this long after start (a process restarted more often than `every`
# still sweeps), the next ones every `every`.
FIRST_SWEEP_SECONDS = 60.0


def utc_now() -> dt.datetime:
    """The wall clock, in UTC."""
    return dt.datetime.now(dt.UTC)


class Sweeper:
    """Deletes `table`'s rows whose `column` is older than `keep`, periodically."""

    def __init__(
        self,
        db: Database,
        column: sa.Column[dt.datetime],
        *,
        keep: dt.timedelta,
        every: float,
        batch: int = 1000,
        first: float = FIRST_SWEEP_SECONDS,
        clock: Callable[[], dt.datetime] = utc_now,
    ) -> None:
        if keep <= dt.timedelta(0) or every <= 0 or batch < 1:
            raise ValueError("keep and every must be positive, batch at least 1")
        table = column.table
        if not isinstance(table, sa.Table) or not table.primary_key.columns:
            raise ValueError("the column must belong to a table with a primary key")
        self._db = db
        self._table = table
        self.keep = keep
        self.every = every
        self._batch = batch
        self._first = min(first, every)
        self._clock = clock
        self._task: asyncio.Task[None] | None = None
        key = sa.tuple_(*table.primary_key.columns)
        oldest = sa.select(*table.primary_key.columns).where(column < sa.bindparam("cutoff"))
        self._delete = table.delete().where(key.in_(oldest.limit(batch)))

    async def sweep(self, now: dt.datetime) -> int:
        """Delete every row older than `now - keep`, a batch per transaction; returns how
        many went."""
        cutoff = now - self.keep
        total = 0
        while True:
            async with self._db.begin() as conn:
                deleted = (await conn.execute(self._delete, {"cutoff": cutoff})).rowcount
            total += deleted
            if deleted < self._batch:
                return total
            await asyncio.sleep(0)  # the service's writers go first between batches

    def start(self) -> None:
        """Sweep in the background on the running loop until `stop`."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name=f"sweep-{self._table.name}"
            )

    async def stop(self) -> None:
        """Stop sweeping (a batch in progress is rolled back)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def _run(self) -> None:
        await asyncio.sleep(self._first)
        while True:
            try:
                deleted = await self.sweep(self._clock())
            except Exception as e:
                log.warning(
                    "sweeping %s failed; next try in %.0f s",
                    self._table.name,
                    self.every,
                    exc_info=loggable(e),
                )
            else:
                if deleted:
                    log.info("forgot %d %s older than %s", deleted, self._table.name, self.keep)
            await asyncio.sleep(self.every)


def request_id_sweeper(
    db: Database,
    column: sa.Column[dt.datetime],
    settings: Settings,
    clock: Callable[[], dt.datetime] = utc_now,
) -> Sweeper:
    """The sweeper of a request-id table, keeping ids as long as the settings say; `clock`
    is the one the service stamps the rows with."""
    return Sweeper(
        db,
        column,
        keep=dt.timedelta(days=settings.request_id_retention_days),
        every=settings.retention_sweep_seconds,
        clock=clock,
    )

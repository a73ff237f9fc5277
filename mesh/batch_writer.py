"""A group-committed writer's loop, for a service whose batches are decided in memory and
written one statement per table (sales' order_writer.py and booking_writer.py): one writer
task per process (mesh/groupcommit.py) whose every batch
runs in ONE transaction on the writer's held connection, on SQLite holding
`mesh.unit_of_work.writer_lock` so units of work and batches take turns.

A writer says how to decide a batch (`decide`: its reads, a query per table, then each call
in arrival order on that in-memory state, returning the batch's state and one outcome or
domain error per call), how to write it (`write`: one executemany per table) and what to do
once it has committed (`committed`: metrics, waking the relay). Callers are answered only
after the commit: acknowledged = committed. A batch that loses a race (a unique key, a
serialization failure, a deadlock) runs again from its reads; one that keeps failing
raises, and the group committer runs its calls one by one, so a poisoned call fails only
its own caller.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Generic, TypeVar

from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection

from mesh.db import Database
from mesh.groupcommit import GroupCommitter, HeldConnection
from mesh.unit_of_work import ATTEMPTS, begin, retryable, writer_lock

ItemT = TypeVar("ItemT")  # a call waiting for the writer
OutcomeT = TypeVar("OutcomeT")  # its outcome
StateT = TypeVar("StateT")  # a batch's state

# As the member writer: keep the connection while batches follow closely; linger a
# millisecond for company while busy (PostgreSQL's commit_delay); a lone call never waits.
WRITER_IDLE_SECONDS = 5.0
WRITER_LINGER_SECONDS = 0.001
WRITER_MAX_BATCH = 128


class BatchWriter(ABC, Generic[ItemT, OutcomeT, StateT]):
    """A group-committed writer: subclasses give `decide`, `write` and `committed`."""

    name = "batch-writer"

    def __init__(self, db: Database) -> None:
        self.db = db
        self._held = HeldConnection(db, idle_seconds=WRITER_IDLE_SECONDS)
        self._writer: GroupCommitter[ItemT, OutcomeT] = GroupCommitter(
            self._process,
            max_batch=WRITER_MAX_BATCH,
            name=self.name,
            linger=WRITER_LINGER_SECONDS,
        )

    def start(self) -> None:
        """Start the writer task (on the running loop)."""
        self._writer.start()

    async def stop(self) -> None:
        """Finish what is queued, then stop and give the connection back."""
        await self._writer.stop()
        await self._held.close()

    async def submit(self, item: ItemT) -> OutcomeT:
        """Do `item` in the next batch; returns once it has committed (or raises its error)."""
        return await self._writer.submit(item)

    @abstractmethod
    async def decide(
        self, conn: AsyncConnection, items: Sequence[ItemT]
    ) -> tuple[StateT, list[OutcomeT | BaseException]]:
        """The batch's reads, then each item decided in order."""

    @abstractmethod
    async def write(self, conn: AsyncConnection, state: StateT) -> None:
        """The batch's rows, one statement per table."""

    def committed(self, state: StateT) -> None:
        """After the commit (metrics, the relay's wake-up)."""

    async def _process(self, items: Sequence[ItemT]) -> list[OutcomeT | BaseException]:
        lock = writer_lock(self.db)
        for attempt in range(1, ATTEMPTS + 1):
            if lock is not None:
                await lock.acquire()
            try:
                conn = await self._held.get()
                try:
                    await begin(conn)
                    state, outcomes = await self.decide(conn, items)
                    await self.write(conn, state)
                    await conn.commit()
                except BaseException as e:
                    await self._held.drop()
                    if isinstance(e, DBAPIError) and retryable(e) and attempt < ATTEMPTS:
                        continue
                    raise
            finally:
                if lock is not None:
                    lock.release()
            self._held.done()
            self.committed(state)
            return outcomes
        raise AssertionError("unreachable")

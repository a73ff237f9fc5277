"""The relay's claim, mark and release on SQLite, each ONE hand-over to the database thread
(a claim marks the rows the last cycle published in the same hand-over and transaction).

Through SQLAlchemy a claim or a mark is four or five hand-overs (begin, BEGIN IMMEDIATE,
execute, fetch, commit), each a thread switch and a loop wake-up: about 0.7 ms of CPU per
relay cycle, which, with a cycle per committed batch of a busy service, cost the service
more than publishing its events did. Here the same statements (mesh/events/claims.py,
compiled once for SQLite) run with their transaction in one call on the connection's
thread, under the process's SQLite writer queue like every write transaction
(`mesh.unit_of_work.writer_lock`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.dialects import sqlite

from mesh.db import Database
from mesh.events.claims import REFUSED, Claimed, OutboxStatements
from mesh.schema import sqlite_time
from mesh.unit_of_work import on_sqlite_thread, writer_lock

T = TypeVar("T")


def _parsed_time(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC)


class SqliteClaims:
    """Claim, mark sent and release rows of one outbox table on SQLite."""

    def __init__(self, table: sa.Table, statements: OutboxStatements) -> None:
        compiled = statements.claim_sqlite.compile(dialect=sqlite.dialect(paramstyle="named"))
        self._claim_sql = str(compiled)
        self._claim_defaults = {k: v for k, v in compiled.params.items() if v is not None}
        self._table = table.name

    async def claim(
        self,
        db: Database,
        owner: str,
        now: dt.datetime,
        until: dt.datetime,
        n: int,
        *,
        marks: Sequence[int] = (),
        acked_at: dt.datetime | None = None,
    ) -> list[Claimed]:
        """Mark `marks` sent (acknowledged at `acked_at`: the last cycle's), then lease up
        to `n` pending rows (see claims.py), oldest first: one transaction."""
        mark = self._mark(marks, acked_at or now) if marks else None
        params = {
            **self._claim_defaults,
            "me": owner,
            "now": sqlite_time(now),
            "until": sqlite_time(until),
            "n": n,
        }

        def run(raw: Any) -> list[Claimed]:
            if mark is not None:
                raw.execute(*mark)
            if not n:
                return []
            rows = raw.execute(self._claim_sql, params).fetchall()
            return [Claimed._make((*r[:8], _parsed_time(r[8]), r[9])) for r in rows]

        found = await self._in_transaction(db, run)
        found.sort(key=lambda r: r.seq)  # RETURNING promises no order
        return found

    def _mark(self, seqs: Sequence[int], now: dt.datetime) -> tuple[str, tuple[Any, ...]]:
        """The statement marking the acknowledged rows sent (their lease cleared)."""
        sql = (
            f"UPDATE {self._table} SET sent_time = ?, lease_owner = NULL, lease_until = NULL "
            f"WHERE seq IN ({', '.join('?' * len(seqs))})"
        )
        return sql, (sqlite_time(now), *seqs)

    async def mark_sent(self, db: Database, seqs: Sequence[int], now: dt.datetime) -> None:
        """The acknowledged rows are sent (their lease cleared)."""
        mark = self._mark(seqs, now)
        await self._in_transaction(db, lambda raw: raw.execute(*mark))

    async def release(self, db: Database, seqs: Sequence[int], owner: str) -> None:
        """Give back our lease of rows that were not acknowledged."""
        sql = (
            f"UPDATE {self._table} SET lease_owner = NULL, lease_until = NULL "
            f"WHERE seq IN ({', '.join('?' * len(seqs))}) AND lease_owner = ? "
            "AND sent_time IS NULL"
        )
        args = (*seqs, owner)
        await self._in_transaction(db, lambda raw: raw.execute(sql, args))

    async def refuse(self, db: Database, seqs: Sequence[int], owner: str) -> None:
        """Set aside rows JetStream kept refusing (claims.py `refuse`)."""
        sql = (
            f"UPDATE {self._table} SET lease_owner = ?, lease_until = NULL "
            f"WHERE seq IN ({', '.join('?' * len(seqs))}) AND lease_owner = ?"
        )
        args = (REFUSED, *seqs, owner)
        await self._in_transaction(db, lambda raw: raw.execute(sql, args))

    @staticmethod
    async def _in_transaction(db: Database, fn: Callable[[Any], T]) -> T:
        def run(raw: Any) -> T:
            # The relay's own bookkeeping commits without an fsync of its own (WAL,
            # synchronous=NORMAL for this transaction only): a lease or a mark lost to a
            # power cut means an event published again, which JetStream's duplicate window
            # and every consumer's inbox drop; the next durable commit of the service
            # (synchronous=FULL) syncs the WAL with these in it. An fsync per relay commit
            # would hold the write lock the service's own commits wait for.
            level = raw.execute("PRAGMA synchronous").fetchone()[0]
            raw.execute("PRAGMA synchronous=NORMAL")
            try:
                raw.execute("BEGIN IMMEDIATE")
                try:
                    out = fn(raw)
                    raw.commit()
                except BaseException:
                    raw.rollback()
                    raise
            finally:
                raw.execute(f"PRAGMA synchronous={int(level)}")
            return out

        lock = writer_lock(db)
        assert lock is not None, "SQLite only"
        async with lock, db.engine.connect() as conn:
            return await on_sqlite_thread(conn, run)

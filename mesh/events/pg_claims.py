"""The relay's claim on PostgreSQL: one pipeline on a connection it keeps.

Under load a round trip to PostgreSQL costs what the server's scheduling makes it (2-3 ms
each on this 2-core machine at a load of 7, where a claim through the pool took 19 ms);
the claim is on the path of every event's delivery, so it takes as few as it can. Two
statements and the commit go in ONE pipeline (one round trip), straight on the psycopg
connection (SQLAlchemy's execution and result machinery cost more of the relay's CPU than
PostgreSQL's reply; the lead's intake batch does the same, services/lead/store):
1. the advisory lock that serialises claims (claims.py), `synchronous_commit = off` for
   this transaction (a lease or mark lost in a crash costs a duplicate publish, which
   JetStream's duplicate window and the inboxes drop, never an event), and the mark of
   the rows the last cycle published, in ONE statement (the mark's rows are this relay's
   lease, which no other claim takes, so it needs no lock before it);
2. the claim itself (claims.py `claim_pg`, compiled once), which, being the next
   statement, sees every lease committed before the lock was granted;
then the commit. The connection is held from one cycle to the next (mesh.groupcommit's
`HeldConnection`: no checkout ping, no reset on return); a failure drops it.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncConnection

from mesh.db import Database
from mesh.events.claims import Claimed, OutboxStatements
from mesh.groupcommit import HeldConnection


def _claimed_row(cursor: Any) -> Any:
    """psycopg's row factory for the claim: a `Claimed` per row, its time in UTC (the
    connection's zone may be another; SQLAlchemy's UtcDateTime did this before)."""

    def make(values: Sequence[Any]) -> Claimed:
        seq, id_, subject, aggregate, type_, payload, parent, state, created, attempts = values
        return Claimed(seq, id_, subject, aggregate, type_, bytes(payload), parent, state,
                       created.astimezone(dt.UTC), attempts)  # fmt: skip

    return make


class PgClaims:
    """Mark and claim rows of one outbox table on PostgreSQL (see the module docstring)."""

    def __init__(self, db: Database, table: sa.Table, statements: OutboxStatements, key: int):
        self._db = db
        self._held = HeldConnection(db)
        compiled = statements.claim_pg.compile(dialect=postgresql.psycopg.dialect())
        self._claim_sql = str(compiled)
        # The statement's own literals (the `attempts + 1`), bound by name like the rest.
        self._claim_defaults = {k: v for k, v in compiled.params.items() if v is not None}
        self._key = key
        self._start_sql = (
            f"WITH marked AS (UPDATE {table.name} SET sent_time = %(now)s, lease_owner = NULL, "
            "lease_until = NULL WHERE seq = ANY(CAST(%(seqs)s AS bigint[])) RETURNING seq) "
            "SELECT pg_advisory_xact_lock(CAST(%(key)s AS bigint)), "
            "set_config('synchronous_commit', 'off', true), (SELECT count(*) FROM marked)"
        )

    async def claim(
        self,
        owner: str,
        now: dt.datetime,
        until: dt.datetime,
        n: int,
        *,
        marks: Sequence[int],
        acked_at: dt.datetime,
        hold: bool = False,
    ) -> list[Any]:
        """Mark `marks` sent (acknowledged at `acked_at`), then lease up to `n` pending rows,
        oldest first: one transaction (`hold`: on the held connection, for the running
        relay; else on one from the pool, given back)."""
        start = {"now": acked_at, "seqs": list(marks), "key": self._key}
        params = {"me": owner, "now": now, "until": until, "n": n}
        if not hold:
            async with self._db.engine.connect() as own:
                return await self._run(own, start, params)
        conn = await self._held.get()
        try:
            rows = await self._run(conn, start, params)
        except BaseException:
            with contextlib.suppress(Exception):
                await self._held.drop()
            raise
        self._held.done()
        return rows

    async def _run(
        self, conn: AsyncConnection, start: dict[str, Any], params: dict[str, Any]
    ) -> list[Any]:
        raw = await conn.get_raw_connection()
        pg: Any = raw.driver_connection
        cursor = None
        try:
            async with pg.pipeline():
                await pg.execute(self._start_sql, start)
                if params["n"]:
                    cursor = pg.cursor(row_factory=_claimed_row)
                    await cursor.execute(self._claim_sql, {**self._claim_defaults, **params})
                await pg.commit()
            rows = list(await cursor.fetchall()) if cursor is not None else []
        except BaseException:
            with contextlib.suppress(Exception):
                await pg.rollback()
            raise
        rows.sort(key=lambda r: r.seq)  # RETURNING promises no order
        return rows

    async def close(self) -> None:
        """Give the held connection back to the pool."""
        await self._held.close()

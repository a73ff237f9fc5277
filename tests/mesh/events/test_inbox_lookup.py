"""The inbox's batch lookup (`Inbox.seen`) stays a search per id as the inbox grows: on
PostgreSQL `event_id IN (...)` was planned as the consumer's whole key range filtered by
the list (every row compared with every id: 73 ms a batch of 256 at ~60k rows), so the
consumer's rate fell with its own history. Checked on both back ends: the answer, and on
PostgreSQL the plan, analysed and not."""

from __future__ import annotations

import datetime as dt
import uuid

import sqlalchemy as sa

from mesh.db import Database
from tests.mesh.events.harness import INBOX

NOW = dt.datetime(2026, 12, 3, tzinfo=dt.UTC)


def _row(consumer: str, event_id: str) -> dict[str, object]:
    return {
        "consumer": consumer,
        "event_id": event_id,
        "type": "t",
        "aggregate": "a",
        "outcome": "handled",
        "received_time": NOW,
        "handled_time": NOW,
        "attempts": 1,
    }


async def test_seen_finds_the_batchs_ids_by_a_search_per_id(db: Database) -> None:
    taken = [str(uuid.uuid4()) for _ in range(20000)]
    async with db.begin() as conn:
        await INBOX.record(conn, [_row("c1", i) for i in taken])
        await INBOX.record(conn, [_row("c2", i) for i in taken[:10]])
    fresh = [str(uuid.uuid4()) for _ in range(250)]
    batch = [*taken[100:106], *fresh]
    async with db.engine.connect() as conn:
        assert await INBOX.seen(conn, "c1", batch) == set(taken[100:106])
        assert await INBOX.seen(conn, "c2", batch) == set()
        assert await INBOX.seen(conn, "c3", batch) == set()
        if conn.dialect.name != "postgresql":
            return
        for analysed in (False, True):
            if analysed:
                await conn.execute(sa.text(f"ANALYZE {INBOX.table.name}"))
            params = {"consumer": "c1", "ids": batch}
            query = str(INBOX.seen_query("postgresql"))
            explained = await conn.execute(sa.text("EXPLAIN ANALYZE " + query), params)
            plan = "\n".join(r[0] for r in explained)
            assert "Seq Scan on" not in plan.replace("Function Scan", ""), plan
            assert "Rows Removed by Filter" not in plan, plan
            assert "Index" in plan and "Limit" in plan, plan

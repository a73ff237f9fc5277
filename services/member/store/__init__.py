"""The member service's tables and the queries it needs (SQLAlchemy 2.0 Core), by aggregate:
`tables` (the schema, as the migrations make it), `rows` (rows to domain records and back),
`members` (a member's row and identities), `points` (the ledger, the row's points columns,
the tier history), `lots` (the ledger's open lots), `plans` (index order on PostgreSQL),
`vehicles`, `relations` (dealers), `consents`, `requests` (what erasure does to request
ids), `batch` (what a group-committed batch of points writes reads and writes;
`batch_lookup` and `batch_write` do it on either back end, `batch_sqlite`,
`batch_postgres`). Queries only: the decisions are the application's (engine.py,
points_writer.py) and the domain's. Callers say `store.members.lock(conn, member_id)`,
`store.tables.members`."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncConnection

from services.member.store import (
    batch,
    batch_postgres,
    batch_sqlite,
    consents,
    erasures,
    lots,
    members,
    plans,
    points,
    relations,
    requests,
    rows,
    tables,
    vehicles,
)
from services.member.store.tables import MIGRATIONS, REQUEST_IDS, metadata, request_ids


async def batch_lookup(
    conn: AsyncConnection,
    member_ids: Sequence[str],
    request_keys: Sequence[batch.RequestKey],
    debtors: Sequence[str] = (),
) -> batch.BatchFound:
    """Lock, then read a points batch's members, identities, request ids and the head of
    the lots of its `debtors` (store/batch.py)."""
    if conn.dialect.name == "sqlite":
        return await batch_sqlite.sqlite_lookup(conn, member_ids, request_keys, debtors)
    return await batch_postgres.postgres_lookup(conn, member_ids, request_keys, debtors)


async def batch_write(conn: AsyncConnection, writes: batch.BatchWrites) -> dict[str, int]:
    """Every write of a points batch and the commit; each booked entry's `seq` by id."""
    if conn.dialect.name == "sqlite":
        return await batch_sqlite.sqlite_write(conn, writes)
    return await batch_postgres.postgres_write(conn, writes)


__all__ = [
    "MIGRATIONS",
    "REQUEST_IDS",
    "batch",
    "batch_lookup",
    "batch_postgres",
    "batch_sqlite",
    "batch_write",
    "consents",
    "erasures",
    "lots",
    "members",
    "metadata",
    "plans",
    "points",
    "relations",
    "request_ids",
    "requests",
    "rows",
    "tables",
    "vehicles",
]

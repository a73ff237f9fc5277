"""The reads and writes of a batch of CreateOrder and PayDeposit (order_writer.py): a query
per table for the whole batch, and one executemany per table to write it back.

A statement through SQLAlchemy's async engine costs several hand-overs to the SQLite thread
(or a PostgreSQL round trip) whatever it carries, so the batch's cost is per table, not per
call. Rows read to be changed are locked on PostgreSQL (`FOR UPDATE`, in key order so two
batches never wait on each other in a cycle); on SQLite the writer holds the write lock.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from services.sales.domain.opportunity import Opportunity
from services.sales.domain.quoting import Quote
from services.sales.store import opportunities as opportunity_store
from services.sales.store import orders as order_store
from services.sales.store import quotes as quote_store
from services.sales.store.locking import for_update
from services.sales.store.orders import OrderRow
from services.sales.store.tables import opportunities, orders, quotes, request_ids

# (scope, request id) -> (fingerprint, result) of one method's request ids
Claimed = dict[tuple[str, str], tuple[str, str]]

_B_ID: sa.BindParameter[str] = sa.bindparam("b_id")
_UPDATE_ORDER = orders.update().where(orders.c.id == _B_ID)
_UPDATE_OPPORTUNITY = opportunities.update().where(opportunities.c.id == _B_ID)


async def claimed(conn: AsyncConnection, method: str, keys: Collection[tuple[str, str]]) -> Claimed:
    """The request ids among `keys` (scope, request id) this method has seen: by the
    primary key (scope, method, request_id) as a whole, which a search by request id alone
    could not use (a scan of every request id kept)."""
    if not keys:
        return {}
    c = request_ids.c
    wanted = sorted((scope, method, rid) for scope, rid in keys)
    query = sa.select(c.scope, c.request_id, c.fingerprint, c.result).where(
        sa.tuple_(c.scope, c.method, c.request_id).in_(wanted)
    )
    return {(r.scope, r.request_id): (r.fingerprint, r.result) for r in await conn.execute(query)}


async def quotes_by_id(conn: AsyncConnection, ids: Collection[str]) -> dict[str, Quote]:
    """The quotes with these ids (kept once, never changed: no lock)."""
    if not ids:
        return {}
    rows = await conn.execute(sa.select(quotes).where(quotes.c.id.in_(sorted(ids))))
    return {q.id: q for q in map(quote_store.record_of, rows)}


async def opportunities_by_id(
    conn: AsyncConnection, ids: Collection[str]
) -> dict[str, Opportunity]:
    """The opportunities with these ids, locked."""
    if not ids:
        return {}
    query = sa.select(opportunities).where(opportunities.c.id.in_(sorted(ids)))
    query = for_update(query.order_by(opportunities.c.id), conn)
    return {o.id: o for o in map(opportunity_store.record_of, await conn.execute(query))}


async def orders_by_id(conn: AsyncConnection, ids: Collection[str]) -> dict[str, OrderRow]:
    """The orders with these ids, locked."""
    if not ids:
        return {}
    query = sa.select(orders).where(orders.c.id.in_(sorted(ids)))
    query = for_update(query.order_by(orders.c.id), conn)
    return {r.order.id: r for r in map(order_store.record_of, await conn.execute(query))}


async def write(
    conn: AsyncConnection,
    *,
    request_id_rows: Sequence[dict[str, Any]],
    new_orders: Sequence[OrderRow],
    changed_orders: Sequence[OrderRow],
    changed_opportunities: Sequence[Opportunity],
) -> None:
    """The batch's rows: request ids and new orders inserted, changed rows written back
    whole, one statement per table."""
    if request_id_rows:
        await conn.execute(request_ids.insert(), list(request_id_rows))
    if new_orders:
        await conn.execute(orders.insert(), [order_store.values_of(r) for r in new_orders])
    if changed_orders:
        rows = [{"b_id": r.order.id, **order_store.values_of(r)} for r in changed_orders]
        await conn.execute(_UPDATE_ORDER, rows)
    if changed_opportunities:
        opps = [{"b_id": o.id, **opportunity_store.values_of(o)} for o in changed_opportunities]
        await conn.execute(_UPDATE_OPPORTUNITY, opps)

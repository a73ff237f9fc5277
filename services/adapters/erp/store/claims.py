"""The rows of `sap_claims`: who is taking which Marque order to SAP, and whether SAP may
have it already (store/tables.py says what a row means; engine.py how it is used).

Each function is one short statement or three, for a transaction of its own around (never
across) the HTTP calls. A claim is taken atomically on both back ends: a new row by INSERT
... ON CONFLICT DO NOTHING RETURNING, an expired lease by a conditional UPDATE ...
RETURNING, so two deliveries of one order (two replicas, a redelivery after `ack_wait`)
never both call SAP for it at the same time.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from services.adapters.erp.store.tables import sap_claims, sap_orders


@dataclass(slots=True)
class Claims:
    """What a claim found for each order asked about."""

    recorded: set[str] = field(default_factory=set)  # SAP order recorded: nothing to do
    held: set[str] = field(default_factory=set)  # another delivery's call is in flight
    fresh: set[str] = field(default_factory=set)  # claimed, never tried: create directly
    retried: set[str] = field(default_factory=set)  # claimed, tried before: look up first


def _insert(conn: AsyncConnection) -> type[sqlite.Insert] | type[postgresql.Insert]:
    return sqlite.Insert if conn.dialect.name == "sqlite" else postgresql.Insert


async def claim(
    conn: AsyncConnection, order_ids: Iterable[str], now: dt.datetime, lease_until: dt.datetime
) -> Claims:
    """Claim these orders for a SAP call until `lease_until` (see the module docstring)."""
    ids = sorted(set(order_ids))
    found = Claims()
    if not ids:
        return found
    recorded = sa.select(sap_orders.c.order_id).where(sap_orders.c.order_id.in_(ids))
    found.recorded = set((await conn.execute(recorded)).scalars())
    todo = [i for i in ids if i not in found.recorded]
    if not todo:
        return found
    c = sap_claims.c
    query = sa.select(c.order_id, c.lease_until).where(c.order_id.in_(todo))
    existing = {row.order_id: row.lease_until for row in await conn.execute(query)}
    new = [i for i in todo if i not in existing]
    if new:
        rows = [
            {"order_id": i, "attempts": 1, "lease_until": lease_until, "claim_time": now}
            for i in new
        ]
        insert = (
            _insert(conn)(sap_claims)
            .values(rows)
            .on_conflict_do_nothing(index_elements=["order_id"])
            .returning(c.order_id)
        )
        found.fresh = set((await conn.execute(insert)).scalars())
    expired = [i for i, until in existing.items() if until <= now]
    if expired:
        update = (
            sa.update(sap_claims)
            .where(c.order_id.in_(expired), c.lease_until <= now)
            .values(attempts=c.attempts + 1, lease_until=lease_until, claim_time=now)
            .returning(c.order_id)
        )
        found.retried = set((await conn.execute(update)).scalars())
    found.held = set(todo) - found.fresh - found.retried
    return found


async def release(conn: AsyncConnection, order_ids: Iterable[str], now: dt.datetime) -> None:
    """End these claims' leases, keeping the rows: the calls failed without a recorded
    result, so the next attempt may start at once and looks SAP up first."""
    ids = sorted(set(order_ids))
    if ids:
        await conn.execute(
            sa.update(sap_claims).where(sap_claims.c.order_id.in_(ids)).values(lease_until=now)
        )


async def forget(conn: AsyncConnection, order_ids: Iterable[str]) -> None:
    """Drop the claims of orders whose result is recorded (in the recording transaction)."""
    ids = sorted(set(order_ids))
    if ids:
        await conn.execute(sa.delete(sap_claims).where(sap_claims.c.order_id.in_(ids)))


async def of_order(conn: AsyncConnection, order_id: str) -> tuple[int, dt.datetime] | None:
    """(attempts, lease_until) of an order's claim (tests, operators)."""
    query = sa.select(sap_claims.c.attempts, sap_claims.c.lease_until).where(
        sap_claims.c.order_id == order_id
    )
    row = (await conn.execute(query)).first()
    return None if row is None else (int(row.attempts), row.lease_until)

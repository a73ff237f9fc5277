"""The rows of `deliveries`: the RDR of a delivered order, as its dealer's DMS took it."""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from services.adapters.dms.domain.model import Delivery, Kind
from services.adapters.dms.store.tables import deliveries

_c = deliveries.c


def _record(row: sa.Row[tuple[object, ...]]) -> Delivery:
    m = row._mapping
    return Delivery(
        order_id=m["order_id"],
        dealer_id=m["dealer_id"],
        kind=Kind(m["kind"]),
        http_status=m["http_status"],
        dms_reference=m["dms_reference"],
        deliver_time=m["deliver_time"],
    )


async def of_order(conn: AsyncConnection, order_id: str) -> Delivery | None:
    """The delivery of an order's RDR."""
    row = (await conn.execute(sa.select(deliveries).where(_c.order_id == order_id))).first()
    return None if row is None else _record(row)


async def recorded_among(conn: AsyncConnection, order_ids: Sequence[str]) -> set[str]:
    """Which of these orders have their RDR delivered."""
    query = sa.select(_c.order_id).where(_c.order_id.in_(list(order_ids)))
    return {row.order_id for row in await conn.execute(query)}


async def insert(conn: AsyncConnection, delivery: Delivery) -> None:
    """Record a delivery (once: the caller has checked it is new)."""
    await conn.execute(
        deliveries.insert().values(
            order_id=delivery.order_id,
            dealer_id=delivery.dealer_id,
            kind=delivery.kind.value,
            http_status=delivery.http_status,
            dms_reference=delivery.dms_reference,
            deliver_time=delivery.deliver_time,
        )
    )


async def count(conn: AsyncConnection) -> int:
    """How many deliveries are recorded (tests)."""
    return int(
        (await conn.execute(sa.select(sa.func.count()).select_from(deliveries))).scalar_one()
    )

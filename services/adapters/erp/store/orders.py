"""The rows of `sap_orders`: a Marque order's SAP sales order, by either key."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from services.adapters.erp.domain.model import SalesOrder, Status
from services.adapters.erp.domain.odata import decimal_text
from services.adapters.erp.store.tables import sap_orders


@dataclass(frozen=True, slots=True)
class Recorded:
    """A recorded order and how the adapter got it (CREATED or FOUND)."""

    order: SalesOrder
    state: str


def _record(row: sa.Row[tuple[object, ...]]) -> Recorded:
    m = row._mapping
    order = SalesOrder(
        sap_sales_order=m["sap_sales_order"],
        order_id=m["order_id"],
        status=Status(m["status"]),
        net_amount=Decimal(m["net_amount"]),
        currency=m["currency"],
        create_time=m["sap_create_time"],
    )
    return Recorded(order, m["state"])


async def of_order(conn: AsyncConnection, order_id: str) -> Recorded | None:
    """The recorded SAP order of a Marque order."""
    row = (
        await conn.execute(sa.select(sap_orders).where(sap_orders.c.order_id == order_id))
    ).first()
    return None if row is None else _record(row)


async def recorded_among(conn: AsyncConnection, order_ids: Sequence[str]) -> set[str]:
    """Which of these Marque orders have their SAP order recorded."""
    query = sa.select(sap_orders.c.order_id).where(sap_orders.c.order_id.in_(list(order_ids)))
    return {row.order_id for row in await conn.execute(query)}


async def of_sap_number(conn: AsyncConnection, number: str) -> Recorded | None:
    """The recorded order of a SAP number."""
    query = sa.select(sap_orders).where(sap_orders.c.sap_sales_order == number)
    row = (await conn.execute(query)).first()
    return None if row is None else _record(row)


def _row(order: SalesOrder, state: str, now: dt.datetime) -> dict[str, object]:
    return {
        "order_id": order.order_id,
        "sap_sales_order": order.sap_sales_order,
        "state": state,
        "status": order.status.value,
        "net_amount": decimal_text(order.net_amount),
        "currency": order.currency,
        "sap_create_time": order.create_time,
        "record_time": now,
    }


async def insert(conn: AsyncConnection, order: SalesOrder, state: str, now: dt.datetime) -> None:
    """Record a Marque order's SAP order (once: the caller has checked it is new)."""
    await insert_many(conn, [(order, state)], now)


async def insert_many(
    conn: AsyncConnection, recorded: Sequence[tuple[SalesOrder, str]], now: dt.datetime
) -> None:
    """Record these (order, state) pairs in one statement (new ones: the caller checked)."""
    if recorded:
        await conn.execute(sap_orders.insert(), [_row(o, s, now) for o, s in recorded])


async def count(conn: AsyncConnection) -> int:
    """How many orders are recorded (tests, metrics)."""
    return int(
        (await conn.execute(sa.select(sa.func.count()).select_from(sap_orders))).scalar_one()
    )

"""Reads and writes of saleses, and rows to domain records and back. One function per
query the service needs; every one an index look-up."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from services.sales.domain.model import Sales
from services.sales.store.tables import saleses

_c = saleses.c
_by_id = sa.select(saleses).where(_c.id == sa.bindparam("p_id"))


def _record(row: Any) -> Sales:
    return Sales(
        id=row.id,
        dealer_id=row.dealer_id,
        display_name=row.display_name,
        create_time=row.create_time,
        create_actor=row.create_actor,
    )


async def insert_sales(conn: AsyncConnection, record: Sales) -> None:
    """Insert a new sales (in the caller's transaction)."""
    await conn.execute(
        saleses.insert().values(
            id=record.id,
            dealer_id=record.dealer_id,
            display_name=record.display_name,
            create_time=record.create_time,
            create_actor=record.create_actor,
        )
    )


async def get_sales(conn: AsyncConnection, sales_id: str) -> Sales | None:
    """The sales with this id, if any (the primary key)."""
    row = (await conn.execute(_by_id, {"p_id": sales_id})).first()
    return None if row is None else _record(row)

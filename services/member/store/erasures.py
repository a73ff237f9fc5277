"""Queries on erasure receipts: which service has erased a member, when (erasure_receipts)."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from services.member.domain.erasure import ErasureReceipt
from services.member.store.tables import erasure_receipts

_e = erasure_receipts.c


async def record(
    conn: AsyncConnection, member_id: str, service: str, items: int, done: dt.datetime
) -> bool:
    """Keep a service's receipt, the first one (a redelivered answer changes nothing);
    whether it was new."""
    found = await conn.scalar(
        sa.select(_e.done_time).where(_e.member_id == member_id, _e.service == service)
    )
    if found is not None:
        return False
    await conn.execute(
        erasure_receipts.insert().values(
            member_id=member_id, service=service, item_count=items, done_time=done
        )
    )
    return True


async def receipts_of(conn: AsyncConnection, member_id: str) -> list[ErasureReceipt]:
    """A member's receipts, by service (pk_erasure_receipts)."""
    rows = await conn.execute(
        sa.select(_e.service, _e.item_count, _e.done_time)
        .where(_e.member_id == member_id)
        .order_by(_e.service)
    )
    return [ErasureReceipt(r.service, r.item_count, r.done_time) for r in rows]

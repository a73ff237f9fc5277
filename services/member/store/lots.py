"""Queries on the stored open lots (`point_lots`, migration 0006), kept with the entries.

`apply` is called for every entry booked outside the points batch (store/points.py `book`;
the batch writes its own lot changes, store/batch.py): a credit opens a lot, an EXPIRE
closes its lot, a FIFO debit takes from the head of the queue. Every read is a range of
ix_point_lots_member_id_fifo: the due lots, the head, the first expiry.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from mesh.schema import UtcDateTime
from services.member.domain import ledger
from services.member.domain.ledger import CREDITS, Entry, EntryKind, Lot
from services.member.store.plans import in_index_order
from services.member.store.tables import point_lots

_l = point_lots.c
_UTC = UtcDateTime()
# How many lots a FIFO debit reads at a time from the head of the queue.
HEAD = 64
_FIFO = (_l.expire_time, _l.earned_time, _l.lot_id)
_COLUMNS = (_l.lot_id, _l.remaining, _l.expire_time, _l.earned_time)
_MEMBER = _l.member_id == sa.bindparam("m")
_HEAD = sa.select(*_COLUMNS).where(_MEMBER).order_by(*_FIFO).limit(sa.bindparam("n"))
_DUE = (
    sa.select(*_COLUMNS)
    .where(_MEMBER, _l.expire_time <= sa.bindparam("now", type_=_UTC))
    .order_by(*_FIFO)
)
_ALL = sa.select(*_COLUMNS).where(_MEMBER).order_by(*_FIFO)
_FIRST = sa.select(_l.expire_time).where(_MEMBER).order_by(*_FIFO).limit(1)
_INSERT = point_lots.insert()
_SET = (
    point_lots.update()
    .where(_l.lot_id == sa.bindparam("p_lot"))
    .values(remaining=sa.bindparam("p_remaining"))
)
_DELETE = point_lots.delete().where(_l.lot_id == sa.bindparam("p_lot"))
_ONE = sa.select(*_COLUMNS).where(_l.lot_id == sa.bindparam("p_lot"))


def _lot(r: Any) -> Lot:
    return Lot(r.lot_id, int(r.remaining), r.expire_time, r.earned_time)


def lot_values(member_id: str, lot: Lot) -> dict[str, Any]:
    """The `point_lots` row of a lot."""
    return {
        "lot_id": lot.id,
        "member_id": member_id,
        "expire_time": lot.expire_at,
        "earned_time": lot.earned_at,
        "remaining": lot.remaining,
    }


async def due(conn: AsyncConnection, member_id: str, now: dt.datetime) -> list[Lot]:
    """The member's lots expiring at or before `now`, FIFO order (only those are read)."""
    return [_lot(r) for r in await conn.execute(_DUE, {"m": member_id, "now": now})]


async def open_lots(conn: AsyncConnection, member_id: str) -> list[Lot]:
    """All of the member's open lots, FIFO order (a merge carries every one over)."""
    return [_lot(r) for r in await conn.execute(_ALL, {"m": member_id})]


async def first_expiry(conn: AsyncConnection, member_id: str) -> dt.datetime | None:
    """When the member's earliest open lot expires (None: no points left)."""
    rows = await in_index_order(conn, _FIRST, {"m": member_id})
    return rows[0][0] if rows else None


async def take(conn: AsyncConnection, member_id: str, amount: int) -> None:
    """A FIFO debit of `amount`: from the head of the queue, `HEAD` lots at a time; a
    lot spent is deleted."""
    while amount > 0:
        head = [_lot(r) for r in await in_index_order(conn, _HEAD, {"m": member_id, "n": HEAD})]
        if not head:
            raise ValueError("ledger inconsistent: a debit exceeds the open lots")
        changed, amount = ledger.take(head, amount)
        await write(conn, member_id, [], changed)


async def write(
    conn: AsyncConnection, member_id: str, opened: Sequence[Lot], changed: Sequence[Lot]
) -> None:
    """Insert `opened` lots, set the remaining of `changed` ones (deleting those spent)."""
    if opened:
        await conn.execute(_INSERT, [lot_values(member_id, lot) for lot in opened])
    spent = [{"p_lot": lot.id} for lot in changed if lot.remaining <= 0]
    kept = [{"p_lot": lot.id, "p_remaining": lot.remaining} for lot in changed if lot.remaining]
    if spent:
        await conn.execute(_DELETE, spent)
    if kept:
        await conn.execute(_SET, kept)


async def apply(conn: AsyncConnection, member_id: str, entries: Sequence[Entry]) -> None:
    """The lot changes of entries just booked, in booking order."""
    for e in entries:
        if e.kind in CREDITS:
            await write(conn, member_id, [ledger.lot_of(e)], [])
        elif e.kind is EntryKind.EXPIRE:
            row = (await conn.execute(_ONE, {"p_lot": e.lot_id})).first()
            if row is None or row.remaining + e.points < 0:
                raise ValueError("ledger inconsistent: an expiry exceeds its lot")
            lot = _lot(row)
            lot.remaining += e.points
            await write(conn, member_id, [], [lot])
        else:
            await take(conn, member_id, -e.points)

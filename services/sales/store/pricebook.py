"""Reads and writes of the price book (`trims`): an entry is replaced whole by its trim
code and first day; the whole book is read at once, for the engine's cache."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from services.sales.domain.pricebook import Option, Trim
from services.sales.store.money import cents, from_cents
from services.sales.store.tables import trims

_c = trims.c


def _row(trim: Trim, now: dt.datetime) -> dict[str, Any]:
    options = [{"code": o.code, "name": o.name, "price_fen": cents(o.price)} for o in trim.options]
    return {
        "trim_code": trim.trim_code,
        "effective_from": trim.effective_from.isoformat(),
        "effective_until": trim.effective_until.isoformat() if trim.effective_until else None,
        "model_code": trim.model_code,
        "name": trim.name,
        "price_fen": cents(trim.price),
        "nev_listed": trim.nev_listed,
        "options": json.dumps(options, ensure_ascii=False, separators=(",", ":")),
        "update_time": now,
    }


def _record(row: Any) -> Trim:
    options = tuple(
        Option(o["code"], o["name"], from_cents(o["price_fen"])) for o in json.loads(row.options)
    )
    until = dt.date.fromisoformat(row.effective_until) if row.effective_until else None
    return Trim(
        model_code=row.model_code,
        trim_code=row.trim_code,
        name=row.name,
        price=from_cents(row.price_fen),
        nev_listed=bool(row.nev_listed),
        effective_from=dt.date.fromisoformat(row.effective_from),
        effective_until=until,
        options=options,
    )


async def put(conn: AsyncConnection, trim: Trim, now: dt.datetime) -> None:
    """Write the entry, replacing the one of the same trim and first day."""
    key = (_c.trim_code == trim.trim_code) & (_c.effective_from == trim.effective_from.isoformat())
    await conn.execute(trims.delete().where(key))
    await conn.execute(trims.insert().values(**_row(trim, now)))


async def all_entries(conn: AsyncConnection) -> list[Trim]:
    """The whole price book (hundreds of rows, read off the request path)."""
    rows = await conn.execute(sa.select(trims).order_by(_c.trim_code, _c.effective_from))
    return [_record(row) for row in rows]


async def entries_of(conn: AsyncConnection, trim_code: str) -> list[Trim]:
    """Every entry of one trim (the primary key's prefix)."""
    rows = await conn.execute(sa.select(trims).where(_c.trim_code == trim_code))
    return [_record(row) for row in rows]


__all__ = ["all_entries", "entries_of", "put"]

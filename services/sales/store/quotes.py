"""Reads and writes of quotes: inserted once, read by primary key."""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from services.sales.domain.quoting import Quote
from services.sales.store.quote_codec import priced_json, priced_of, spec_json, spec_of
from services.sales.store.tables import quotes

_q = quotes.c


def _record(row: Any) -> Quote:
    return Quote(
        id=row.id,
        opportunity_id=row.opportunity_id,
        dealer_id=row.dealer_id,
        member_id=row.member_id,
        spec=spec_of(row.spec),
        priced=priced_of(row.figures),
        valid_until=dt.date.fromisoformat(row.valid_until),
        create_time=row.create_time,
    )


async def insert(conn: AsyncConnection, quote: Quote) -> None:
    """A new quote."""
    await conn.execute(
        quotes.insert().values(
            id=quote.id,
            opportunity_id=quote.opportunity_id,
            dealer_id=quote.dealer_id,
            member_id=quote.member_id,
            spec=spec_json(quote.spec),
            figures=priced_json(quote.priced),
            valid_until=quote.valid_until.isoformat(),
            create_time=quote.create_time,
        )
    )


async def get(conn: AsyncConnection, quote_id: str) -> Quote | None:
    """The quote with this id."""
    row = (await conn.execute(sa.select(quotes).where(_q.id == quote_id))).first()
    return None if row is None else _record(row)


record_of = _record  # the batch writer's name for the row codec (store/order_batch.py)

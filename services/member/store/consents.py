"""Queries on consent decisions (append-only)."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from services.member.domain.consent import ConsentEvent
from services.member.store.rows import consent_event, consent_values
from services.member.store.tables import consent_events

_c = consent_events.c


async def insert(conn: AsyncConnection, event: ConsentEvent, now: dt.datetime) -> None:
    """Append a decision, recorded at `now`."""
    await conn.execute(consent_events.insert().values(consent_values(event, now)))


async def events_of(conn: AsyncConnection, member_id: str) -> list[ConsentEvent]:
    """Every decision of the member, in recording order."""
    query = sa.select(consent_events).where(_c.member_id == member_id).order_by(_c.seq)
    return [consent_event(r) for r in await conn.execute(query)]

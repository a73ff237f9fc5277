"""Reads and writes of opportunities and their follow-ups; each by primary key, by the
unique lead id, or by a dealer index in keyset order."""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from services.sales.domain.opportunity import Channel, FollowUp, Opportunity, Stage
from services.sales.store import keyset
from services.sales.store.locking import for_update
from services.sales.store.tables import follow_ups, opportunities

_o = opportunities.c
_f = follow_ups.c
OPEN = (Stage.DELIVERED.value, Stage.LOST.value)
ERASED = "(erased)"


def _row(opp: Opportunity) -> dict[str, Any]:
    return {
        "id": opp.id,
        "lead_id": opp.lead_id,
        "dealer_id": opp.dealer_id,
        "member_id": opp.member_id,
        "model_interest": opp.model_interest,
        "stage": opp.stage.value,
        "next_action": opp.next_action,
        "next_action_due": opp.next_action_due,
        "lost_reason": opp.lost_reason,
        "version": opp.version,
        "create_time": opp.create_time,
        "update_time": opp.update_time,
    }


def _record(row: Any) -> Opportunity:
    return Opportunity(
        id=row.id,
        lead_id=row.lead_id,
        dealer_id=row.dealer_id,
        member_id=row.member_id,
        model_interest=row.model_interest,
        stage=Stage(row.stage),
        next_action=row.next_action,
        next_action_due=row.next_action_due,
        lost_reason=row.lost_reason,
        version=row.version,
        create_time=row.create_time,
        update_time=row.update_time,
    )


async def insert(conn: AsyncConnection, opp: Opportunity) -> None:
    """A new opportunity (the lead id is unique: a twin insert fails)."""
    await conn.execute(opportunities.insert().values(**_row(opp)))


async def update(conn: AsyncConnection, opp: Opportunity) -> None:
    """Write a changed opportunity back whole."""
    await conn.execute(opportunities.update().where(_o.id == opp.id).values(**_row(opp)))


async def get(conn: AsyncConnection, opp_id: str, *, lock: bool = False) -> Opportunity | None:
    """The opportunity with this id (locked on PostgreSQL when `lock`)."""
    query = sa.select(opportunities).where(_o.id == opp_id)
    query = for_update(query, conn, lock=lock)
    row = (await conn.execute(query)).first()
    return None if row is None else _record(row)


async def of_lead(conn: AsyncConnection, lead_id: str) -> Opportunity | None:
    """The opportunity of a lead (uq_opportunities_lead_id)."""
    query = sa.select(opportunities).where(_o.lead_id == lead_id)
    query = for_update(query, conn)
    row = (await conn.execute(query)).first()
    return None if row is None else _record(row)


async def page(
    conn: AsyncConnection,
    dealer_id: str,
    *,
    stage: Stage | None,
    overdue_at: dt.datetime | None,
    after: str | None,
    limit: int,
) -> list[Opportunity]:
    """A dealer's opportunities, newest first, by stage (ix_opportunities_dealer_stage) or
    with an open next action due before `overdue_at`."""
    where = [_o.dealer_id == dealer_id, keyset.after(opportunities, after)]
    if stage is not None:
        where.append(_o.stage == stage.value)
    if overdue_at is not None:
        where += [_o.next_action_due < overdue_at, _o.stage.not_in(OPEN)]
    query = (
        sa.select(opportunities)
        .where(*where)
        .order_by(*keyset.newest_first(opportunities))
        .limit(limit)
    )
    return [_record(row) for row in await conn.execute(query)]


def _follow_up_row(f: FollowUp) -> dict[str, Any]:
    return {
        "id": f.id,
        "opportunity_id": f.opportunity_id,
        "dealer_id": f.dealer_id,
        "channel": f.channel.value,
        "outcome": f.outcome,
        "next_action": f.next_action,
        "next_action_due": f.next_action_due,
        "actor": f.actor,
        "create_time": f.time,
    }


def _follow_up(row: Any) -> FollowUp:
    return FollowUp(
        id=row.id,
        opportunity_id=row.opportunity_id,
        dealer_id=row.dealer_id,
        channel=Channel(row.channel),
        outcome=row.outcome,
        note="",
        next_action=row.next_action,
        next_action_due=row.next_action_due,
        actor=row.actor,
        time=row.create_time,
    )


async def insert_follow_up(conn: AsyncConnection, f: FollowUp) -> None:
    """A new follow-up."""
    await conn.execute(follow_ups.insert().values(**_follow_up_row(f)))


async def get_follow_up(conn: AsyncConnection, follow_up_id: str) -> FollowUp | None:
    """The follow-up with this id."""
    row = (await conn.execute(sa.select(follow_ups).where(_f.id == follow_up_id))).first()
    return None if row is None else _follow_up(row)


async def follow_ups_of(
    conn: AsyncConnection, opp_id: str, after: str | None, limit: int
) -> list[FollowUp]:
    """An opportunity's follow-ups, newest first (ix_follow_ups_opportunity)."""
    query = (
        sa.select(follow_ups)
        .where(_f.opportunity_id == opp_id, keyset.after(follow_ups, after))
        .order_by(*keyset.newest_first(follow_ups))
        .limit(limit)
    )
    return [_follow_up(row) for row in await conn.execute(query)]


async def erase_notes_of_member(conn: AsyncConnection, member_id: str) -> int:
    """Blank the free text of an erased member's opportunities' follow-ups (it may name
    the person); the facts (when, how, stage) stay. The number of follow-ups blanked."""
    ids = sa.select(_o.id).where(_o.member_id == member_id).scalar_subquery()
    done = await conn.execute(
        follow_ups.update()
        .where(_f.opportunity_id.in_(ids), _f.outcome != ERASED)
        .values(outcome=ERASED, next_action="")
    )
    return int(done.rowcount or 0)


# The batch writer's names for the row codec (store/order_batch.py).
values_of = _row
record_of = _record

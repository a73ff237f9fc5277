"""Queries on the dealers a member relates to."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from services.member.domain.relations import DealerRelation, Relation
from services.member.store.rows import dealer_relation
from services.member.store.tables import dealer_relations, vehicles

_r, _v = dealer_relations.c, vehicles.c


async def exists(conn: AsyncConnection, member_id: str, rel: DealerRelation) -> bool:
    """Whether the member has this relation already."""
    seq = await conn.scalar(
        sa.select(_r.seq).where(
            _r.member_id == member_id,
            _r.dealer_id == rel.dealer_id,
            _r.relation == rel.relation.value,
            _r.vin == rel.vin,
        )
    )
    return seq is not None


async def insert(
    conn: AsyncConnection, member_id: str, rel: DealerRelation, now: dt.datetime
) -> None:
    """Record a relation (the same one twice: IntegrityError)."""
    await conn.execute(
        dealer_relations.insert().values(
            member_id=member_id,
            dealer_id=rel.dealer_id,
            relation=rel.relation.value,
            vin=rel.vin,
            create_time=now,
        )
    )


async def relations_of(conn: AsyncConnection, member_id: str) -> list[DealerRelation]:
    """The member's relations, in recording order."""
    query = sa.select(dealer_relations).where(_r.member_id == member_id)
    return [dealer_relation(r) for r in await conn.execute(query.order_by(_r.seq))]


async def dealer_related(conn: AsyncConnection, dealer_id: str, member_id: str) -> bool:
    """True if the member currently owns a car the dealer sold or serviced, or is linked to
    one of the dealer's leads."""
    serviced = sa.exists().where(
        _r.vin == _v.vin, _r.dealer_id == dealer_id, _r.relation == Relation.SERVICE.value
    )
    owns = sa.exists().where(_v.owner_id == member_id, sa.or_(_v.dealer_id == dealer_id, serviced))
    lead = sa.exists().where(
        _r.member_id == member_id, _r.dealer_id == dealer_id, _r.relation == Relation.LEAD.value
    )
    return bool(await conn.scalar(sa.select(sa.or_(owns, lead))))

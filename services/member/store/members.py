"""Queries on a member's row and its identities.

Every write that touches a member locks its row first (`lock`: `SELECT ... FOR UPDATE` on
PostgreSQL; SQLite's writer is alone anyway, BEGIN IMMEDIATE, and its compiler drops the
clause), so the reads that decide a change and the change are one step.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from services.member.domain.identities import IdentityKey
from services.member.domain.model import IdentityRecord, MemberRow
from services.member.domain.rules import MemberState
from services.member.store.rows import identity_records, member_row
from services.member.store.tables import identities, members

_m, _i = members.c, identities.c
_BY_ID = sa.select(members).where(_m.id == sa.bindparam("p_id"))
_LOCK = _BY_ID.with_for_update()
_IDENTITIES = (
    sa.select(identities)
    .where(_i.member_id == sa.bindparam("p_member"), _i.erase_time.is_(None))
    .order_by(_i.id)
)


async def lock(conn: AsyncConnection, member_id: str) -> MemberRow | None:
    """The member's row, locked for the rest of the transaction (None: no such member)."""
    row = (await conn.execute(_LOCK, {"p_id": member_id})).first()
    return None if row is None else member_row(row)


async def read(conn: AsyncConnection, member_id: str) -> MemberRow | None:
    """The member's row as stored, unlocked."""
    row = (await conn.execute(_BY_ID, {"p_id": member_id})).first()
    return None if row is None else member_row(row)


async def state_of(conn: AsyncConnection, member_id: str) -> tuple[MemberState, str] | None:
    """(state, merged_into) of a member, or None if unknown."""
    row = (
        await conn.execute(sa.select(_m.state, _m.merged_into).where(_m.id == member_id))
    ).first()
    return None if row is None else (MemberState(row.state), row.merged_into)


async def insert(
    conn: AsyncConnection,
    member_id: str,
    *,
    display_name: str,
    city: str,
    now: dt.datetime,
    actor: str,
) -> None:
    """A new active member with no ledger yet: no qualifying points, and none will leave."""
    await conn.execute(
        members.insert().values(
            id=member_id,
            state=MemberState.ACTIVE.value,
            display_name=display_name,
            city=city,
            balance=0,
            qualifying=0,
            qualifying_asof=now,
            create_time=now,
            create_actor=actor,
            update_time=now,
            update_actor=actor,
        )
    )


async def update(conn: AsyncConnection, member_id: str, **values: Any) -> None:
    """Set columns of the member's row."""
    await conn.execute(members.update().where(_m.id == member_id).values(**values))


async def repoint_merged(conn: AsyncConnection, from_id: str, to_id: str) -> None:
    """Members merged into `from_id` point at `to_id` instead."""
    await conn.execute(members.update().where(_m.merged_into == from_id).values(merged_into=to_id))


async def erase_merged_into(
    conn: AsyncConnection, member_id: str, blank: dict[str, str], now: dt.datetime
) -> list[str]:
    """Blank and mark erased the members merged into `member_id`; their ids."""
    ids = await conn.scalars(
        members.update()
        .where(_m.merged_into == member_id)
        .values(**blank, erase_time=now)
        .returning(_m.id)
    )
    return list(ids)


# ------------------------------------------------------------------------------ identities


async def identities_of(conn: AsyncConnection, member_id: str) -> tuple[IdentityRecord, ...]:
    """The member's live identities, in link order."""
    return identity_records((await conn.execute(_IDENTITIES, {"p_member": member_id})).all())


async def identity_ids(conn: AsyncConnection, member_id: str) -> list[int]:
    """The row ids of the member's live identities."""
    query = sa.select(_i.id).where(_i.member_id == member_id, _i.erase_time.is_(None))
    return list((await conn.scalars(query)).all())


async def member_id_for(conn: AsyncConnection, key: IdentityKey) -> str | None:
    """The member holding a live identity, if any (uq_identities_live)."""
    return await conn.scalar(
        sa.select(_i.member_id).where(
            _i.type == key.type.value,
            _i.app_id == key.app_id,
            _i.value == key.value,
            _i.erase_time.is_(None),
        )
    )


async def insert_identity(
    conn: AsyncConnection, member_id: str, key: IdentityKey, now: dt.datetime
) -> None:
    """Link an identity (a live one of another member: IntegrityError)."""
    await conn.execute(
        identities.insert().values(
            member_id=member_id,
            type=key.type.value,
            app_id=key.app_id,
            value=key.value,
            link_time=now,
        )
    )


async def move_identities(conn: AsyncConnection, src: str, dst: str) -> None:
    """Every live identity of `src` becomes `dst`'s."""
    await conn.execute(
        identities.update()
        .where(_i.member_id == src, _i.erase_time.is_(None))
        .values(member_id=dst)
    )


async def tombstone_identity(
    conn: AsyncConnection, identity_id: int, stone: str, now: dt.datetime
) -> None:
    """Overwrite an identity's value with a tombstone (erasure)."""
    await conn.execute(
        identities.update()
        .where(_i.id == identity_id)
        .values(value=stone, app_id="", erase_time=now)
    )

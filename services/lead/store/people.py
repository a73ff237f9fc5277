"""A person's leads, as member's events name the person (a contact digest, mesh/contact.py):
linking them to a member, erasing them, and giving older leads their digest."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from services.lead.domain.erasure import ERASED_PAYLOAD
from services.lead.store.tables import lead_keys, leads, touchpoints

_l = leads.c


async def lead_ids_of(conn: AsyncConnection, digests: Sequence[str]) -> list[str]:
    """The leads of the people with these digests (ix_leads_contact_digest)."""
    if not digests:
        return []
    query = sa.select(_l.id).where(_l.contact_digest.in_(sorted(set(digests)))).order_by(_l.id)
    return list((await conn.execute(query)).scalars())


async def link_member(
    conn: AsyncConnection, digests: Sequence[str], member_id: str, *, replace: bool
) -> int:
    """Say which member the people's leads belong to; `replace=False` keeps a member id
    already set (a registration), `True` overwrites it (a merge names the survivor)."""
    if not digests:
        return 0
    query = (
        sa.update(leads)
        .where(_l.contact_digest.in_(sorted(set(digests))), _l.member_id != member_id)
        .values(member_id=member_id)
    )
    if not replace:
        query = query.where(_l.member_id == "")
    return (await conn.execute(query)).rowcount or 0


async def erase_rows_beside(conn: AsyncConnection, lead_ids: Sequence[str]) -> None:
    """What an erasure changes beside the lead rows: the touchpoints lose the channel's
    lead id and the payload hash, the dedup keys (which hold the mobile) go."""
    if not lead_ids:
        return
    await conn.execute(
        sa.update(touchpoints)
        .where(touchpoints.c.lead_id.in_(lead_ids))
        .values(channel_lead_id="", payload_ref=ERASED_PAYLOAD)
    )
    await conn.execute(sa.delete(lead_keys).where(lead_keys.c.lead_id.in_(lead_ids)))


async def backfill_digests(
    conn: AsyncConnection, digest_of: Callable[[str], str], limit: int = 1000
) -> int:
    """Give up to `limit` leads taken in before digests existed their digest; how many."""
    query = (
        sa.select(_l.id, _l.mobile_e164, _l.email)
        .where(
            _l.contact_digest.is_(None),
            sa.or_(_l.mobile_e164.is_not(None), _l.email.is_not(None)),
        )
        .limit(limit)
    )
    rows = (await conn.execute(query)).all()
    if not rows:
        return 0
    params: list[dict[str, Any]] = [
        {"b_id": r.id, "d": digest_of(r.mobile_e164 or f"email:{r.email}")} for r in rows
    ]
    update = sa.update(leads).where(_l.id == sa.bindparam("b_id"))
    await conn.execute(update.values(contact_digest=sa.bindparam("d")), params)
    return len(rows)

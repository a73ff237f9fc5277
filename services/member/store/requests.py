"""Queries on the request ids beyond what every service does with them (REQUEST_IDS, the
shared `mesh.idempotency.RequestIds`): erasure replaces the fingerprints of a member's
requests, which hashed personal data."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from services.member.store.tables import request_ids

_q = request_ids.c


async def methods_of(conn: AsyncConnection, member_ids: list[str]) -> list[tuple[str, str]]:
    """The (method, member) pairs the members' remembered requests concern
    (ix_request_ids_member_id)."""
    pairs = sa.select(_q.method, _q.member_id).distinct().where(_q.member_id.in_(member_ids))
    return [(r.method, r.member_id) for r in await conn.execute(pairs)]


async def set_fingerprint(
    conn: AsyncConnection, member_id: str, method: str, fingerprint: str
) -> None:
    """Replace the fingerprints of the member's requests of `method`."""
    await conn.execute(
        request_ids.update()
        .where(_q.member_id == member_id, _q.method == method)
        .values(fingerprint=fingerprint)
    )

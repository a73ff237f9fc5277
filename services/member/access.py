"""Who may see which member, decided once per call (engine.py asks before any work), and
the reads that decision needs: a dealer's relation, a merged customer's new id."""

from __future__ import annotations

from mesh.db import Database
from mesh.identity import Caller, Kind
from services.member import store
from services.member.domain import consent, identities
from services.member.domain import visibility as vis
from services.member.domain.consent import ConsentState
from services.member.domain.errors import member_not_found
from services.member.domain.identities import IdentityKey
from services.member.domain.visibility import View


async def view(db: Database, caller: Caller, member_id: str) -> View:
    """What the caller may see of `member_id`; NOT_FOUND if nothing. Staff and a
    customer's own id are decided without the database (the hot path's read)."""
    seen = vis.view_for(caller, member_id)
    if seen is not View.NONE:
        return seen
    async with db.engine.connect() as conn:
        related = False
        if caller.kind is Kind.DEALER and caller.dealer_id:
            related = await store.relations.dealer_related(conn, caller.dealer_id, member_id)
        seen = vis.view_for(caller, member_id, dealer_related=related)
        if seen is View.NONE and caller.kind is Kind.CUSTOMER and caller.member_id:
            # A customer whose member was merged keeps a token naming the old id.
            state = await store.members.state_of(conn, caller.member_id)
            if state is not None:
                seen = vis.view_for(caller, member_id, own_merged_into=state[1])
    if seen is View.NONE:
        raise member_not_found(member_id)
    return seen


async def member_id_for(
    db: Database, identity: IdentityKey, caller: Caller, what: str
) -> str | None:
    """The member holding an identity (normalised; dealers look up by mobile only)."""
    key = identities.normalised(identity)
    vis.check_lookup(caller, key.type, what)
    async with db.engine.connect() as conn:
        return await store.members.member_id_for(conn, key)


async def consent_of(
    db: Database, member_id: str, purpose: consent.Purpose, channel: consent.Channel
) -> ConsentState:
    """The member's standing decision for (purpose, channel), from its consent events."""
    async with db.engine.connect() as conn:
        events = await store.consents.events_of(conn, member_id)
    return consent.decide(events, purpose, channel)

"""A member's life cycle, each step one unit of work: registration (one member per
identity), merging two members (domain/merge.py decides what moves) and erasure on request
(domain/erasure.py decides what becomes a tombstone). Part of the application layer: the
engine decides access and runs these inside `mesh.unit_of_work.transaction`; the SQL is
the store's.
"""

from __future__ import annotations

import datetime as dt

from mesh.idempotency import Asked
from mesh.unit_of_work import UnitOfWork
from services.member import accounts, events, metrics, store
from services.member.domain import erasure, ledger, merge
from services.member.domain import vehicles as cars
from services.member.domain.identities import IdentityKey
from services.member.domain.model import MemberRow
from services.member.domain.rules import MemberState
from services.member.domain.tiers import TierRule
from services.member.domain.visibility import MERGE_NOTE

REGISTER = "RegisterMember"
MERGE = "MergeMembers"
ERASE = "EraseMember"


async def register_member(
    uow: UnitOfWork,
    key: IdentityKey,
    display_name: str,
    city: str,
    *,
    req: Asked,
    now: dt.datetime,
    secret: bytes,
) -> tuple[str, bool]:
    """The member holding the (normalised) identity, created if new: (its id, created).
    A retried request id answers what the first call did; a concurrent first registration
    of the same identity loses on uq_identities_live and is retried, finding the winner."""
    conn = uow.conn
    prior = await accounts.prior(conn, REGISTER, req, None)
    if prior is not None:
        created, _, member_id = prior.partition(":")
        found = member_id, created == "1"
    elif (existing := await store.members.member_id_for(conn, key)) is not None:
        await accounts.remember(conn, REGISTER, req, f"0:{existing}", member_id=existing, now=now)
        found = existing, False
    else:
        member_id = accounts.new_id("m")
        await store.members.insert(
            conn,
            member_id,
            display_name=display_name.strip(),
            city=city.strip(),
            now=now,
            actor=req.scope,
        )
        await store.members.insert_identity(conn, member_id, key, now)
        await accounts.remember(conn, REGISTER, req, f"1:{member_id}", member_id=member_id, now=now)
        uow.emit(events.registered(member_id, [key], now, secret), subject=member_id)
        found = member_id, True
    outcome = "created" if found[1] else "existing"
    uow.after_commit(metrics.MEMBERS_REGISTERED.labels(outcome=outcome).inc)
    return found


async def merge_members(
    uow: UnitOfWork,
    winner_id: str,
    loser_id: str,
    reason: str,
    *,
    req: Asked,
    now: dt.datetime,
    tier_rules: tuple[TierRule, ...],
    secret: bytes,
) -> None:
    """Move the loser's identities, current cars, unspent points (with their expiry),
    dealer relations and consents to the winner; the loser becomes MERGED."""
    if await accounts.prior(uow.conn, MERGE, req, winner_id) is not None:
        return
    # Lock in id order so two opposite merges cannot deadlock.
    rows = {m: await accounts.lock_active(uow, m) for m in sorted((winner_id, loser_id))}
    winner, loser = rows[winner_id], rows[loser_id]
    plan = await _plan_merge(uow, winner, loser, reason, now)
    await _apply_merge(uow, plan, winner_id, loser_id, req=req, now=now)
    # Customers and dealers read tier reasons: no member id, no staff note.
    await accounts.review_tier(uow, winner_id, winner.tier, now, tier_rules, cause=MERGE_NOTE)
    await accounts.remember(uow.conn, MERGE, req, winner_id, member_id=winner_id, now=now)
    keys = [i.key for i in await store.members.identities_of(uow.conn, winner_id)]
    uow.emit(events.merged(winner_id, loser_id, keys, now, secret), subject=winner_id)
    uow.after_commit(metrics.MERGES.inc)


async def _plan_merge(
    uow: UnitOfWork, winner: MemberRow, loser: MemberRow, reason: str, now: dt.datetime
) -> merge.MergePlan:
    """Expire both members' due lots, then read what the merge plan decides on."""
    conn = uow.conn
    winner_balance = await accounts.settle(uow, winner, now)
    loser_balance = await accounts.settle(uow, loser, now)
    return merge.plan(
        winner=winner,
        loser=loser,
        winner_balance=winner_balance,
        loser_balance=loser_balance,
        # Their open lots as the credits opening them: all a merge needs of a ledger.
        winner_entries=ledger.as_entries(await store.lots.open_lots(conn, winner.id)),
        loser_entries=ledger.as_entries(await store.lots.open_lots(conn, loser.id)),
        winner_relations=await store.relations.relations_of(conn, winner.id),
        loser_relations=await store.relations.relations_of(conn, loser.id),
        loser_consents=await store.consents.events_of(conn, loser.id),
        reason=reason,
        now=now,
        new_id=accounts.new_entry_id,
    )


async def _apply_merge(
    uow: UnitOfWork,
    plan: merge.MergePlan,
    winner_id: str,
    loser_id: str,
    *,
    req: Asked,
    now: dt.datetime,
) -> None:
    """Book the carried-over points and move everything the plan says to the winner."""
    conn = uow.conn
    if plan.merge_out is not None:
        note, actor = plan.note, req.scope
        await accounts.book(
            uow, loser_id, [plan.merge_out], plan.loser_settled, reason=note, actor=actor
        )
        await accounts.book(
            uow, winner_id, plan.merge_in, plan.winner_settled, reason=note, actor=actor
        )
    audit = {"update_time": now, "update_actor": req.scope}
    await store.members.update(
        conn,
        winner_id,
        balance=plan.winner_balance,
        next_expiry=plan.winner_next_expiry,
        **plan.winner_profile,
        **audit,
    )
    await store.members.update(
        conn,
        loser_id,
        balance=plan.loser_balance,
        next_expiry=None,
        state=MemberState.MERGED.value,
        merged_into=winner_id,
        **audit,
    )
    # Members merged into the loser earlier now point straight at the winner.
    await store.members.repoint_merged(conn, loser_id, winner_id)
    await store.members.move_identities(conn, loser_id, winner_id)
    for vin in await store.vehicles.owned_vins(conn, loser_id):
        await store.vehicles.change_owner(conn, vin, winner_id, now, cars.MERGE)
    for relation in plan.relations:
        await store.relations.insert(conn, winner_id, relation, now)
    for event in plan.consents:
        await store.consents.insert(conn, event, now)


async def erase_member(
    uow: UnitOfWork, member_id: str, *, req: Asked, now: dt.datetime, secret: bytes
) -> dt.datetime:
    """Tombstone the member's personal data (idempotent) and tell every service to do the
    same (MemberErased, once); the first erase time."""
    conn = uow.conn
    prior = await accounts.prior(conn, ERASE, req, member_id)
    row = await accounts.lock(uow, member_id)
    if prior is None:
        await accounts.remember(conn, ERASE, req, "erased", member_id=member_id, now=now)
    if row.erase_time is not None:
        return row.erase_time
    keys = [i.key for i in await store.members.identities_of(conn, member_id)]
    uow.emit(events.erased(member_id, keys, now, secret), subject=member_id)
    await store.erasures.record(conn, member_id, "member", 1, now)
    identity_ids = await store.members.identity_ids(conn, member_id)
    balance = await accounts.settle(uow, row, now)
    plan = erasure.plan(
        already_erased=False,
        identity_ids=identity_ids,
        balance=balance,
        owned_vins=await store.vehicles.owned_vins(conn, member_id),
        tier=row.tier,
    )
    for identity_id, stone in plan.identity_tombstones:
        await store.members.tombstone_identity(conn, identity_id, stone, now)
    forfeit = ledger.forfeit(accounts.new_entry_id(), plan.forfeit_points, now)
    if forfeit is not None:
        balance, _ = await accounts.book(
            uow, member_id, [forfeit], balance, reason=erasure.REASON, actor=req.scope
        )
    for vin in plan.release_vins:
        await store.vehicles.change_owner(conn, vin, None, now, cars.ERASURE)
    if plan.tier_change is not None:
        await store.points.insert_tier_change(conn, member_id, plan.tier_change, now)
    await store.members.update(
        conn,
        member_id,
        **erasure.BLANK_PROFILE,
        balance=balance,
        next_expiry=None,
        tier="",
        state=MemberState.ERASED.value,
        erase_time=now,
        update_time=now,
        update_actor=req.scope,
    )
    # Members merged into this one were the same person.
    merged = await store.members.erase_merged_into(conn, member_id, erasure.BLANK_PROFILE, now)
    await _forget_fingerprints(uow, [member_id, *merged])
    uow.after_commit(metrics.ERASURES.inc)
    return now


async def _forget_fingerprints(uow: UnitOfWork, member_ids: list[str]) -> None:
    """Request fingerprints hash the requests, which carried personal data: keep only one
    of the method and the member (`erasure.erased_fingerprint`) for each."""
    for method, member_id in await store.requests.methods_of(uow.conn, member_ids):
        fingerprint = erasure.erased_fingerprint(method, member_id)
        await store.requests.set_fingerprint(uow.conn, member_id, method, fingerprint)

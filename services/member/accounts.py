"""A member's points account in the application layer: the EarnPoints and RedeemPoints
units of work (the hot path), and the steps every write on a member shares, inside one
unit of work: lock the member, settle its due points, bring its cached qualifying points up
to date, review its tier, book ledger entries, and the request-id look-ups that accept an
erased member's requests; `member_at`, the read that writes first when something is due.

engine.py decides access and runs these in `mesh.unit_of_work.transaction`; lifecycle.py
merges and erases with them. The decisions are the domain's (`ledger`, `qualifying`,
`tiers`, `rules`), the SQL the store's. Domain metrics are counted through
`uow.after_commit`, so work that rolls back (a retried transaction, a refused request)
counts nothing.
"""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Sequence
from functools import partial

from sqlalchemy.ext.asyncio import AsyncConnection

from mesh.db import Database
from mesh.idempotency import Asked
from mesh.unit_of_work import UnitOfWork, transaction
from services.member import metrics, store
from services.member.domain import erasure, ledger, qualifying, rules, tiers
from services.member.domain.errors import insufficient_points, member_not_found
from services.member.domain.ledger import Entry, EntryKind
from services.member.domain.model import MemberRecord, MemberRow, TransactionRecord
from services.member.domain.qualifying import QualifyingCache
from services.member.domain.tiers import TierRule
from services.member.store import REQUEST_IDS

EARN = "EarnPoints"
REDEEM = "RedeemPoints"
SYSTEM_ACTOR = "system:member"
EXPIRED = "points expired"
ROLLING_REVIEW = "rolling 12-month review"
# What a points write answers: the booked entry and the member afterwards (a retried
# request id books nothing; the caller reads the first call's entry and the member then).
Booked = tuple[TransactionRecord, MemberRecord]
_DIRECTION = {
    EntryKind.EARN: "earn",
    EntryKind.REDEEM: "redeem",
    EntryKind.EXPIRE: "expire",
    EntryKind.MERGE_IN: "merge_in",
    EntryKind.MERGE_OUT: "merge_out",
    EntryKind.FORFEIT: "forfeit",
}


def new_id(prefix: str) -> str:
    """A random, unguessable id: member ids must not be enumerable by customers."""
    return f"{prefix}_{secrets.token_hex(10)}"


def new_entry_id() -> str:
    """A ledger entry's id."""
    return new_id("pt")


# ------------------------------------------------------------------------------ request ids


async def prior(
    conn: AsyncConnection, method: str, req: Asked, member_id: str | None
) -> str | None:
    """The result of this caller's earlier request with this id, if any (RequestIdReused
    when it asked something else). `member_id`: the member the request is remembered
    under, whose erasure kept only `erasure.erased_fingerprint` (None: not known yet)."""
    also = None if member_id is None else erasure.erased_fingerprint(method, member_id)
    return await REQUEST_IDS.prior(conn, method, req, also=also)


async def claim(
    conn: AsyncConnection,
    method: str,
    req: Asked,
    result: str,
    *,
    member_id: str,
    now: dt.datetime,
) -> str | None:
    """Record the request id first (one statement on the hot path) and return None, or the
    earlier result of the same request (an erased member's included)."""
    also = erasure.erased_fingerprint(method, member_id)
    return await REQUEST_IDS.claim(conn, method, req, result, now, also=also, member_id=member_id)


async def remember(
    conn: AsyncConnection,
    method: str,
    req: Asked,
    result: str,
    *,
    member_id: str,
    now: dt.datetime,
) -> None:
    """Record what the request did, under the member it concerns."""
    await REQUEST_IDS.remember(conn, method, req, result, now, member_id=member_id)


# ------------------------------------------------------------------------------ members


async def lock(uow: UnitOfWork, member_id: str) -> MemberRow:
    """The member's row, locked for the rest of the transaction; NOT_FOUND if unknown."""
    row = await store.members.lock(uow.conn, member_id)
    if row is None:
        raise member_not_found(member_id)
    return row


async def lock_active(uow: UnitOfWork, member_id: str) -> MemberRow:
    """The member's row, locked; FAILED_PRECONDITION unless active."""
    row = await lock(uow, member_id)
    rules.require_active(member_id, row.state, row.merged_into)
    return row


async def window_points(
    conn: AsyncConnection, member_id: str, now: dt.datetime, cache: QualifyingCache | None = None
) -> tuple[int, dt.datetime | None]:
    """The qualifying points as of `now` from the ledger, and until when that sum holds.
    Given the member's `cache` computed at or before `now` (one that ran out), only the
    credits that moved since are read (`store.points.window_moved`); else the window."""
    start = tiers.window_start(now)
    if cache is not None and cache.asof is not None and cache.asof <= now:
        total, first, future = await store.points.window_moved(
            conn, member_id, held=cache.points, asof=cache.asof, now=now,
            start_then=tiers.window_start(cache.asof), start=start,
        )  # fmt: skip
    else:
        total, first, future = await store.points.window(conn, member_id, now=now, start=start)
    return total, qualifying.holds_until(first, future)


async def read_member(
    conn: AsyncConnection, member_id: str, now: dt.datetime
) -> tuple[MemberRecord, MemberRow] | None:
    """The member as stored (two round trips; a third when its cached qualifying points do
    not hold at `now`) and its row."""
    row = await store.members.read(conn, member_id)
    if row is None:
        return None
    points = row.cache.at(now)
    if points is None:
        points, _ = await window_points(conn, member_id, now, row.cache)
    return row.record(await store.members.identities_of(conn, member_id), points), row


# ------------------------------------------------------------------------------ points


async def book(
    uow: UnitOfWork,
    member_id: str,
    entries: Sequence[Entry],
    balance: int,
    *,
    reason: str,
    source_ref: str = "",
    actor: str,
) -> tuple[int, list[TransactionRecord]]:
    """Append entries (counted once committed); the balance after them and the records."""
    after, booked = await store.points.book(
        uow.conn, member_id, entries, balance, reason=reason, source_ref=source_ref, actor=actor
    )
    for e in entries:
        uow.after_commit(partial(metrics.points, _DIRECTION[e.kind], e.points))
    return after, booked


async def settle(uow: UnitOfWork, row: MemberRow, now: dt.datetime) -> int:
    """Expire the member's due lots (FIFO); the balance afterwards. Reads the due lots only
    (store/lots.py), not the ledger."""
    if not ledger.due(row.next_expiry, now):
        return row.balance
    due = ledger.expire_lots(await store.lots.due(uow.conn, row.id, now), now, new_entry_id)
    balance, _ = await book(uow, row.id, due, row.balance, reason=EXPIRED, actor=SYSTEM_ACTOR)
    next_expiry = await store.lots.first_expiry(uow.conn, row.id)
    await store.members.update(uow.conn, row.id, balance=balance, next_expiry=next_expiry)
    return balance


async def refresh_qualifying(
    uow: UnitOfWork, member_id: str, now: dt.datetime, cache: QualifyingCache | None = None
) -> int:
    """Recompute the member's cached qualifying points as of `now` (row locked): from its
    `cache` when given (one that ran out: only what moved is read), else from the window
    (after entries the cache did not follow, a merge's)."""
    total, until = await window_points(uow.conn, member_id, now, cache)
    await store.members.update(
        uow.conn, member_id, qualifying=total, qualifying_asof=now, qualifying_until=until
    )
    return total


async def prepare(uow: UnitOfWork, member_id: str, now: dt.datetime) -> int:
    """The slow path of a points write: lock the active member, expire its due lots and
    bring its cached qualifying points up to `now`; the balance afterwards."""
    row = await lock_active(uow, member_id)
    balance = await settle(uow, row, now)
    if row.cache.at(now) is None:
        await refresh_qualifying(uow, member_id, now, row.cache)
    return balance


async def review_tier(
    uow: UnitOfWork,
    member_id: str,
    current: str,
    now: dt.datetime,
    tier_rules: tuple[TierRule, ...],
    *,
    cause: str,
    points: int | None = None,
    cache: QualifyingCache | None = None,
) -> str:
    """Record a tier change if the qualifying points (`points`, else recomputed, from
    `cache` if given) moved the member; the tier after."""
    if points is None:
        points = await refresh_qualifying(uow, member_id, now, cache)
    decision = tiers.review(current, points, tier_rules, cause)
    if decision is None:
        return current
    await store.points.insert_tier_change(uow.conn, member_id, decision, now)
    await store.members.update(uow.conn, member_id, tier=decision.to_code)
    uow.after_commit(metrics.TIER_CHANGES.labels(to=decision.to_code or "none").inc)
    return decision.to_code


# ------------------------------------------------------------------------------ the hot path


async def earn(
    uow: UnitOfWork,
    member_id: str,
    entry: Entry,
    *,
    reason: str,
    source_ref: str,
    req: Asked,
    tier_rules: tuple[TierRule, ...],
) -> tuple[str, Booked | None]:
    """Book an EARN entry (`ledger.earn`); (its id, what it booked or None for a retry).
    Four statements, none reading more than the member's row: claim the request id,
    update the member (balance, cached qualifying points, next expiry) returning it, read
    its identities, append the entry. When a lot is due, the cache does not hold or the
    member is not active, the slow path locks the row, settles and recomputes first."""
    conn, now, points = uow.conn, entry.at, entry.points
    prior = await claim(conn, EARN, req, entry.id, member_id=member_id, now=now)
    if prior is not None:
        return prior, None
    leaves = qualifying.leaves(now)
    row = await store.points.credit(conn, member_id, entry, leaves=leaves, actor=req.scope)
    if row is None:
        await prepare(uow, member_id, now)
        row = await store.points.credit(conn, member_id, entry, leaves=leaves, actor=req.scope)
        assert row is not None, "the slow path leaves the fast path open"
    idents = await store.members.identities_of(conn, member_id)
    _, (txn,) = await book(
        uow,
        member_id,
        [entry],
        row.balance - points,
        reason=reason,
        source_ref=source_ref,
        actor=req.scope,
    )
    held = row.cache.points
    tier = await review_tier(
        uow, member_id, row.tier, now, tier_rules, cause=f"earned {points}", points=held
    )
    return entry.id, (txn, row.record(idents, held, tier))


async def redeem(
    uow: UnitOfWork,
    member_id: str,
    entry_id: str,
    points: int,
    *,
    reason: str,
    source_ref: str,
    req: Asked,
    now: dt.datetime,
) -> tuple[str, Booked | None]:
    """Book a REDEEM entry; more than the balance (after expiry) is FAILED_PRECONDITION
    INSUFFICIENT_POINTS. The hot path is the earn's; the UPDATE refuses to go negative."""
    conn = uow.conn
    prior = await claim(conn, REDEEM, req, entry_id, member_id=member_id, now=now)
    if prior is not None:
        return prior, None
    row = await store.points.debit(conn, member_id, points, now=now, actor=req.scope)
    if row is None:
        balance = await prepare(uow, member_id, now)
        ledger.redeem(entry_id, balance, points, now)  # INSUFFICIENT_POINTS
        row = await store.points.debit(conn, member_id, points, now=now, actor=req.scope)
        if row is None:  # unreachable under the row lock; refused all the same
            raise insufficient_points(points, balance)
    before = row.balance + points
    entry = ledger.redeem(entry_id, before, points, now)
    _, (txn,) = await book(
        uow, member_id, [entry], before, reason=reason, source_ref=source_ref, actor=req.scope
    )
    idents = await store.members.identities_of(conn, member_id)
    return entry_id, (txn, row.record(idents, row.cache.points))


# ------------------------------------------------------------------------------ reads


async def member_at(
    db: Database, member_id: str, now: dt.datetime, tier_rules: tuple[TierRule, ...]
) -> MemberRecord:
    """A member as of `now`: due points expired and the tier re-evaluated first (a write
    only when something is due), so a read never shows stale points or tier."""
    async with db.engine.connect() as conn:
        found = await read_member(conn, member_id, now)
    if found is None:
        raise member_not_found(member_id)
    record, row = found
    if not qualifying.needs_refresh(
        active=row.active,
        tier=row.tier,
        next_expiry=row.next_expiry,
        cache=row.cache,
        qualifying=record.qualifying_points,
        now=now,
        tier_rules=tier_rules,
    ):
        return record

    async def refresh(uow: UnitOfWork) -> None:
        locked = await lock(uow, member_id)
        if locked.active:
            await settle(uow, locked, now)
            await review_tier(uow, member_id, locked.tier, now, tier_rules, cause=ROLLING_REVIEW,
                              cache=locked.cache)  # fmt: skip

    await transaction(db, refresh)
    async with db.engine.connect() as conn:
        fresh = await read_member(conn, member_id, now)
    assert fresh is not None
    return fresh[0]


async def transaction_record(db: Database, txn_id: str) -> TransactionRecord:
    """One booked entry by id (what a retried points write answers)."""
    async with db.engine.connect() as conn:
        return await store.points.transaction(conn, txn_id)

"""Queries on the points ledger, the member row's points columns and the tier history.

The hot path of an earn or a redemption is one conditional UPDATE of the member row
(`credit`, `debit`) that succeeds only when nothing has to be settled first (an active
member, no lot due, cached qualifying points that hold now); when it matches no row the
application takes the slow path and tries again. The statements are built once: building
one per call (values(), where()) cost more CPU than compiling, which SQLAlchemy caches.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from mesh.schema import UtcDateTime
from services.member.domain.ledger import Entry, EntryKind
from services.member.domain.model import MemberRow, TierChangeRecord, TransactionRecord
from services.member.domain.rules import MemberState
from services.member.domain.tiers import TierChangeDecision
from services.member.store import lots
from services.member.store.plans import in_index_order
from services.member.store.rows import (
    entry,
    entry_values,
    member_row,
    tier_change_record,
    txn_record,
)
from services.member.store.tables import members, point_transactions, tier_changes

_m, _pt, _tc = members.c, point_transactions.c, tier_changes.c


def _fast_path(now: sa.BindParameter[dt.datetime]) -> sa.ColumnElement[bool]:
    """A member row a points write can update in place at `now`: active, no lot due to
    expire, cached qualifying points that hold (`QualifyingCache.at`)."""
    return sa.and_(
        _m.state == MemberState.ACTIVE.value,
        sa.or_(_m.next_expiry.is_(None), _m.next_expiry > now),
        _m.qualifying_asof.is_not(None),
        _m.qualifying_asof <= now,
        sa.or_(_m.qualifying_until.is_(None), _m.qualifying_until > now),
    )


_UTC = UtcDateTime()


def _credit_statement() -> sa.Update:
    now = sa.bindparam("p_now", type_=_UTC)
    points = sa.bindparam("p_points", type_=sa.BigInteger())
    expire_at = sa.bindparam("p_expire_at", type_=_UTC)
    return (
        members.update()
        .where(_m.id == sa.bindparam("p_id"), _fast_path(now))
        .values(
            balance=_m.balance + points,
            qualifying=_m.qualifying + points,
            qualifying_asof=now,
            # The first credit in an empty window: it leaves 12 months from now.
            qualifying_until=sa.func.coalesce(
                _m.qualifying_until, sa.bindparam("p_leaves", type_=_UTC)
            ),
            next_expiry=sa.case(
                (sa.or_(_m.next_expiry.is_(None), _m.next_expiry > expire_at), expire_at),
                else_=_m.next_expiry,
            ),
            update_time=now,
            update_actor=sa.bindparam("p_scope", type_=sa.String()),
        )
        .returning(*members.c)
    )


def _debit_statement() -> sa.Update:
    now = sa.bindparam("p_now", type_=_UTC)
    points = sa.bindparam("p_points", type_=sa.BigInteger())
    return (
        members.update()
        .where(_m.id == sa.bindparam("p_id"), _m.balance >= points, _fast_path(now))
        .values(
            balance=_m.balance - points,
            update_time=now,
            update_actor=sa.bindparam("p_scope", type_=sa.String()),
        )
        .returning(*members.c)
    )


def _window_query() -> sa.Select[Any]:
    """Qualifying points of `:m` at `:now` (credits earned in (`:start`, `:now`]), the
    first such credit's earn time and the first credit dated after `:now`. The range on
    (member_id, earned_time) is an index scan over the window only."""
    now = sa.bindparam("now", type_=_UTC)
    inside = _pt.earned_time <= now
    return sa.select(
        sa.func.coalesce(sa.func.sum(sa.case((inside, _pt.points), else_=0)), 0),
        sa.type_coerce(sa.func.min(sa.case((inside, _pt.earned_time))), _UTC),
        sa.type_coerce(sa.func.min(sa.case((_pt.earned_time > now, _pt.earned_time))), _UTC),
    ).where(
        _pt.member_id == sa.bindparam("m"),
        _pt.earned_time > sa.bindparam("start", type_=_UTC),
        _pt.kind.in_([EntryKind.EARN.value, EntryKind.MERGE_IN.value]),
    )


def _credits_between() -> sa.Select[Any]:
    """The points of `:m`'s credits earned in (`:after`, `:upto`]: a range of
    ix_point_transactions_member_id_earned_time covering only those credits."""
    return sa.select(sa.func.coalesce(sa.func.sum(_pt.points), 0)).where(
        _pt.member_id == sa.bindparam("m"),
        _pt.earned_time > sa.bindparam("after", type_=_UTC),
        _pt.earned_time <= sa.bindparam("upto", type_=_UTC),
        _pt.kind.in_([EntryKind.EARN.value, EntryKind.MERGE_IN.value]),
    )


def _first_credit_query() -> sa.Select[Any]:
    """The earn time of `:m`'s first credit earned after `:after` (the index's first row
    of the range, then stop)."""
    return (
        sa.select(_pt.earned_time)
        .where(
            _pt.member_id == sa.bindparam("m"),
            _pt.earned_time > sa.bindparam("after", type_=_UTC),
            _pt.kind.in_([EntryKind.EARN.value, EntryKind.MERGE_IN.value]),
        )
        .order_by(_pt.earned_time)
        .limit(1)
    )


_CREDITS_BETWEEN = _credits_between()
_FIRST_CREDIT_AFTER = _first_credit_query()
_CREDIT = _credit_statement()
_DEBIT = _debit_statement()
_WINDOW = _window_query()
_INSERT_ENTRY = point_transactions.insert()
_ENTRIES = sa.select(point_transactions).where(_pt.member_id == sa.bindparam("m")).order_by(_pt.seq)


async def credit(
    conn: AsyncConnection, member_id: str, earned: Entry, *, leaves: dt.datetime, actor: str
) -> MemberRow | None:
    """The fast path of an earn, one statement: add the entry's points to the balance and
    the cached qualifying points (`leaves`: when they leave the window, if the window was
    empty), move the next expiry to the entry's if earlier; the row afterwards, or None
    (take the slow path)."""
    params = {
        "p_id": member_id,
        "p_now": earned.at,
        "p_points": earned.points,
        "p_expire_at": earned.expire_at,
        "p_leaves": leaves,
        "p_scope": actor,
    }
    row = (await conn.execute(_CREDIT, params)).first()
    return None if row is None else member_row(row)


async def debit(
    conn: AsyncConnection, member_id: str, points: int, *, now: dt.datetime, actor: str
) -> MemberRow | None:
    """The fast path of a redemption, one statement: take `points` from a balance that has
    them; the row afterwards, or None (slow path, or not enough points). On PostgreSQL a
    concurrent redemption waits for the row lock and re-checks `balance >= points`."""
    params = {"p_id": member_id, "p_now": now, "p_points": points, "p_scope": actor}
    row = (await conn.execute(_DEBIT, params)).first()
    return None if row is None else member_row(row)


async def book(
    conn: AsyncConnection,
    member_id: str,
    entries: Sequence[Entry],
    balance: int,
    *,
    reason: str,
    source_ref: str = "",
    actor: str,
) -> tuple[int, list[TransactionRecord]]:
    """Append entries to a ledger whose balance is `balance`; the balance after them (the
    caller stores it on the member row in the same transaction) and the booked records."""
    booked: list[TransactionRecord] = []
    for e in entries:
        balance += e.points
        values = entry_values(
            member_id, e, balance_after=balance, reason=reason, source_ref=source_ref, actor=actor
        )
        result = await conn.execute(_INSERT_ENTRY, values)
        seq = int(result.inserted_primary_key[0])  # type: ignore[index]
        booked.append(
            TransactionRecord(
                seq=seq,
                id=e.id,
                member_id=member_id,
                kind=e.kind,
                points=e.points,
                balance_after=balance,
                reason=reason,
                source_ref=source_ref,
                actor=actor,
                create_time=e.at,
                expire_time=e.expire_at,
            )
        )
    await lots.apply(conn, member_id, entries)
    return balance, booked


async def entries(conn: AsyncConnection, member_id: str) -> list[Entry]:
    """The member's whole ledger in booking order (ix_point_transactions_member_id_seq)."""
    return [entry(r) for r in await conn.execute(_ENTRIES, {"m": member_id})]


async def window(
    conn: AsyncConnection, member_id: str, *, now: dt.datetime, start: dt.datetime
) -> tuple[int, dt.datetime | None, dt.datetime | None]:
    """(qualifying points at `now` over credits earned after `start`, the first such
    credit's earn time, the first credit dated after `now`): one index range scan."""
    total, first, future = (
        await conn.execute(_WINDOW, {"m": member_id, "now": now, "start": start})
    ).one()
    return int(total or 0), first, future


async def window_moved(
    conn: AsyncConnection,
    member_id: str,
    *,
    held: int,
    asof: dt.datetime,
    now: dt.datetime,
    start_then: dt.datetime,
    start: dt.datetime,
) -> tuple[int, dt.datetime | None, dt.datetime | None]:
    """`window` at `now` from `held`, the exact sum at `asof` <= `now` over credits earned
    after `start_then`: minus the credits that left the window since (earned in
    (`start_then`, `start`]), plus those that entered it (earned in (`asof`, `now`]); then
    the first credit in the window and the first after `now`. Reads the credits that moved
    and two index probes, not the window."""
    left, entered = 0, 0
    if start > start_then:
        left = await _scalar_int(conn, _CREDITS_BETWEEN, member_id, start_then, start)
    if now > asof:
        entered = await _scalar_int(conn, _CREDITS_BETWEEN, member_id, asof, now)
    first = await _first_credit_after(conn, member_id, start)
    if first is not None and first > now:
        return held - left + entered, None, first
    future = await _first_credit_after(conn, member_id, now)
    return held - left + entered, first, future


async def _first_credit_after(
    conn: AsyncConnection, member_id: str, after: dt.datetime
) -> dt.datetime | None:
    rows = await in_index_order(conn, _FIRST_CREDIT_AFTER, {"m": member_id, "after": after})
    return rows[0][0] if rows else None


async def _scalar_int(
    conn: AsyncConnection,
    query: sa.Select[Any],
    member_id: str,
    after: dt.datetime,
    upto: dt.datetime,
) -> int:
    total = await conn.scalar(query, {"m": member_id, "after": after, "upto": upto})
    return int(total or 0)


async def transaction(conn: AsyncConnection, txn_id: str) -> TransactionRecord:
    """One booked entry by id."""
    query = sa.select(point_transactions).where(_pt.id == txn_id)
    return txn_record((await conn.execute(query)).one())


async def list_transactions(
    conn: AsyncConnection, member_id: str, before_seq: int | None, limit: int
) -> list[TransactionRecord]:
    """Up to `limit` entries older than `before_seq`, newest first: the member's range of
    ix_point_transactions_member_id_seq read backwards, whatever its length."""
    query = sa.select(point_transactions).where(_pt.member_id == sa.bindparam("m"))
    params: dict[str, Any] = {"m": member_id, "n": limit}
    if before_seq is not None:
        query = query.where(_pt.seq < sa.bindparam("before"))
        params["before"] = before_seq
    query = query.order_by(_pt.seq.desc()).limit(sa.bindparam("n"))
    return [txn_record(r) for r in await in_index_order(conn, query, params)]


async def ledger_sum(conn: AsyncConnection, member_id: str) -> int:
    """Sum of the member's ledger (for checks: it always equals the balance)."""
    total = await conn.scalar(
        sa.select(sa.func.coalesce(sa.func.sum(_pt.points), 0)).where(_pt.member_id == member_id)
    )
    return int(total or 0)


# ------------------------------------------------------------------------------ tiers


async def insert_tier_change(
    conn: AsyncConnection, member_id: str, change: TierChangeDecision, now: dt.datetime
) -> None:
    """Record a tier change."""
    await conn.execute(
        tier_changes.insert().values(
            member_id=member_id,
            from_tier=change.from_code,
            to_tier=change.to_code,
            reason=change.reason,
            change_time=now,
        )
    )


async def list_tier_changes(
    conn: AsyncConnection, member_id: str, before_seq: int | None, limit: int
) -> list[TierChangeRecord]:
    """Up to `limit` tier changes older than `before_seq`, newest first."""
    query = sa.select(tier_changes).where(_tc.member_id == member_id)
    if before_seq is not None:
        query = query.where(_tc.seq < before_seq)
    rows = await conn.execute(query.order_by(_tc.seq.desc()).limit(limit))
    return [tier_change_record(r) for r in rows]

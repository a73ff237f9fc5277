"""The member service's tables and transactions (SQLAlchemy 2.0 Core, async).

Invariants the schema and the transactions keep together:
- `members.balance` always equals the sum of the member's `point_transactions` (it is
  changed only in the transaction that appends the entry) and is never negative (checked
  by the code under the member's row lock, by a conditional UPDATE, and by a CHECK).
- `point_transactions` is append-only; nothing updates or deletes a row.
- a live identity (type, app_id, value) belongs to one member: a partial unique index
  over rows whose `erase_time` is NULL.
- a VIN has one current owner: `vehicles` has one row per VIN with `owner_id`, and the
  ownership history has a partial unique index on the VIN's open period.

Concurrency: every write that touches a member first locks the member's row
(`SELECT ... FOR UPDATE` on PostgreSQL). SQLite has one writer at a time anyway, and a
deferred transaction that reads before it writes can fail with SQLITE_BUSY when another
writer got in between, so on SQLite this process serialises its write transactions with
one asyncio lock (the embedded default is one process per service; several processes
sharing one SQLite file are not supported). Races that locks cannot prevent (two first
registrations of one mobile, one request id sent twice at once) end in a unique-index
violation; the transaction is then retried and finds the winner's row.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Row
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from mesh.db import Database
from mesh.schema import BigId, UtcDateTime, new_metadata
from services.member import metrics
from services.member.domain import consent, erasure, ledger, tiers
from services.member.domain.config import MemberConfig
from services.member.domain.consent import ConsentEvent, ConsentState
from services.member.domain.errors import (
    InsufficientPoints,
    InvalidValue,
    MemberDomainError,
    MemberNotFound,
    RuleViolation,
)
from services.member.domain.identities import IdentityKey, IdentityType
from services.member.domain.ledger import Entry, EntryKind
from services.member.domain.model import (
    IdentityRecord,
    MemberRecord,
    OwnershipRecord,
    TierChangeRecord,
    TransactionRecord,
    VehicleRecord,
    Write,
)
from services.member.domain.rules import MemberState, check_merge, require_active

MIGRATIONS = Path(__file__).resolve().parent / "migrations"

T = TypeVar("T")

metadata = new_metadata()
LIVE = sa.text("erase_time IS NULL")
OPEN = sa.text("end_time IS NULL")

members = sa.Table(
    "members",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("merged_into", sa.String(40), nullable=False, server_default=""),
    sa.Column("display_name", sa.String(100), nullable=False, server_default=""),
    sa.Column("city", sa.String(100), nullable=False, server_default=""),
    sa.Column("preferred_dealer_id", sa.String(32), nullable=False, server_default=""),
    sa.Column("balance", sa.BigInteger, nullable=False, server_default="0"),
    # A lower bound of the earliest open lot's expiry: no ledger replay before it.
    sa.Column("next_expiry", UtcDateTime()),
    sa.Column("tier", sa.String(32), nullable=False, server_default=""),
    # The qualifying points (credits earned in the rolling 12 months), cached: exact for
    # any `now` with qualifying_asof <= now < qualifying_until (NULL until: no credit in
    # the window, none leaves). NULL asof: not computed yet (members older than 0002).
    sa.Column("qualifying", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("qualifying_asof", UtcDateTime()),
    sa.Column("qualifying_until", UtcDateTime()),
    sa.Column("create_time", UtcDateTime(), nullable=False),
    sa.Column("create_actor", sa.String(160), nullable=False),
    sa.Column("update_time", UtcDateTime(), nullable=False),
    sa.Column("update_actor", sa.String(160), nullable=False),
    sa.Column("erase_time", UtcDateTime()),
    sa.CheckConstraint("balance >= 0", name="balance_not_negative"),
)

identities = sa.Table(
    "identities",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("member_id", sa.String(40), sa.ForeignKey("members.id"), nullable=False),
    sa.Column("type", sa.String(24), nullable=False),
    sa.Column("app_id", sa.String(64), nullable=False, server_default=""),
    sa.Column("value", sa.String(256), nullable=False),
    sa.Column("link_time", UtcDateTime(), nullable=False),
    sa.Column("erase_time", UtcDateTime()),
    sa.Index(
        "uq_identities_live",
        "type",
        "app_id",
        "value",
        unique=True,
        sqlite_where=LIVE,
        postgresql_where=LIVE,
    ),
    sa.Index("ix_identities_member_id", "member_id"),
)

point_transactions = sa.Table(
    "point_transactions",
    metadata,
    sa.Column("seq", BigId, primary_key=True, autoincrement=True),
    sa.Column("id", sa.String(40), nullable=False, unique=True),
    sa.Column("member_id", sa.String(40), sa.ForeignKey("members.id"), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("points", sa.BigInteger, nullable=False),
    sa.Column("balance_after", sa.BigInteger, nullable=False),
    sa.Column("reason", sa.String(256), nullable=False, server_default=""),
    sa.Column("source_ref", sa.String(128), nullable=False, server_default=""),
    sa.Column("actor", sa.String(160), nullable=False),
    sa.Column("create_time", UtcDateTime(), nullable=False),
    sa.Column("expire_time", UtcDateTime()),
    sa.Column("earned_time", UtcDateTime()),
    sa.Column("lot_id", sa.String(40)),
    sa.Index("ix_point_transactions_member_id_seq", "member_id", "seq"),
    sa.Index("ix_point_transactions_member_id_earned_time", "member_id", "earned_time"),
)

tier_changes = sa.Table(
    "tier_changes",
    metadata,
    sa.Column("seq", BigId, primary_key=True, autoincrement=True),
    sa.Column("member_id", sa.String(40), sa.ForeignKey("members.id"), nullable=False),
    sa.Column("from_tier", sa.String(32), nullable=False),
    sa.Column("to_tier", sa.String(32), nullable=False),
    sa.Column("reason", sa.String(512), nullable=False),
    sa.Column("change_time", UtcDateTime(), nullable=False),
    sa.Index("ix_tier_changes_member_id_seq", "member_id", "seq"),
)

vehicles = sa.Table(
    "vehicles",
    metadata,
    sa.Column("vin", sa.String(17), primary_key=True),
    sa.Column("owner_id", sa.String(40), sa.ForeignKey("members.id")),
    sa.Column("brand", sa.String(64), nullable=False),
    sa.Column("model", sa.String(64), nullable=False, server_default=""),
    sa.Column("purchase_date", sa.String(10), nullable=False, server_default=""),
    sa.Column("dealer_id", sa.String(32), nullable=False, server_default=""),
    sa.Column("update_time", UtcDateTime(), nullable=False),
    sa.Index("ix_vehicles_owner_id", "owner_id"),
)

vehicle_ownerships = sa.Table(
    "vehicle_ownerships",
    metadata,
    sa.Column("seq", BigId, primary_key=True, autoincrement=True),
    sa.Column("vin", sa.String(17), sa.ForeignKey("vehicles.vin"), nullable=False),
    sa.Column("member_id", sa.String(40), sa.ForeignKey("members.id"), nullable=False),
    sa.Column("start_time", UtcDateTime(), nullable=False),
    sa.Column("end_time", UtcDateTime()),
    sa.Column("reason", sa.String(16), nullable=False),
    sa.Index(
        "uq_vehicle_ownerships_current",
        "vin",
        unique=True,
        sqlite_where=OPEN,
        postgresql_where=OPEN,
    ),
    sa.Index("ix_vehicle_ownerships_vin_seq", "vin", "seq"),
)

dealer_relations = sa.Table(
    "dealer_relations",
    metadata,
    sa.Column("seq", BigId, primary_key=True, autoincrement=True),
    sa.Column("member_id", sa.String(40), sa.ForeignKey("members.id"), nullable=False),
    sa.Column("dealer_id", sa.String(32), nullable=False),
    sa.Column("relation", sa.String(16), nullable=False),
    sa.Column("vin", sa.String(17), nullable=False, server_default=""),
    sa.Column("create_time", UtcDateTime(), nullable=False),
    sa.UniqueConstraint("member_id", "dealer_id", "relation", "vin"),
    sa.Index("ix_dealer_relations_vin_dealer_id", "vin", "dealer_id"),
)

consent_events = sa.Table(
    "consent_events",
    metadata,
    sa.Column("seq", BigId, primary_key=True, autoincrement=True),
    sa.Column("member_id", sa.String(40), sa.ForeignKey("members.id"), nullable=False),
    sa.Column("purpose", sa.String(24), nullable=False),
    sa.Column("channel", sa.String(24), nullable=False),
    sa.Column("action", sa.String(16), nullable=False),
    sa.Column("occur_time", UtcDateTime(), nullable=False),
    sa.Column("source", sa.String(128), nullable=False),
    sa.Column("actor", sa.String(160), nullable=False),
    sa.Column("record_time", UtcDateTime(), nullable=False),
    sa.Index("ix_consent_events_member_id", "member_id"),
)

request_ids = sa.Table(
    "request_ids",
    metadata,
    sa.Column("scope", sa.String(160), primary_key=True),
    sa.Column("method", sa.String(48), primary_key=True),
    sa.Column("request_id", sa.String(128), primary_key=True),
    sa.Column("fingerprint", sa.String(64), nullable=False),
    sa.Column("member_id", sa.String(40)),
    sa.Column("result", sa.String(80), nullable=False),
    sa.Column("create_time", UtcDateTime(), nullable=False),
    sa.Index("ix_request_ids_member_id", "member_id"),
    sa.Index("ix_request_ids_create_time", "create_time"),  # the retention sweep
)

_RETRYABLE_SQLSTATES = frozenset({"40001", "40P01"})  # serialization failure, deadlock
SYSTEM_ACTOR = "system:member"
MERGE_NOTE = "member records merged"
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


class RequestIdReused(InvalidValue):
    """The same request id came with a different request."""

    def __init__(self) -> None:
        super().__init__(
            "request_id", "was already used for a different request", reason="REQUEST_ID_REUSED"
        )


class VehicleNotFound(MemberDomainError):
    """No such VIN is known (maps to NOT_FOUND)."""


def _member_record(row: Row[Any], idents: Sequence[Row[Any]], qualifying: int) -> MemberRecord:
    return MemberRecord(
        id=row.id,
        state=MemberState(row.state),
        merged_into=row.merged_into,
        display_name=row.display_name,
        city=row.city,
        preferred_dealer_id=row.preferred_dealer_id,
        balance=row.balance,
        tier=row.tier,
        qualifying_points=qualifying,
        identities=tuple(
            IdentityRecord(IdentityKey(IdentityType(i.type), i.value, i.app_id), i.link_time)
            for i in idents
        ),
        create_time=row.create_time,
        create_actor=row.create_actor,
        update_time=row.update_time,
        update_actor=row.update_actor,
        erase_time=row.erase_time,
    )


def _txn_record(row: Row[Any]) -> TransactionRecord:
    return TransactionRecord(
        seq=row.seq,
        id=row.id,
        member_id=row.member_id,
        kind=EntryKind(row.kind),
        points=row.points,
        balance_after=row.balance_after,
        reason=row.reason,
        source_ref=row.source_ref,
        actor=row.actor,
        create_time=row.create_time,
        expire_time=row.expire_time,
    )


def _entry(row: Row[Any]) -> Entry:
    return Entry(
        row.id,
        EntryKind(row.kind),
        row.points,
        row.create_time,
        expire_at=row.expire_time,
        earned_at=row.earned_time,
        lot_id=row.lot_id,
    )


def _consent_event(row: Row[Any]) -> ConsentEvent:
    return ConsentEvent(
        member_id=row.member_id,
        purpose=consent.Purpose(row.purpose),
        channel=consent.Channel(row.channel),
        action=consent.Action(row.action),
        occur_time=row.occur_time,
        source=row.source,
        actor=row.actor,
        seq=row.seq,
    )


def _cached_qualifying(row: Row[Any], now: dt.datetime) -> int | None:
    """The member row's cached qualifying points if they hold at `now`, else None."""
    asof, until = row.qualifying_asof, row.qualifying_until
    if asof is None or asof > now or (until is not None and until <= now):
        return None
    return int(row.qualifying)


def _points_fast_path(now: sa.BindParameter[dt.datetime]) -> sa.ColumnElement[bool]:
    """A member row a points write can update in place at `now`: active, no lot due to
    expire, cached qualifying points that hold (see `_cached_qualifying`)."""
    m = members.c
    return sa.and_(
        m.state == MemberState.ACTIVE.value,
        sa.or_(m.next_expiry.is_(None), m.next_expiry > now),
        m.qualifying_asof.is_not(None),
        m.qualifying_asof <= now,
        sa.or_(m.qualifying_until.is_(None), m.qualifying_until > now),
    )


def _window_query() -> sa.Select[Any]:
    """Qualifying points of `:m` at `:now` (credits earned in (`:start`, `:now`]), the
    first such credit's earn time and the first credit dated after `:now`. The range on
    (member_id, earned_time) is an index scan over the window only."""
    pt = point_transactions.c
    now = sa.bindparam("now", type_=UtcDateTime())
    inside = pt.earned_time <= now
    return sa.select(
        sa.func.coalesce(sa.func.sum(sa.case((inside, pt.points), else_=0)), 0),
        sa.type_coerce(sa.func.min(sa.case((inside, pt.earned_time))), UtcDateTime()),
        sa.type_coerce(sa.func.min(sa.case((pt.earned_time > now, pt.earned_time))), UtcDateTime()),
    ).where(
        pt.member_id == sa.bindparam("m"),
        pt.earned_time > sa.bindparam("start", type_=UtcDateTime()),
        pt.kind.in_([EntryKind.EARN.value, EntryKind.MERGE_IN.value]),
    )


def _credit_statement() -> sa.Update:
    """The fast path of an earn (see `MemberStore._credit`), built once."""
    m = members.c
    now = sa.bindparam("p_now", type_=UtcDateTime())
    points = sa.bindparam("p_points", type_=sa.BigInteger())
    expire_at = sa.bindparam("p_expire_at", type_=UtcDateTime())
    return (
        members.update()
        .where(m.id == sa.bindparam("p_id"), _points_fast_path(now))
        .values(
            balance=m.balance + points,
            qualifying=m.qualifying + points,
            qualifying_asof=now,
            # The first credit in an empty window: it leaves 12 months from now.
            qualifying_until=sa.func.coalesce(
                m.qualifying_until, sa.bindparam("p_leaves", type_=UtcDateTime())
            ),
            next_expiry=sa.case(
                (sa.or_(m.next_expiry.is_(None), m.next_expiry > expire_at), expire_at),
                else_=m.next_expiry,
            ),
            update_time=now,
            update_actor=sa.bindparam("p_scope", type_=sa.String()),
        )
        .returning(*members.c)
    )


def _debit_statement() -> sa.Update:
    """The fast path of a redemption (see `MemberStore._debit`), built once."""
    m = members.c
    now = sa.bindparam("p_now", type_=UtcDateTime())
    points = sa.bindparam("p_points", type_=sa.BigInteger())
    return (
        members.update()
        .where(m.id == sa.bindparam("p_id"), m.balance >= points, _points_fast_path(now))
        .values(
            balance=m.balance - points,
            update_time=now,
            update_actor=sa.bindparam("p_scope", type_=sa.String()),
        )
        .returning(*members.c)
    )


# The hot path's statements are built once: building one per call (values(), where())
# cost more CPU than compiling, which SQLAlchemy caches anyway.
_WINDOW = _window_query()
_CREDIT = _credit_statement()
_DEBIT = _debit_statement()
_INSERT_ENTRY = point_transactions.insert()
_IDENTITIES = (
    sa.select(identities)
    .where(identities.c.member_id == sa.bindparam("p_member"), identities.c.erase_time.is_(None))
    .order_by(identities.c.id)
)
# Record a request id unless it is there already (then no row comes back).
_CLAIM_PG = pg_insert(request_ids).on_conflict_do_nothing().returning(request_ids.c.request_id)
_CLAIM_SQLITE = (
    sqlite_insert(request_ids).on_conflict_do_nothing().returning(request_ids.c.request_id)
)


class MemberStore:
    """Every query and transaction of the member service."""

    def __init__(self, db: Database, config: MemberConfig | None = None) -> None:
        self.db = db
        self.config = config or MemberConfig()
        self._sqlite_writer = asyncio.Lock() if db.is_sqlite else None

    # ------------------------------------------------------------------ plumbing

    @contextlib.asynccontextmanager
    async def _writer(self) -> AsyncIterator[None]:
        if self._sqlite_writer is None:
            yield
            return
        async with self._sqlite_writer:
            yield

    async def _write(self, fn: Callable[[AsyncConnection], Awaitable[T]]) -> T:
        """Run `fn` in one write transaction; retry a lost unique-index race or deadlock."""
        attempts = 4
        for attempt in range(attempts):
            try:
                async with self._writer(), self.db.begin() as conn:
                    return await fn(conn)
            except IntegrityError:
                if attempt == attempts - 1:
                    raise
            except DBAPIError as e:
                state = getattr(e.orig, "sqlstate", None)
                if state not in _RETRYABLE_SQLSTATES or attempt == attempts - 1:
                    raise
        raise AssertionError("unreachable")

    async def _prior(
        self, conn: AsyncConnection, w: Write, method: str, target: str | None
    ) -> str | None:
        """The stored result of an earlier call with this request id, if any; `target` is
        the member the request is remembered under (None: not known before it runs)."""
        row = (
            await conn.execute(
                sa.select(request_ids.c.fingerprint, request_ids.c.result).where(
                    request_ids.c.scope == w.scope,
                    request_ids.c.method == method,
                    request_ids.c.request_id == w.request_id,
                )
            )
        ).first()
        if row is None:
            return None
        # An erased member's fingerprints name only the method and the member.
        erased = target is not None and row.fingerprint == erasure.erased_fingerprint(
            method, target
        )
        if row.fingerprint != w.fingerprint and not erased:
            raise RequestIdReused()
        return str(row.result)

    async def _remember(
        self, conn: AsyncConnection, w: Write, method: str, result: str, member_id: str | None
    ) -> None:
        await conn.execute(
            request_ids.insert().values(
                scope=w.scope,
                method=method,
                request_id=w.request_id,
                fingerprint=w.fingerprint,
                member_id=member_id,
                result=result,
                create_time=w.now,
            )
        )

    async def _claim(
        self, conn: AsyncConnection, w: Write, method: str, result: str, member_id: str
    ) -> str | None:
        """Record the request id first (one statement on the hot path); if it was there
        already, return the earlier result instead. A concurrent twin waits on the unique
        key until the first commits, then sees its row."""
        claimed = await conn.execute(
            _CLAIM_SQLITE if self.db.is_sqlite else _CLAIM_PG,
            {
                "scope": w.scope,
                "method": method,
                "request_id": w.request_id,
                "fingerprint": w.fingerprint,
                "member_id": member_id,
                "result": result,
                "create_time": w.now,
            },
        )
        if claimed.first() is not None:
            return None
        prior = await self._prior(conn, w, method, member_id)
        assert prior is not None
        return prior

    async def _lock(self, conn: AsyncConnection, member_id: str) -> Row[Any]:
        """The member's row, locked for the rest of the transaction."""
        query = sa.select(members).where(members.c.id == member_id)
        if not self.db.is_sqlite:
            query = query.with_for_update()
        row = (await conn.execute(query)).first()
        if row is None:
            raise MemberNotFound(f"member {member_id} not found", reason="MEMBER_NOT_FOUND")
        return row

    async def _lock_active(self, conn: AsyncConnection, member_id: str) -> Row[Any]:
        row = await self._lock(conn, member_id)
        require_active(member_id, MemberState(row.state), row.merged_into)
        return row

    async def _entries(self, conn: AsyncConnection, member_id: str) -> list[Entry]:
        rows = await conn.execute(
            sa.select(point_transactions)
            .where(point_transactions.c.member_id == member_id)
            .order_by(point_transactions.c.seq)
        )
        return [_entry(r) for r in rows]

    async def _book(
        self,
        conn: AsyncConnection,
        member_id: str,
        entries: Sequence[Entry],
        balance: int,
        *,
        reason: str,
        source_ref: str = "",
        actor: str,
    ) -> tuple[int, list[TransactionRecord]]:
        """Append entries; the balance after them (the caller stores it) and the records."""
        booked: list[TransactionRecord] = []
        for e in entries:
            balance += e.points
            values = {
                "id": e.id,
                "member_id": member_id,
                "kind": e.kind.value,
                "points": e.points,
                "balance_after": balance,
                "reason": reason,
                "source_ref": source_ref,
                "actor": actor,
                "create_time": e.at,
                "expire_time": e.expire_at,
                "earned_time": e.earned_at,
                "lot_id": e.lot_id,
            }
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
            metrics.points(_DIRECTION[e.kind], e.points)
        return balance, booked

    async def _settle(
        self, conn: AsyncConnection, row: Row[Any], now: dt.datetime
    ) -> tuple[int, dt.datetime | None]:
        """Expire the member's due lots (FIFO); (balance, next expiry) afterwards."""
        if row.next_expiry is None or row.next_expiry > now:
            return int(row.balance), row.next_expiry
        entries = await self._entries(conn, row.id)
        due = ledger.expire(entries, now, lambda: new_id("pt"))
        balance, _ = await self._book(
            conn, row.id, due, row.balance, reason="points expired", actor=SYSTEM_ACTOR
        )
        next_expiry = ledger.next_expiry([*entries, *due])
        await conn.execute(
            members.update()
            .where(members.c.id == row.id)
            .values(balance=balance, next_expiry=next_expiry)
        )
        return balance, next_expiry

    async def _window(
        self, conn: AsyncConnection, member_id: str, now: dt.datetime
    ) -> tuple[int, dt.datetime | None]:
        """The qualifying points as of `now` from the ledger, and until when that sum holds
        (None: for ever). One index range scan over the window, never the whole ledger."""
        total, first, future = (await conn.execute(_WINDOW, {"m": member_id, "now": now,
            "start": tiers.window_start(now)})).one()  # fmt: skip
        # The first credit in the window leaves it no earlier than 12 months after it was
        # earned (add_months never moves a date forward and back to a later one); a credit
        # dated after `now` (a clock set back) enters it when that time comes.
        ends = [t for t in (first and ledger.add_months(first, tiers.WINDOW_MONTHS), future) if t]
        return int(total or 0), min(ends, default=None)

    async def _refresh_qualifying(
        self, conn: AsyncConnection, member_id: str, now: dt.datetime
    ) -> int:
        """Recompute the member's cached qualifying points as of `now` (row locked)."""
        total, until = await self._window(conn, member_id, now)
        await conn.execute(
            members.update()
            .where(members.c.id == member_id)
            .values(qualifying=total, qualifying_asof=now, qualifying_until=until)
        )
        return total

    async def _prepare(self, conn: AsyncConnection, member_id: str, now: dt.datetime) -> int:
        """The slow path of a points write: lock the active member, expire its due lots and
        bring its cached qualifying points up to `now`; the balance afterwards."""
        row = await self._lock_active(conn, member_id)
        balance, _ = await self._settle(conn, row, now)
        if _cached_qualifying(row, now) is None:
            await self._refresh_qualifying(conn, member_id, now)
        return balance

    async def _review_tier(
        self,
        conn: AsyncConnection,
        member_id: str,
        current: str,
        now: dt.datetime,
        *,
        cause: str,
        points: int | None = None,
    ) -> str:
        """Record a tier change if the qualifying points moved the member; the tier after."""
        if points is None:
            points = await self._refresh_qualifying(conn, member_id, now)
        decision = tiers.review(current, points, self.config.tiers, cause)
        if decision is None:
            return current
        await conn.execute(
            tier_changes.insert().values(
                member_id=member_id,
                from_tier=decision.from_code,
                to_tier=decision.to_code,
                reason=decision.reason,
                change_time=now,
            )
        )
        await conn.execute(
            members.update().where(members.c.id == member_id).values(tier=decision.to_code)
        )
        metrics.TIER_CHANGES.labels(to=decision.to_code or "none").inc()
        return decision.to_code

    async def _touch(self, conn: AsyncConnection, member_id: str, w: Write) -> None:
        await conn.execute(
            members.update()
            .where(members.c.id == member_id)
            .values(update_time=w.now, update_actor=w.scope)
        )

    async def _member_id_for(self, conn: AsyncConnection, key: IdentityKey) -> str | None:
        i = identities.c
        return await conn.scalar(
            sa.select(i.member_id).where(
                i.type == key.type.value,
                i.app_id == key.app_id,
                i.value == key.value,
                i.erase_time.is_(None),
            )
        )

    async def _insert_identity(
        self, conn: AsyncConnection, member_id: str, key: IdentityKey, now: dt.datetime
    ) -> None:
        await conn.execute(
            identities.insert().values(
                member_id=member_id,
                type=key.type.value,
                app_id=key.app_id,
                value=key.value,
                link_time=now,
            )
        )

    async def _identities(self, conn: AsyncConnection, member_id: str) -> list[Row[Any]]:
        return list((await conn.execute(_IDENTITIES, {"p_member": member_id})).all())

    async def _read_member(
        self, conn: AsyncConnection, member_id: str, now: dt.datetime
    ) -> tuple[MemberRecord, Row[Any]] | None:
        """The member as stored (two round trips; a third when its cached qualifying
        points do not hold at `now`) and its row."""
        row = (await conn.execute(sa.select(members).where(members.c.id == member_id))).first()
        if row is None:
            return None
        qualifying = _cached_qualifying(row, now)
        if qualifying is None:
            qualifying, _ = await self._window(conn, member_id, now)
        idents = await self._identities(conn, member_id)
        return _member_record(row, idents, qualifying), row

    # ------------------------------------------------------------------ members

    async def get_member(self, member_id: str, now: dt.datetime) -> MemberRecord:
        """A member as of `now`: due points expired and the tier re-evaluated first (a
        write only when something is due), so a read never shows stale points or tier."""
        async with self.db.engine.connect() as conn:
            found = await self._read_member(conn, member_id, now)
        if found is None:
            raise MemberNotFound(f"member {member_id} not found", reason="MEMBER_NOT_FOUND")
        record, stored = found
        active = record.state is MemberState.ACTIVE
        # A cache that ran out is rewritten once; one written at a later `now` (another
        # replica's clock) is only read around, or replicas would rewrite it in turn.
        ran_out = _cached_qualifying(stored, now) is None and not (
            stored.qualifying_asof is not None and stored.qualifying_asof > now
        )
        stale = active and (
            tiers.tier_for(record.qualifying_points, self.config.tiers).code != record.tier
            or ran_out
        )
        if (stored.next_expiry is None or stored.next_expiry > now) and not stale:
            return record

        async def refresh(conn: AsyncConnection) -> None:
            row = await self._lock(conn, member_id)
            if MemberState(row.state) is not MemberState.ACTIVE:
                return
            await self._settle(conn, row, now)
            await self._review_tier(conn, member_id, row.tier, now, cause="rolling 12-month review")

        await self._write(refresh)
        async with self.db.engine.connect() as conn:
            fresh = await self._read_member(conn, member_id, now)
        assert fresh is not None
        return fresh[0]

    async def find_member(self, key: IdentityKey, now: dt.datetime) -> MemberRecord:
        """The member holding a live identity."""
        async with self.db.engine.connect() as conn:
            member_id = await self._member_id_for(conn, key)
        if member_id is None:
            raise MemberNotFound("no member has that identity", reason="IDENTITY_NOT_FOUND")
        return await self.get_member(member_id, now)

    async def register(
        self, w: Write, key: IdentityKey, display_name: str, city: str
    ) -> tuple[MemberRecord, bool]:
        """The member holding `key`, created if new; (member, created)."""

        async def op(conn: AsyncConnection) -> tuple[str, bool]:
            prior = await self._prior(conn, w, "RegisterMember", None)
            if prior is not None:
                created, _, member_id = prior.partition(":")
                return member_id, created == "1"
            existing = await self._member_id_for(conn, key)
            if existing is not None:
                await self._remember(conn, w, "RegisterMember", f"0:{existing}", existing)
                return existing, False
            member_id = new_id("m")
            await conn.execute(
                members.insert().values(
                    id=member_id,
                    state=MemberState.ACTIVE.value,
                    display_name=display_name,
                    city=city,
                    balance=0,
                    # No ledger yet: no qualifying points, and none will leave.
                    qualifying=0,
                    qualifying_asof=w.now,
                    create_time=w.now,
                    create_actor=w.scope,
                    update_time=w.now,
                    update_actor=w.scope,
                )
            )
            await self._insert_identity(conn, member_id, key, w.now)
            await self._remember(conn, w, "RegisterMember", f"1:{member_id}", member_id)
            return member_id, True

        member_id, created = await self._write(op)
        metrics.MEMBERS_REGISTERED.labels(outcome="created" if created else "existing").inc()
        return await self.get_member(member_id, w.now), created

    async def link_identity(self, w: Write, member_id: str, key: IdentityKey) -> MemberRecord:
        """Add `key` to the member; another member's identity is a RuleViolation."""

        async def op(conn: AsyncConnection) -> None:
            if await self._prior(conn, w, "LinkIdentity", member_id) is not None:
                return
            await self._lock_active(conn, member_id)
            holder = await self._member_id_for(conn, key)
            if holder is not None and holder != member_id:
                raise RuleViolation(
                    "the identity belongs to another member; OEM staff can merge the two",
                    reason="IDENTITY_BELONGS_TO_OTHER_MEMBER",
                )
            if holder is None:
                await self._insert_identity(conn, member_id, key, w.now)
                await self._touch(conn, member_id, w)
            await self._remember(conn, w, "LinkIdentity", member_id, member_id)

        await self._write(op)
        return await self.get_member(member_id, w.now)

    async def update_profile(
        self, w: Write, member_id: str, changes: dict[str, str]
    ) -> MemberRecord:
        """Set profile fields (display_name, city, preferred_dealer_id)."""
        allowed = {"display_name", "city", "preferred_dealer_id"}
        if not set(changes) <= allowed:
            raise InvalidValue("update_mask", f"only {sorted(allowed)} can be updated")

        async def op(conn: AsyncConnection) -> None:
            if await self._prior(conn, w, "UpdateMember", member_id) is not None:
                return
            await self._lock_active(conn, member_id)
            if changes:
                await conn.execute(
                    members.update()
                    .where(members.c.id == member_id)
                    .values(**changes, update_time=w.now, update_actor=w.scope)
                )
            await self._remember(conn, w, "UpdateMember", member_id, member_id)

        await self._write(op)
        return await self.get_member(member_id, w.now)

    async def merge(
        self, w: Write, winner_id: str, loser_id: str, reason: str
    ) -> tuple[MemberRecord, MemberRecord]:
        """Move the loser's identities, current cars, unspent points (with their expiry),
        dealer relations and consents to the winner; the loser becomes MERGED."""
        check_merge(winner_id, loser_id)

        async def op(conn: AsyncConnection) -> None:
            if await self._prior(conn, w, "MergeMembers", winner_id) is not None:
                return
            # Lock in id order so two opposite merges cannot deadlock.
            rows = {m: await self._lock_active(conn, m) for m in sorted((winner_id, loser_id))}
            winner, loser = rows[winner_id], rows[loser_id]
            winner_balance, _ = await self._settle(conn, winner, w.now)
            loser_balance, _ = await self._settle(conn, loser, w.now)
            entries = await self._entries(conn, loser_id)  # due lots are expired already
            out, ins = ledger.carry_over(entries, w.now, lambda: new_id("pt"))
            note = f"merged {loser_id} into {winner_id}" + (f": {reason}" if reason else "")
            if out is not None:
                loser_balance, _ = await self._book(
                    conn, loser_id, [out], loser_balance, reason=note, actor=w.scope
                )
                winner_balance, _ = await self._book(
                    conn, winner_id, ins, winner_balance, reason=note, actor=w.scope
                )
            winner_entries = await self._entries(conn, winner_id)
            await conn.execute(
                members.update()
                .where(members.c.id == winner_id)
                .values(
                    balance=winner_balance,
                    next_expiry=ledger.next_expiry(winner_entries),
                    display_name=winner.display_name or loser.display_name,
                    city=winner.city or loser.city,
                    preferred_dealer_id=winner.preferred_dealer_id or loser.preferred_dealer_id,
                    update_time=w.now,
                    update_actor=w.scope,
                )
            )
            await conn.execute(
                members.update()
                .where(members.c.id == loser_id)
                .values(
                    balance=loser_balance,
                    next_expiry=None,
                    state=MemberState.MERGED.value,
                    merged_into=winner_id,
                    update_time=w.now,
                    update_actor=w.scope,
                )
            )
            # Members merged into the loser earlier now point straight at the winner.
            await conn.execute(
                members.update()
                .where(members.c.merged_into == loser_id)
                .values(merged_into=winner_id)
            )
            await conn.execute(
                identities.update()
                .where(identities.c.member_id == loser_id, identities.c.erase_time.is_(None))
                .values(member_id=winner_id)
            )
            for vin in (
                await conn.scalars(sa.select(vehicles.c.vin).where(vehicles.c.owner_id == loser_id))
            ).all():
                await self._change_owner(conn, vin, winner_id, w.now, "merge")
            await self._copy_relations(conn, loser_id, winner_id, w.now)
            await self._copy_consents(conn, loser_id, winner_id, w.now)
            # Customers and dealers read tier reasons: no member id, no staff note.
            await self._review_tier(conn, winner_id, winner.tier, w.now, cause=MERGE_NOTE)
            await self._remember(conn, w, "MergeMembers", winner_id, winner_id)

        await self._write(op)
        metrics.MERGES.inc()
        return await self.get_member(winner_id, w.now), await self.get_member(loser_id, w.now)

    async def _copy_relations(
        self, conn: AsyncConnection, src: str, dst: str, now: dt.datetime
    ) -> None:
        r = dealer_relations.c
        rows = (
            await conn.execute(sa.select(r.dealer_id, r.relation, r.vin).where(r.member_id == src))
        ).all()
        for row in rows:
            exists = await conn.scalar(
                sa.select(r.seq).where(
                    r.member_id == dst,
                    r.dealer_id == row.dealer_id,
                    r.relation == row.relation,
                    r.vin == row.vin,
                )
            )
            if exists is None:
                await conn.execute(
                    dealer_relations.insert().values(
                        member_id=dst,
                        dealer_id=row.dealer_id,
                        relation=row.relation,
                        vin=row.vin,
                        create_time=now,
                    )
                )

    async def _copy_consents(
        self, conn: AsyncConnection, src: str, dst: str, now: dt.datetime
    ) -> None:
        """Consent history is append-only: the winner gets copies with the original
        decision times, so the latest decision of either record still wins."""
        c = consent_events.c
        rows = (await conn.execute(sa.select(consent_events).where(c.member_id == src))).all()
        for row in sorted(rows, key=lambda x: x.seq):
            await conn.execute(
                consent_events.insert().values(
                    member_id=dst,
                    purpose=row.purpose,
                    channel=row.channel,
                    action=row.action,
                    occur_time=row.occur_time,
                    source=f"merge:{row.source}"[:128],
                    actor=row.actor,
                    record_time=now,
                )
            )

    async def erase(self, w: Write, member_id: str) -> tuple[MemberRecord, dt.datetime]:
        """Tombstone the member's personal data (idempotent); (member, first erase time)."""

        async def op(conn: AsyncConnection) -> dt.datetime:
            prior = await self._prior(conn, w, "EraseMember", member_id)
            row = await self._lock(conn, member_id)
            if prior is None:
                await self._remember(conn, w, "EraseMember", "erased", member_id)
            if row.erase_time is not None:
                return row.erase_time
            ident_ids = list(
                (
                    await conn.scalars(
                        sa.select(identities.c.id).where(
                            identities.c.member_id == member_id, identities.c.erase_time.is_(None)
                        )
                    )
                ).all()
            )
            balance, _ = await self._settle(conn, row, w.now)
            vins = list(
                (
                    await conn.scalars(
                        sa.select(vehicles.c.vin).where(vehicles.c.owner_id == member_id)
                    )
                ).all()
            )
            plan = erasure.plan(
                already_erased=False, identity_ids=ident_ids, balance=balance, owned_vins=vins
            )
            for ident_id, stone in plan.identity_tombstones:
                await conn.execute(
                    identities.update()
                    .where(identities.c.id == ident_id)
                    .values(value=stone, app_id="", erase_time=w.now)
                )
            forfeit = ledger.forfeit(new_id("pt"), plan.forfeit_points, w.now)
            if forfeit is not None:
                balance, _ = await self._book(
                    conn, member_id, [forfeit], balance, reason="member erased", actor=w.scope
                )
            for vin in plan.release_vins:
                await self._change_owner(conn, vin, None, w.now, "erasure")
            if row.tier:
                await conn.execute(
                    tier_changes.insert().values(
                        member_id=member_id,
                        from_tier=row.tier,
                        to_tier="",
                        reason="member erased",
                        change_time=w.now,
                    )
                )
            blank = {"display_name": "", "city": "", "preferred_dealer_id": ""}
            await conn.execute(
                members.update()
                .where(members.c.id == member_id)
                .values(
                    **blank,
                    balance=balance,
                    next_expiry=None,
                    tier="",
                    state=MemberState.ERASED.value,
                    erase_time=w.now,
                    update_time=w.now,
                    update_actor=w.scope,
                )
            )
            # Members merged into this one were the same person.
            merged = await conn.scalars(
                members.update()
                .where(members.c.merged_into == member_id)
                .values(**blank, erase_time=w.now)
                .returning(members.c.id)
            )
            await self._forget_fingerprints(conn, [member_id, *merged])
            metrics.ERASURES.inc()
            return w.now

        erase_time = await self._write(op)
        return await self.get_member(member_id, w.now), erase_time

    async def _forget_fingerprints(self, conn: AsyncConnection, member_ids: list[str]) -> None:
        """Request fingerprints hash the requests, which carried personal data: keep only
        one of the method and the member (`erasure.erased_fingerprint`) for each."""
        r = request_ids.c
        pairs = sa.select(r.method, r.member_id).distinct().where(r.member_id.in_(member_ids))
        for method, member_id in (await conn.execute(pairs)).all():
            await conn.execute(
                request_ids.update()
                .where(r.member_id == member_id, r.method == method)
                .values(fingerprint=erasure.erased_fingerprint(method, member_id))
            )

    # ------------------------------------------------------------------ points

    async def _credit(
        self, conn: AsyncConnection, w: Write, member_id: str, points: int, expire_at: dt.datetime
    ) -> Row[Any] | None:
        """The fast path of an earn, one statement: add `points` to the balance and the
        qualifying points of an active member with no lot due and a cached qualifying sum
        that holds now; the row afterwards (None: take the slow path)."""
        params = {
            "p_id": member_id,
            "p_now": w.now,
            "p_points": points,
            "p_expire_at": expire_at,
            "p_leaves": ledger.add_months(w.now, tiers.WINDOW_MONTHS),
            "p_scope": w.scope,
        }
        return (await conn.execute(_CREDIT, params)).first()

    async def _debit(
        self, conn: AsyncConnection, w: Write, member_id: str, points: int
    ) -> Row[Any] | None:
        """The fast path of a redemption, one statement: take `points` from the balance of
        an active member with no lot due, a cached qualifying sum that holds now and enough
        points; the row afterwards (None: take the slow path). On PostgreSQL a concurrent
        redemption waits for the row lock and re-checks `balance >= points` after it."""
        params = {"p_id": member_id, "p_now": w.now, "p_points": points, "p_scope": w.scope}
        return (await conn.execute(_DEBIT, params)).first()

    async def earn(
        self, w: Write, member_id: str, points: int, reason: str, source_ref: str
    ) -> tuple[TransactionRecord, MemberRecord]:
        """Book earned points (a retried request id books nothing more). The hot path, four
        statements in one transaction, none of which reads more than the member's row:
        claim the request id, update the member (balance, cached qualifying points, next
        expiry) returning it, append the entry, read its identities. When a lot is due,
        the cached qualifying points do not hold any more or the member is not active, the
        slow path locks the row, settles and recomputes first (`_prepare`)."""
        entry = ledger.earn(new_id("pt"), points, w.now, self.config.expiry_months)
        assert entry.expire_at is not None
        expire_at = entry.expire_at

        async def op(conn: AsyncConnection) -> tuple[str, Any]:
            prior = await self._claim(conn, w, "EarnPoints", entry.id, member_id)
            if prior is not None:
                return prior, None
            row = await self._credit(conn, w, member_id, points, expire_at)
            if row is None:
                await self._prepare(conn, member_id, w.now)
                row = await self._credit(conn, w, member_id, points, expire_at)
                assert row is not None, "the slow path leaves the fast path open"
            _, (txn,) = await self._book(
                conn, member_id, [entry], row.balance - points, reason=reason,
                source_ref=source_ref, actor=w.scope,
            )  # fmt: skip
            qualifying = int(row.qualifying)
            tier = await self._review_tier(
                conn, member_id, row.tier, w.now, cause=f"earned {points}", points=qualifying
            )
            idents = await self._identities(conn, member_id)
            return entry.id, (txn, replace(_member_record(row, idents, qualifying), tier=tier))

        txn_id, fresh = await self._write(op)
        if fresh is not None:
            return fresh
        return await self._transaction(txn_id), await self.get_member(member_id, w.now)

    async def redeem(
        self, w: Write, member_id: str, points: int, reason: str, source_ref: str
    ) -> tuple[TransactionRecord, MemberRecord]:
        """Spend points; more than the balance (after expiry) is InsufficientPoints. The
        hot path is the earn's four statements; the UPDATE itself refuses to go negative."""
        if points <= 0:
            raise InvalidValue("points", "must be positive")
        entry_id = new_id("pt")

        async def op(conn: AsyncConnection) -> tuple[str, Any]:
            prior = await self._claim(conn, w, "RedeemPoints", entry_id, member_id)
            if prior is not None:
                return prior, None
            row = await self._debit(conn, w, member_id, points)
            if row is None:
                balance = await self._prepare(conn, member_id, w.now)
                ledger.redeem(entry_id, balance, points, w.now)  # InsufficientPoints
                row = await self._debit(conn, w, member_id, points)
                if row is None:  # unreachable under the row lock; refused all the same
                    raise InsufficientPoints(points, balance)
            before = int(row.balance) + points
            entry = ledger.redeem(entry_id, before, points, w.now)
            _, (txn,) = await self._book(
                conn, member_id, [entry], before, reason=reason, source_ref=source_ref,
                actor=w.scope,
            )  # fmt: skip
            idents = await self._identities(conn, member_id)
            return entry_id, (txn, _member_record(row, idents, int(row.qualifying)))

        try:
            txn_id, fresh = await self._write(op)
        except InsufficientPoints:
            metrics.REDEEM_REFUSED.inc()
            raise
        if fresh is not None:
            return fresh
        return await self._transaction(txn_id), await self.get_member(member_id, w.now)

    async def _transaction(self, txn_id: str) -> TransactionRecord:
        async with self.db.engine.connect() as conn:
            row = (
                await conn.execute(
                    sa.select(point_transactions).where(point_transactions.c.id == txn_id)
                )
            ).one()
        return _txn_record(row)

    async def list_transactions(
        self, member_id: str, before_seq: int | None, limit: int
    ) -> list[TransactionRecord]:
        """Up to `limit` entries older than `before_seq`, newest first."""
        pt = point_transactions.c
        query = sa.select(point_transactions).where(pt.member_id == member_id)
        if before_seq is not None:
            query = query.where(pt.seq < before_seq)
        async with self.db.engine.connect() as conn:
            rows = await conn.execute(query.order_by(pt.seq.desc()).limit(limit))
            return [_txn_record(r) for r in rows]

    async def ledger_sum(self, member_id: str) -> int:
        """Sum of the member's ledger (for checks: it always equals the balance)."""
        async with self.db.engine.connect() as conn:
            total = await conn.scalar(
                sa.select(sa.func.coalesce(sa.func.sum(point_transactions.c.points), 0)).where(
                    point_transactions.c.member_id == member_id
                )
            )
        return int(total or 0)

    async def list_tier_changes(
        self, member_id: str, before_seq: int | None, limit: int
    ) -> list[TierChangeRecord]:
        """Up to `limit` tier changes older than `before_seq`, newest first."""
        tc = tier_changes.c
        query = sa.select(tier_changes).where(tc.member_id == member_id)
        if before_seq is not None:
            query = query.where(tc.seq < before_seq)
        async with self.db.engine.connect() as conn:
            rows = await conn.execute(query.order_by(tc.seq.desc()).limit(limit))
            return [
                TierChangeRecord(
                    r.seq, r.member_id, r.from_tier, r.to_tier, r.reason, r.change_time
                )
                for r in rows
            ]

    # ------------------------------------------------------------------ vehicles

    async def _change_owner(
        self, conn: AsyncConnection, vin: str, owner: str | None, now: dt.datetime, reason: str
    ) -> None:
        """Close the VIN's open ownership period and open one for `owner` (None: release)."""
        await conn.execute(
            vehicle_ownerships.update()
            .where(vehicle_ownerships.c.vin == vin, vehicle_ownerships.c.end_time.is_(None))
            .values(end_time=now)
        )
        if owner is not None:
            await conn.execute(
                vehicle_ownerships.insert().values(
                    vin=vin, member_id=owner, start_time=now, reason=reason
                )
            )
        await conn.execute(
            vehicles.update().where(vehicles.c.vin == vin).values(owner_id=owner, update_time=now)
        )

    async def _lock_vehicle(self, conn: AsyncConnection, vin: str) -> Row[Any] | None:
        query = sa.select(vehicles).where(vehicles.c.vin == vin)
        if not self.db.is_sqlite:
            query = query.with_for_update()
        return (await conn.execute(query)).first()

    async def bind_vehicle(
        self,
        w: Write,
        *,
        member_id: str,
        vin: str,
        brand: str,
        model: str,
        purchase_date: str,
        dealer_id: str,
    ) -> VehicleRecord:
        """Make the member the VIN's owner; a VIN owned by someone else is refused."""

        async def op(conn: AsyncConnection) -> None:
            if await self._prior(conn, w, "BindVehicle", member_id) is not None:
                return
            await self._lock_active(conn, member_id)
            car = await self._lock_vehicle(conn, vin)
            attrs = {
                "brand": brand,
                "model": model,
                "purchase_date": purchase_date,
                "dealer_id": dealer_id,
            }
            if car is None:
                await conn.execute(
                    vehicles.insert().values(vin=vin, owner_id=None, update_time=w.now, **attrs)
                )
                await self._change_owner(conn, vin, member_id, w.now, "bind")
            elif car.owner_id is None:
                await conn.execute(vehicles.update().where(vehicles.c.vin == vin).values(**attrs))
                await self._change_owner(conn, vin, member_id, w.now, "bind")
            elif car.owner_id != member_id:
                raise RuleViolation(
                    "the VIN has another current owner; use TransferVehicle",
                    reason="VIN_OWNED_BY_OTHER_MEMBER",
                )
            await self._remember(conn, w, "BindVehicle", vin, member_id)

        await self._write(op)
        return await self.vehicle(vin)

    async def transfer_vehicle(self, w: Write, vin: str, to_member: str) -> VehicleRecord:
        """Move the VIN to `to_member`, keeping its history."""

        async def op(conn: AsyncConnection) -> None:
            if await self._prior(conn, w, "TransferVehicle", to_member) is not None:
                return
            await self._lock_active(conn, to_member)
            car = await self._lock_vehicle(conn, vin)
            if car is None:
                raise VehicleNotFound(f"vehicle {vin} not found", reason="VEHICLE_NOT_FOUND")
            if car.owner_id != to_member:
                await self._change_owner(conn, vin, to_member, w.now, "transfer")
            await self._remember(conn, w, "TransferVehicle", vin, to_member)

        await self._write(op)
        return await self.vehicle(vin)

    async def vehicle(self, vin: str) -> VehicleRecord:
        """One car with its history."""
        async with self.db.engine.connect() as conn:
            cars = await self._vehicles(conn, sa.select(vehicles).where(vehicles.c.vin == vin))
        if not cars:
            raise VehicleNotFound(f"vehicle {vin} not found", reason="VEHICLE_NOT_FOUND")
        return cars[0]

    async def _vehicles(self, conn: AsyncConnection, query: sa.Select[Any]) -> list[VehicleRecord]:
        cars = (await conn.execute(query)).all()
        if not cars:
            return []
        vo = vehicle_ownerships.c
        periods: dict[str, list[OwnershipRecord]] = {}
        for r in await conn.execute(
            sa.select(vehicle_ownerships)
            .where(vo.vin.in_([c.vin for c in cars]))
            .order_by(vo.vin, vo.seq)
        ):
            periods.setdefault(r.vin, []).append(
                OwnershipRecord(r.member_id, r.start_time, r.end_time, r.reason)
            )
        return [
            VehicleRecord(
                vin=c.vin,
                owner_id=c.owner_id or "",
                brand=c.brand,
                model=c.model,
                purchase_date=c.purchase_date,
                dealer_id=c.dealer_id,
                history=tuple(periods.get(c.vin, ())),
            )
            for c in cars
        ]

    async def list_vehicles(
        self, member_id: str, after_vin: str | None, limit: int
    ) -> list[VehicleRecord]:
        """Up to `limit` cars the member currently owns, by VIN, after `after_vin`."""
        query = sa.select(vehicles).where(vehicles.c.owner_id == member_id)
        if after_vin:
            query = query.where(vehicles.c.vin > after_vin)
        async with self.db.engine.connect() as conn:
            return await self._vehicles(conn, query.order_by(vehicles.c.vin).limit(limit))

    # ------------------------------------------------------------------ dealers

    async def record_dealer_relation(
        self, w: Write, member_id: str, dealer_id: str, relation: str, vin: str
    ) -> bool:
        """Record that a dealer serviced the member's car or holds a lead of the member."""

        async def op(conn: AsyncConnection) -> bool:
            prior = await self._prior(conn, w, "RecordDealerRelation", member_id)
            if prior is not None:
                return prior == "1"
            await self._lock_active(conn, member_id)
            if vin:
                owner = await conn.scalar(
                    sa.select(vehicles.c.owner_id).where(vehicles.c.vin == vin)
                )
                if owner != member_id:
                    raise RuleViolation(
                        "the member does not own that VIN", reason="VIN_NOT_OWNED_BY_MEMBER"
                    )
            r = dealer_relations.c
            exists = await conn.scalar(
                sa.select(r.seq).where(
                    r.member_id == member_id,
                    r.dealer_id == dealer_id,
                    r.relation == relation,
                    r.vin == vin,
                )
            )
            if exists is None:
                await conn.execute(
                    dealer_relations.insert().values(
                        member_id=member_id,
                        dealer_id=dealer_id,
                        relation=relation,
                        vin=vin,
                        create_time=w.now,
                    )
                )
            created = exists is None
            await self._remember(
                conn, w, "RecordDealerRelation", "1" if created else "0", member_id
            )
            return created

        return await self._write(op)

    async def dealer_related(self, dealer_id: str, member_id: str) -> bool:
        """True if the member currently owns a car the dealer sold or serviced, or is
        linked to one of the dealer's leads."""
        v, r = vehicles.c, dealer_relations.c
        serviced = sa.exists().where(
            r.vin == v.vin, r.dealer_id == dealer_id, r.relation == "service"
        )
        owns = sa.exists().where(
            v.owner_id == member_id, sa.or_(v.dealer_id == dealer_id, serviced)
        )
        lead = sa.exists().where(
            r.member_id == member_id, r.dealer_id == dealer_id, r.relation == "lead"
        )
        async with self.db.engine.connect() as conn:
            return bool(await conn.scalar(sa.select(sa.or_(owns, lead))))

    # ------------------------------------------------------------------ consent

    async def record_consent(
        self,
        w: Write,
        *,
        member_id: str,
        purpose: consent.Purpose,
        channel: consent.Channel,
        action: consent.Action,
        occur_time: dt.datetime,
        source: str,
    ) -> ConsentState:
        """Append a consent decision; returns the (purpose, channel) state afterwards."""

        async def op(conn: AsyncConnection) -> None:
            if await self._prior(conn, w, "RecordConsent", member_id) is not None:
                return
            await self._lock_active(conn, member_id)
            await conn.execute(
                consent_events.insert().values(
                    member_id=member_id,
                    purpose=purpose.value,
                    channel=channel.value,
                    action=action.value,
                    occur_time=occur_time,
                    source=source,
                    actor=w.scope,
                    record_time=w.now,
                )
            )
            await self._remember(conn, w, "RecordConsent", "ok", member_id)

        await self._write(op)
        return consent.decide(await self.consent_events(member_id), purpose, channel)

    async def consent_events(self, member_id: str) -> list[ConsentEvent]:
        """Every consent decision of the member, in recording order."""
        c = consent_events.c
        async with self.db.engine.connect() as conn:
            rows = await conn.execute(
                sa.select(consent_events).where(c.member_id == member_id).order_by(c.seq)
            )
            return [_consent_event(r) for r in rows]

    async def member_state(self, member_id: str) -> tuple[MemberState, str] | None:
        """(state, merged_into) of a member, or None if unknown; no side effects."""
        async with self.db.engine.connect() as conn:
            row = (
                await conn.execute(
                    sa.select(members.c.state, members.c.merged_into).where(
                        members.c.id == member_id
                    )
                )
            ).first()
        return None if row is None else (MemberState(row.state), row.merged_into)

    async def member_id_for(self, key: IdentityKey) -> str | None:
        """The member holding a live identity, if any."""
        async with self.db.engine.connect() as conn:
            return await self._member_id_for(conn, key)

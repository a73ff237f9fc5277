"""The lead service's tables and the queries it needs (SQLAlchemy 2.0 Core).

Core, not the ORM: the intake path writes whole batches with `executemany` and reads
them with a handful of `IN` queries, and the ORM's unit of work would cost more CPU per row
than everything else on that path together. Every query here is on an index; the index
that serves it is named beside it.

Timestamps are stored as timezone-aware UTC (`UtcDateTime`): PostgreSQL keeps
`timestamptz`, SQLite keeps fixed-width ISO text that sorts like time, and both come back
as aware datetimes so Python never compares naive with aware.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from mesh.idempotency import RequestIds, request_ids_table
from mesh.schema import BigId, UtcDateTime, new_metadata
from mesh.unit_of_work import lock_hash
from services.lead.domain.model import (
    Channel,
    Consents,
    Dealer,
    Grade,
    Lead,
    LeadStatus,
    Rating,
    TimeFrame,
    Touchpoint,
)

# The hand-written Alembic scripts that create these tables (tests compare both).
MIGRATIONS = Path(__file__).resolve().parent / "migrations"

metadata = new_metadata()

dealers = sa.Table(
    "dealers",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("name", sa.String(100), nullable=False),
    # Brands as a JSON list: read whole with the dealer, never filtered on in SQL (the
    # registry is small and cached in memory for routing).
    sa.Column("brands", sa.JSON, nullable=False),
    sa.Column("province", sa.String(64), nullable=False),
    sa.Column("city", sa.String(64), nullable=False),
    sa.Column("daily_capacity", sa.Integer, nullable=False),
    sa.Column("active", sa.Boolean, nullable=False),
    sa.Column("create_time", UtcDateTime, nullable=False),
    sa.Column("create_actor", sa.String(128), nullable=False, server_default=""),
)

leads = sa.Table(
    "leads",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("status", sa.String(24), nullable=False),
    sa.Column("grade", sa.String(2), nullable=False),
    sa.Column("score", sa.Integer, nullable=False),
    sa.Column("rating_reasons", sa.JSON, nullable=False),
    sa.Column("name", sa.String(100), nullable=False),
    sa.Column("mobile_e164", sa.String(20), nullable=True),
    sa.Column("email", sa.String(254), nullable=True),
    sa.Column("city", sa.String(64), nullable=False),
    sa.Column("province", sa.String(64), nullable=False),
    sa.Column("brand", sa.String(64), nullable=False),
    sa.Column("series", sa.String(64), nullable=False),
    sa.Column("model", sa.String(64), nullable=False),
    sa.Column("trim", sa.String(64), nullable=False),
    sa.Column("model_year", sa.Integer, nullable=False, server_default="0"),
    sa.Column("time_frame", sa.String(24), nullable=False),
    sa.Column("test_drive_requested", sa.Boolean, nullable=False),
    sa.Column("channel", sa.String(24), nullable=False),
    sa.Column("channel_lead_id", sa.String(128), nullable=False),
    sa.Column("consent_contact", sa.Boolean, nullable=False),
    sa.Column("consent_marketing", sa.Boolean, nullable=False),
    sa.Column("consent_share", sa.Boolean, nullable=False),
    sa.Column("preferred_dealer_id", sa.String(32), nullable=True),
    # "" is the OEM pool; kept non-null so the (dealer_id, create_time, id) index serves
    # the pool's listing as well as each dealer's.
    sa.Column("dealer_id", sa.String(32), nullable=False),
    sa.Column("routing_reason", sa.String(200), nullable=False),
    sa.Column("follow_up_due_time", UtcDateTime, nullable=True),
    sa.Column("lost_reason", sa.String(500), nullable=False),
    sa.Column("touch_count", sa.Integer, nullable=False),
    sa.Column("last_touch_time", UtcDateTime, nullable=False),
    sa.Column("create_time", UtcDateTime, nullable=False),
    sa.Column("create_actor", sa.String(128), nullable=False),
    sa.Column("update_time", UtcDateTime, nullable=False),
    sa.Column("update_actor", sa.String(128), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    # Listing: every page is a range scan on one of these in (create_time, id) order.
    sa.Index(None, "create_time", "id"),
    sa.Index(None, "dealer_id", "create_time", "id"),
    # The overdue view: open leads by due time.
    sa.Index(None, "follow_up_due_time"),
)

# The dedup guard: the current lead of each (contact, brand) — contact is the E.164 mobile,
# or "email:<address>" for the ADF leads that have no mobile; brand is case-folded. Its
# primary key is what makes two concurrent submissions of the same mobile create one lead,
# in one process or several. Contact first: it is the selective column, so
# `contact_key IN (...)` is an index range even before the planner has statistics.
lead_keys = sa.Table(
    "lead_keys",
    metadata,
    sa.Column("contact_key", sa.String(270), primary_key=True),
    sa.Column("brand_key", sa.String(64), primary_key=True),
    sa.Column("lead_id", sa.String(32), nullable=False),
)

touchpoints = sa.Table(
    "touchpoints",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("lead_id", sa.String(32), nullable=False),
    sa.Column("channel", sa.String(24), nullable=False),
    sa.Column("channel_lead_id", sa.String(128), nullable=False),
    sa.Column("occur_time", UtcDateTime, nullable=False),
    sa.Column("payload_ref", sa.String(80), nullable=False),
    sa.Column("request_id", sa.String(128), nullable=False),
    # The dealer a walk-in happened at ("" for other channels); see model.Touchpoint.
    sa.Column("dealer_id", sa.String(32), nullable=False, server_default=""),
    # A lead's touchpoints, oldest first.
    sa.Index(None, "lead_id", "id"),
    # A resent channel lead is found by (channel, channel_lead_id, dealer); unique where
    # the channel gave an id, so a resend can never become a second touchpoint. The dealer
    # is part of the key because each dealer numbers its own walk-ins.
    # The channel's id first: it is the selective column, so an `IN` list of ids is an
    # index range whatever the planner's statistics say (PostgreSQL, fresh or not).
    sa.Index(
        "uq_touchpoints_channel_lead",
        "channel_lead_id",
        "channel",
        "dealer_id",
        unique=True,
        sqlite_where=sa.text("channel_lead_id <> ''"),
        postgresql_where=sa.text("channel_lead_id <> ''"),
    ),
)

# AIP-155 request ids, in the shape every service shares (mesh/idempotency.py): the
# result is the lead's (or dealer's) id.
request_ids = request_ids_table(metadata)
REQUEST_IDS = RequestIds(request_ids)

# Leads routed to each dealer per UTC day, to stay within daily capacity across processes.
dealer_load = sa.Table(
    "dealer_load",
    metadata,
    sa.Column("dealer_id", sa.String(32), primary_key=True),
    sa.Column("day", sa.Date, primary_key=True),
    sa.Column("assigned", sa.Integer, nullable=False),
)


# ------------------------------------------------------------------------------- mapping


def lead_row(lead: Lead) -> dict[str, Any]:
    """The `leads` row of a domain lead (touchpoints are rows of their own)."""
    return {
        "id": lead.id,
        "status": lead.status.value,
        "grade": lead.rating.grade.value,
        "score": lead.rating.score,
        "rating_reasons": list(lead.rating.reasons),
        "name": lead.name,
        "mobile_e164": lead.mobile_e164,
        "email": lead.email,
        "city": lead.city,
        "province": lead.province,
        "brand": lead.brand,
        "series": lead.series,
        "model": lead.model,
        "trim": lead.trim,
        "model_year": lead.model_year,
        "time_frame": lead.time_frame.value,
        "test_drive_requested": lead.test_drive_requested,
        "channel": lead.channel.value,
        "channel_lead_id": lead.channel_lead_id,
        "consent_contact": lead.consents.contact,
        "consent_marketing": lead.consents.marketing,
        "consent_share": lead.consents.share_with_dealer,
        "preferred_dealer_id": lead.preferred_dealer_id,
        "dealer_id": lead.dealer_id or "",
        "routing_reason": lead.routing_reason,
        "follow_up_due_time": lead.follow_up_due,
        "lost_reason": lead.lost_reason,
        "touch_count": len(lead.touchpoints),
        "last_touch_time": lead.last_touch_time,
        "create_time": lead.create_time,
        "create_actor": lead.create_actor,
        "update_time": lead.update_time,
        "update_actor": lead.update_actor,
        "version": lead.version,
    }


def touchpoint_row(lead_id: str, tp: Touchpoint) -> dict[str, Any]:
    """The `touchpoints` row of one arrival."""
    return {
        "lead_id": lead_id,
        "channel": tp.channel.value,
        "channel_lead_id": tp.channel_lead_id,
        "occur_time": tp.time,
        "payload_ref": tp.payload_ref,
        "request_id": tp.request_id,
        "dealer_id": tp.dealer_id,
    }


def _touchpoint(row: Any) -> Touchpoint:
    return Touchpoint(
        channel=Channel(row.channel),
        time=row.occur_time,
        channel_lead_id=row.channel_lead_id,
        request_id=row.request_id,
        payload_ref=row.payload_ref,
        dealer_id=row.dealer_id,
    )


def _lead(row: Any, tps: tuple[Touchpoint, ...]) -> Lead:
    return Lead(
        id=row.id,
        status=LeadStatus(row.status),
        rating=Rating(
            grade=Grade(row.grade), score=row.score, reasons=tuple(row.rating_reasons or ())
        ),
        name=row.name,
        mobile_e164=row.mobile_e164,
        email=row.email,
        city=row.city,
        province=row.province,
        brand=row.brand,
        series=row.series,
        model=row.model,
        trim=row.trim,
        model_year=row.model_year,
        time_frame=TimeFrame(row.time_frame),
        test_drive_requested=row.test_drive_requested,
        channel=Channel(row.channel),
        channel_lead_id=row.channel_lead_id,
        consents=Consents(row.consent_contact, row.consent_marketing, row.consent_share),
        preferred_dealer_id=row.preferred_dealer_id,
        dealer_id=row.dealer_id or None,
        routing_reason=row.routing_reason,
        touchpoints=tps,
        follow_up_due=row.follow_up_due_time,
        lost_reason=row.lost_reason,
        create_time=row.create_time,
        update_time=row.update_time,
        last_touch_time=row.last_touch_time,
        create_actor=row.create_actor,
        update_actor=row.update_actor,
        version=row.version,
    )


def dealer_row(dealer: Dealer, actor: str = "") -> dict[str, Any]:
    """The `dealers` row of a dealer."""
    return {
        "id": dealer.id,
        "name": dealer.name,
        "brands": list(dealer.brands),
        "province": dealer.province,
        "city": dealer.city,
        "daily_capacity": dealer.daily_capacity,
        "active": dealer.active,
        "create_time": dealer.create_time,
        "create_actor": actor,
    }


def _dealer(row: Any) -> Dealer:
    return Dealer(
        id=row.id,
        name=row.name,
        brands=tuple(row.brands),
        province=row.province,
        city=row.city,
        daily_capacity=row.daily_capacity,
        active=row.active,
        create_time=row.create_time,
    )


# ------------------------------------------------------------------------------- reads


async def leads_by_ids(
    conn: AsyncConnection, ids: Iterable[str], *, for_update: bool = False
) -> dict[str, Lead]:
    """Leads with their touchpoints, by id (pk_leads, ix_touchpoints_lead_id_id).

    `for_update` locks the rows on PostgreSQL until commit, so a status change and a merge
    of the same lead in different processes apply one after the other; SQLite's writer is
    already alone (BEGIN IMMEDIATE).
    """
    wanted = sorted(set(ids))
    if not wanted:
        return {}
    query = sa.select(leads).where(leads.c.id.in_(wanted)).order_by(leads.c.id)
    if for_update:
        query = query.with_for_update()
    rows = (await conn.execute(query)).all()
    tps = await touchpoints_of(conn, [r.id for r in rows])
    return {r.id: _lead(r, tps.get(r.id, ())) for r in rows}


async def touchpoints_of(
    conn: AsyncConnection, lead_ids: Sequence[str]
) -> dict[str, tuple[Touchpoint, ...]]:
    """Touchpoints of each lead, oldest first (ix_touchpoints_lead_id_id)."""
    if not lead_ids:
        return {}
    rows = (
        await conn.execute(
            sa.select(touchpoints)
            .where(touchpoints.c.lead_id.in_(lead_ids))
            .order_by(touchpoints.c.lead_id, touchpoints.c.id)
        )
    ).all()
    out: dict[str, list[Touchpoint]] = {}
    for r in rows:
        out.setdefault(r.lead_id, []).append(_touchpoint(r))
    return {k: tuple(v) for k, v in out.items()}


async def get_lead(conn: AsyncConnection, lead_id: str) -> Lead | None:
    """One lead with its touchpoints, or None."""
    return (await leads_by_ids(conn, [lead_id])).get(lead_id)


@dataclass(frozen=True, slots=True)
class Prior:
    """What an earlier call with a request id did: its lead and the request's fingerprint."""

    result: str
    fingerprint: str


async def all_dealers(conn: AsyncConnection) -> list[Dealer]:
    """The whole registry, by id (routing needs every candidate; it is small)."""
    rows = await conn.execute(sa.select(dealers).order_by(dealers.c.id))
    return [_dealer(r) for r in rows]


async def get_dealer(conn: AsyncConnection, dealer_id: str) -> Dealer | None:
    """One dealer, or None (pk_dealers)."""
    row = (await conn.execute(sa.select(dealers).where(dealers.c.id == dealer_id))).first()
    return _dealer(row) if row else None


async def count_dealers(conn: AsyncConnection) -> int:
    """How many dealers are registered (start-up seeding checks for zero)."""
    return int((await conn.execute(sa.select(sa.func.count()).select_from(dealers))).scalar_one())


async def list_dealers(
    conn: AsyncConnection, *, after_id: str, limit: int, province: str, city: str
) -> list[Dealer]:
    """A page of dealers by id after `after_id` (pk_dealers). Brand filtering happens in
    Python on the page's rows, since brands are a JSON list (see `list_dealers_page`)."""
    query = sa.select(dealers).where(dealers.c.id > after_id).order_by(dealers.c.id).limit(limit)
    if province:
        query = query.where(sa.func.lower(dealers.c.province) == province.casefold())
    if city:
        query = query.where(sa.func.lower(dealers.c.city) == city.casefold())
    return [_dealer(r) for r in await conn.execute(query)]


@dataclass(frozen=True, slots=True)
class LeadFilter:
    """ListLeads filters, already scoped to the caller; None/empty means no filter."""

    dealer_id: str | None = None
    unassigned_only: bool = False
    grade: str | None = None
    status: str | None = None
    channel: str | None = None
    create_start: dt.datetime | None = None
    create_end: dt.datetime | None = None
    overdue_at: dt.datetime | None = None
    # Nothing can match (a dealer asking for another dealer's leads): no query at all.
    nothing: bool = False


async def list_leads(
    conn: AsyncConnection,
    flt: LeadFilter,
    *,
    after: tuple[dt.datetime, str] | None,
    limit: int,
) -> list[Lead]:
    """A page of leads, newest first: (create_time desc, id desc), after the key `after`.

    Served by ix_leads_dealer_id_create_time_id when a dealer (or the pool) is named,
    else ix_leads_create_time_id, read backwards; the other filters are checked on the
    rows of that range.
    """
    if flt.nothing:
        return []
    query = sa.select(leads)
    if flt.dealer_id is not None:
        query = query.where(leads.c.dealer_id == flt.dealer_id)
    elif flt.unassigned_only:
        query = query.where(leads.c.dealer_id == "")
    if flt.grade:
        query = query.where(leads.c.grade == flt.grade)
    if flt.status:
        query = query.where(leads.c.status == flt.status)
    if flt.channel:
        query = query.where(leads.c.channel == flt.channel)
    if flt.create_start is not None:
        query = query.where(leads.c.create_time >= flt.create_start)
    if flt.create_end is not None:
        query = query.where(leads.c.create_time < flt.create_end)
    if flt.overdue_at is not None:
        query = query.where(
            leads.c.follow_up_due_time < flt.overdue_at,
            leads.c.status.in_(["NEW", "CONTACTED", "TEST_DRIVE_BOOKED"]),
        )
    if after is not None:
        t, lead_id = after
        query = query.where(
            sa.or_(leads.c.create_time < t, sa.and_(leads.c.create_time == t, leads.c.id < lead_id))
        )
    query = query.order_by(leads.c.create_time.desc(), leads.c.id.desc()).limit(limit)
    rows = (await conn.execute(query)).all()
    tps = await touchpoints_of(conn, [r.id for r in rows])
    return [_lead(r, tps.get(r.id, ())) for r in rows]


# ------------------------------------------------------------------------------- writes


def _insert(conn: AsyncConnection) -> Any:
    """The dialect's INSERT (both have ON CONFLICT)."""
    return pg_insert if conn.dialect.name == "postgresql" else sqlite_insert


async def bulk_insert(conn: AsyncConnection, table: sa.Table, rows: list[dict[str, Any]]) -> None:
    """Insert many rows: executemany on SQLite; COPY on PostgreSQL.

    psycopg 3 runs an executemany as one pipelined statement per row, which costs about
    100 µs of Python per row; COPY through the same connection and transaction costs a few.
    Values are given as Python objects (aware datetimes, bools, None); JSON columns as
    lists, serialised here.
    """
    if not rows:
        return
    if conn.dialect.name != "postgresql":
        await conn.execute(table.insert(), rows)
        return
    columns = list(rows[0])
    json_cols = {i for i, c in enumerate(columns) if isinstance(table.c[c].type, sa.JSON)}
    raw = await conn.get_raw_connection()
    pg: Any = raw.driver_connection
    sql = f"COPY {table.name} ({', '.join(columns)}) FROM STDIN"
    async with pg.cursor() as cur, cur.copy(sql) as copy:
        for row in rows:
            values = [row[c] for c in columns]
            for i in json_cols:
                values[i] = json.dumps(values[i])
            await copy.write_row(values)


_LEAD_UPDATE = leads.update().where(leads.c.id == sa.bindparam("b_id"))


async def update_leads(conn: AsyncConnection, changed: Sequence[Lead]) -> None:
    """Write changed leads back whole (executemany by primary key)."""
    if not changed:
        return
    params = []
    for lead in changed:
        row = lead_row(lead)
        row["b_id"] = row.pop("id")
        params.append(row)
    await conn.execute(_LEAD_UPDATE, params)


@dataclass(frozen=True, slots=True)
class Remembered:
    """One request id of a batch to remember: whose, which request, the lead it concerns."""

    scope: str
    request_id: str
    fingerprint: str
    result: str


def _request_row(method: str, r: Remembered, now: dt.datetime) -> dict[str, Any]:
    return {
        "scope": r.scope,
        "method": method,
        "request_id": r.request_id,
        "fingerprint": r.fingerprint,
        "result": r.result,
        "create_time": now,
    }


async def insert_dealer(conn: AsyncConnection, dealer: Dealer, actor: str) -> bool:
    """Insert a dealer; False if the id is taken."""
    stmt = (
        _insert(conn)(dealers)
        .values(**dealer_row(dealer, actor))
        .on_conflict_do_nothing()
        .returning(dealers.c.id)
    )
    return (await conn.execute(stmt)).first() is not None


# ------------------------------------------------------------------ the intake batch, SQLite
#
# SQLite through aiosqlite runs every DBAPI call (cursor, execute, fetch, close) on the
# connection's own thread, one hand-over and wake-up each way per call: about a dozen
# statements made some 40 of them per batch, and on a busy one-core server each hand-over
# of the interpreter lock costs more than the statement. The batch's lookups and its writes
# are therefore two plain sqlite3 functions, each run whole on that thread in ONE call
# (`_on_sqlite_thread`), with the rows converted exactly as the column types store them, so
# the SQLAlchemy reads elsewhere see the same values. `IN (SELECT value FROM json_each(?))`
# keeps every statement's text constant whatever the batch size, and is still a search on
# the index (the same ones as the Core queries above).


def _sqlite_value(value: Any) -> Any:
    """A Python value as the column types store it on SQLite (UTC text, JSON text)."""
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        # SQLAlchemy's SQLite DATETIME text, "YYYY-MM-DD HH:MM:SS.ffffff" (isoformat is
        # several times cheaper than strftime).
        return value.astimezone(dt.UTC).replace(tzinfo=None).isoformat(" ", "microseconds")
    if isinstance(value, list | tuple):
        return json.dumps(list(value))
    return value


def _sqlite_time(text: str | None) -> dt.datetime | None:
    return None if text is None else dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC)


_LEAD_COLUMNS = tuple(leads.c.keys())
_LEAD_TIMES = frozenset({"follow_up_due_time", "last_touch_time", "create_time", "update_time"})
_LEAD_BOOLS = frozenset(
    {"test_drive_requested", "consent_contact", "consent_marketing", "consent_share"}
)
_TP_COLUMNS = (
    "lead_id",
    "channel",
    "channel_lead_id",
    "occur_time",
    "payload_ref",
    "request_id",
    "dealer_id",
)
_LEAD_TIME_AT = tuple(i for i, c in enumerate(_LEAD_COLUMNS) if c in _LEAD_TIMES)
_LEAD_REASONS_AT = _LEAD_COLUMNS.index("rating_reasons")


def _sqlite_lead_values(lead: Lead) -> list[Any]:
    """A lead's `leads` row in column order, stored as `_sqlite_value` would store each
    value, converting only the columns that need it (a generic conversion of all 33
    values costs ~30 µs per lead in a busy server)."""
    row = lead_row(lead)
    values = [row[c] for c in _LEAD_COLUMNS]
    for i in _LEAD_TIME_AT:
        values[i] = _sqlite_value(values[i])
    values[_LEAD_REASONS_AT] = _sqlite_value(values[_LEAD_REASONS_AT])
    return values


_IDS = "(SELECT value FROM json_each(?))"
# pk_request_ids (scope, method, request_id): a search per scope and id of the batch.
_SQL_REQUESTS = (
    "SELECT scope, request_id, result, fingerprint FROM request_ids "
    f"WHERE scope IN {_IDS} AND method = ? AND request_id IN {_IDS}"
)
_SQL_CHANNEL_IDS = (
    "SELECT channel, dealer_id, channel_lead_id, lead_id FROM touchpoints "
    f"WHERE channel_lead_id IN {_IDS} AND channel IN {_IDS} AND channel_lead_id <> ''"
)
_SQL_KEYS = f"SELECT contact_key, brand_key, lead_id FROM lead_keys WHERE contact_key IN {_IDS}"
_SQL_LEADS = f"SELECT {', '.join(_LEAD_COLUMNS)} FROM leads WHERE id IN {_IDS} ORDER BY id"
_SQL_TPS = (
    f"SELECT {', '.join(_TP_COLUMNS)} FROM touchpoints WHERE lead_id IN {_IDS} ORDER BY lead_id, id"
)
_SQL_LOAD_ROWS = (
    "INSERT INTO dealer_load (dealer_id, day, assigned) VALUES (?, ?, 0) ON CONFLICT DO NOTHING"
)
_SQL_LOADS = (
    f"SELECT dealer_id, assigned FROM dealer_load WHERE day = ? AND dealer_id IN {_IDS} "
    "ORDER BY dealer_id"
)
_SQL_INSERT_LEAD = (
    f"INSERT INTO leads ({', '.join(_LEAD_COLUMNS)}) "
    f"VALUES ({', '.join('?' for _ in _LEAD_COLUMNS)})"
)
_SQL_UPDATE_LEAD = (
    f"UPDATE leads SET {', '.join(f'{c} = ?' for c in _LEAD_COLUMNS[1:])} WHERE id = ?"
)
_SQL_INSERT_TP = (
    f"INSERT INTO touchpoints ({', '.join(_TP_COLUMNS)}) "
    f"VALUES ({', '.join('?' for _ in _TP_COLUMNS)})"
)
_SQL_INSERT_KEY = "INSERT INTO lead_keys (contact_key, brand_key, lead_id) VALUES (?, ?, ?)"
_SQL_UPDATE_KEY = "UPDATE lead_keys SET lead_id = ? WHERE contact_key = ? AND brand_key = ?"
_SQL_INSERT_REQUEST = (
    "INSERT INTO request_ids (scope, method, request_id, fingerprint, result, create_time) "
    "VALUES (?, ?, ?, ?, ?, ?)"
)
_SQL_ADD_LOAD = "UPDATE dealer_load SET assigned = assigned + ? WHERE dealer_id = ? AND day = ?"


# A request id as its caller sent it: (scope, request id).
RequestKey = tuple[str, str]
# A channel lead id in its namespace: (channel, walk-in dealer or "", channel lead id).
ChannelKey = tuple[str, str, str]


@dataclass(slots=True)
class BatchFound:
    """What a batch's lookups found (see `LeadEngine._write_batch`)."""

    by_request: dict[RequestKey, Prior]
    by_channel: dict[ChannelKey, str]
    key_db: dict[tuple[str, str], str]
    leads: dict[str, Lead]
    loads: dict[str, int]


@dataclass(slots=True)
class BatchWrites:
    """What a batch writes, in one transaction."""

    created: Sequence[Lead]
    changed: Sequence[Lead]
    touchpoints: Sequence[tuple[str, Touchpoint]]
    key_inserts: Sequence[tuple[str, str, str]]
    key_updates: Sequence[tuple[str, str, str]]
    requests: Sequence[Remembered]
    method: str
    now: dt.datetime
    day: dt.date
    added: dict[str, int]


async def _on_sqlite_thread(conn: AsyncConnection, fn: Any) -> Any:
    """Run `fn(sqlite3_connection)` on the aiosqlite connection's own thread, in one
    hand-over (aiosqlite's `_execute`, the primitive behind each of its own methods)."""
    raw = await conn.get_raw_connection()
    aio: Any = raw.driver_connection
    return await aio._execute(fn, aio._conn)


def _sqlite_lead(row: Sequence[Any], tps: tuple[Touchpoint, ...]) -> Lead:
    values = dict(zip(_LEAD_COLUMNS, row, strict=True))
    for c in _LEAD_TIMES:
        values[c] = _sqlite_time(values[c])
    for c in _LEAD_BOOLS:
        values[c] = bool(values[c])
    values["rating_reasons"] = json.loads(values["rating_reasons"])
    return _lead(SimpleNamespace(**values), tps)


async def sqlite_batch_lookup(
    conn: AsyncConnection,
    *,
    lock_keys: Iterable[str],
    method: str,
    request_keys: Sequence[RequestKey],
    channel_keys: Sequence[ChannelKey],
    keys: Sequence[tuple[str, str]],
    day: dt.date,
    load_ids: Sequence[str],
    missing_load_rows: Sequence[str],
) -> BatchFound:
    """BEGIN IMMEDIATE, then every lookup of a batch, in one call on the SQLite thread:
    request ids seen (pk_request_ids), channel lead ids seen (uq_touchpoints_channel_lead:
    the id, then the channel checked), the current lead of each (contact, brand)
    (pk_lead_keys: contact first), those leads with their touchpoints (pk_leads,
    ix_touchpoints_lead_id_id), and today's count of each dealer, its row made first if
    this process has not made sure of it yet (pk_dealer_load). The transaction stays open for
    `sqlite_batch_write` (or the connection's rollback). `lock_keys` are for PostgreSQL:
    BEGIN IMMEDIATE locks the whole database."""
    wanted_requests = {k for k in request_keys if k[1]}
    wanted_channel = {k for k in channel_keys if k[2]}
    wanted_keys = set(keys)
    day_text = day.isoformat()

    def run(db: Any) -> BatchFound:
        db.execute("BEGIN IMMEDIATE")
        try:
            by_request: dict[RequestKey, Prior] = {}
            if wanted_requests:
                scopes = json.dumps(sorted({k[0] for k in wanted_requests}))
                rids = json.dumps(sorted({k[1] for k in wanted_requests}))
                for scope, rid, result, fp in db.execute(_SQL_REQUESTS, (scopes, method, rids)):
                    if (scope, rid) in wanted_requests:
                        by_request[(scope, rid)] = Prior(result, fp)
            by_channel: dict[ChannelKey, str] = {}
            if wanted_channel:
                ids = json.dumps(sorted({k[2] for k in wanted_channel}))
                chans = json.dumps(sorted({k[0] for k in wanted_channel}))
                for channel, dealer, clid, lead_id in db.execute(_SQL_CHANNEL_IDS, (ids, chans)):
                    if (channel, dealer, clid) in wanted_channel:
                        by_channel[(channel, dealer, clid)] = lead_id
            key_db: dict[tuple[str, str], str] = {}
            if wanted_keys:
                contacts = json.dumps(sorted({k[0] for k in wanted_keys}))
                for contact, brand, lead_id in db.execute(_SQL_KEYS, (contacts,)):
                    if (contact, brand) in wanted_keys:
                        key_db[(contact, brand)] = lead_id
            found: dict[str, Lead] = {}
            lead_ids = sorted(
                {
                    *(p.result for p in by_request.values()),
                    *by_channel.values(),
                    *key_db.values(),
                }
            )
            if lead_ids:
                rows = db.execute(_SQL_LEADS, (json.dumps(lead_ids),)).fetchall()
                tps: dict[str, list[Touchpoint]] = {}
                for lead_id, channel, clid, occur, ref, rid, dealer in db.execute(
                    _SQL_TPS, (json.dumps([r[0] for r in rows]),)
                ):
                    tps.setdefault(lead_id, []).append(
                        Touchpoint(Channel(channel), _sqlite_time(occur), clid, rid, ref, dealer)  # type: ignore[arg-type]
                    )
                for row in rows:
                    found[row[0]] = _sqlite_lead(row, tuple(tps.get(row[0], ())))
            loads: dict[str, int] = {}
            if load_ids:
                if missing_load_rows:
                    db.executemany(_SQL_LOAD_ROWS, [(d, day_text) for d in missing_load_rows])
                ids = json.dumps(sorted(set(load_ids)))
                loads = dict(db.execute(_SQL_LOADS, (day_text, ids)).fetchall())
            return BatchFound(by_request, by_channel, key_db, found, loads)
        except BaseException:
            db.rollback()
            raise

    result: BatchFound = await _on_sqlite_thread(conn, run)
    return result


async def sqlite_batch_write(conn: AsyncConnection, w: BatchWrites) -> None:
    """Every write of a batch and the commit, in one call on the SQLite thread: new leads,
    changed leads written back whole, touchpoints, (contact, brand) keys pointed at their
    current lead, request ids remembered, dealer counts raised; rolled back whole on any
    error."""
    new_rows = [_sqlite_lead_values(lead) for lead in w.created]
    changed_rows = []
    for lead in w.changed:
        row = _sqlite_lead_values(lead)
        changed_rows.append([*row[1:], row[0]])
    now = _sqlite_value(w.now)
    tp_rows = [
        (
            lead_id,
            tp.channel.value,
            tp.channel_lead_id,
            _sqlite_value(tp.time),
            tp.payload_ref,
            tp.request_id,
            tp.dealer_id,
        )
        for lead_id, tp in w.touchpoints
    ]
    request_rows = [
        (r.scope, w.method, r.request_id, r.fingerprint, r.result, now)
        for r in w.requests
        if r.request_id
    ]
    key_updates = [(i, c, b) for c, b, i in w.key_updates]
    day_text = w.day.isoformat()
    load_rows = [(n, d, day_text) for d, n in sorted(w.added.items())]

    def run(db: Any) -> None:
        try:
            for sql, rows in (
                (_SQL_INSERT_LEAD, new_rows),
                (_SQL_UPDATE_LEAD, changed_rows),
                (_SQL_INSERT_TP, tp_rows),
                (_SQL_INSERT_KEY, w.key_inserts),
                (_SQL_UPDATE_KEY, key_updates),
                (_SQL_INSERT_REQUEST, request_rows),
                (_SQL_ADD_LOAD, load_rows),
            ):
                if rows:
                    db.executemany(sql, rows)
            db.commit()
        except BaseException:
            db.rollback()
            raise

    await _on_sqlite_thread(conn, run)


# -------------------------------------------------------------- the intake batch, PostgreSQL
#
# The same two steps on PostgreSQL, straight on the psycopg connection: every lookup in one
# pipeline (one round trip: the advisory locks, then the reads, in order, in one
# transaction; the leads and their touchpoints are found by subqueries on the keys, so they
# need no second trip), and every write as one statement per table reading all its rows
# from one JSON document (`json_populate_recordset`: parsed and converted by the server, in
# C, where psycopg would adapt each array element in Python), pipelined with the commit.
# `= ANY(array)` is an index search like the `IN` of the Core queries (and sequential
# scans are off).


def _pg_from_json(table: sa.Table) -> str:
    """The rows of a JSON array of objects as `table` rows (PostgreSQL parses and converts
    them in C: cheaper than adapting one Python array per column)."""
    return f"json_populate_recordset(NULL::{table.name}, CAST(%s AS json))"


def _pg_insert(table: sa.Table, columns: Sequence[str]) -> str:
    cols = ", ".join(columns)
    return f"INSERT INTO {table.name} ({cols}) SELECT {cols} FROM {_pg_from_json(table)}"


def _pg_json_default(value: Any) -> str:
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    raise TypeError(f"cannot send {type(value).__name__} as JSON")


def _pg_rows(rows: Sequence[dict[str, Any]]) -> str:
    """Rows as the JSON document `_pg_from_json` reads."""
    return json.dumps(rows, default=_pg_json_default)


_PG_KEY_IDS = (
    "SELECT result FROM request_ids WHERE scope = ANY(%(scopes)s) AND method = %(method)s "
    "AND request_id = ANY(%(rids)s) "
    "UNION SELECT lead_id FROM touchpoints WHERE channel_lead_id = ANY(%(clids)s) "
    "AND channel = ANY(%(chans)s) AND channel_lead_id <> '' "
    "UNION SELECT lead_id FROM lead_keys WHERE contact_key = ANY(%(contacts)s)"
)
_PG_LOCK = (
    "SELECT pg_advisory_xact_lock(k) FROM unnest(CAST(%s AS bigint[])) "
    "WITH ORDINALITY AS t(k, n) ORDER BY n"
)
_PG_REQUESTS = (
    "SELECT scope, request_id, result, fingerprint FROM request_ids "
    "WHERE scope = ANY(%s) AND method = %s AND request_id = ANY(%s)"
)
_PG_CHANNEL_IDS = (
    "SELECT channel, dealer_id, channel_lead_id, lead_id FROM touchpoints "
    "WHERE channel_lead_id = ANY(%s) AND channel = ANY(%s) AND channel_lead_id <> ''"
)
_PG_KEYS = "SELECT contact_key, brand_key, lead_id FROM lead_keys WHERE contact_key = ANY(%s)"
_PG_LEADS = (
    f"SELECT {', '.join(_LEAD_COLUMNS)} FROM leads WHERE id IN ({_PG_KEY_IDS}) "
    "ORDER BY id FOR UPDATE"
)
_PG_TPS = (
    f"SELECT {', '.join(_TP_COLUMNS)} FROM touchpoints WHERE lead_id IN ({_PG_KEY_IDS}) "
    "ORDER BY lead_id, id"
)
_PG_LOAD_ROWS = (
    "INSERT INTO dealer_load (dealer_id, day, assigned) "
    "SELECT d, %s, 0 FROM unnest(CAST(%s AS text[])) AS d ON CONFLICT DO NOTHING"
)
_PG_LOADS = (
    "SELECT dealer_id, assigned FROM dealer_load WHERE day = %s AND dealer_id = ANY(%s) "
    "ORDER BY dealer_id FOR UPDATE"
)
_PG_INSERT_LEADS = _pg_insert(leads, _LEAD_COLUMNS)
_PG_INSERT_TPS = _pg_insert(touchpoints, _TP_COLUMNS)
_PG_INSERT_KEYS = _pg_insert(lead_keys, ("contact_key", "brand_key", "lead_id"))
_PG_INSERT_REQUESTS = _pg_insert(
    request_ids, ("scope", "method", "request_id", "fingerprint", "result", "create_time")
)
_PG_UPDATE_LEADS = (
    f"UPDATE leads SET {', '.join(f'{c} = v.{c}' for c in _LEAD_COLUMNS[1:])} "
    f"FROM {_pg_from_json(leads)} AS v WHERE leads.id = v.id"
)
_PG_UPDATE_KEYS = (
    f"UPDATE lead_keys SET lead_id = v.lead_id FROM {_pg_from_json(lead_keys)} AS v "
    "WHERE lead_keys.contact_key = v.contact_key AND lead_keys.brand_key = v.brand_key"
)
_PG_ADD_LOADS = (
    "UPDATE dealer_load SET assigned = dealer_load.assigned + v.assigned "
    f"FROM {_pg_from_json(dealer_load)} AS v "
    "WHERE dealer_load.dealer_id = v.dealer_id AND dealer_load.day = v.day"
)


# A batch's writes as one statement: each data-modifying CTE reads its rows from one JSON
# parameter ("[]" when there are none) and all of them run, whatever the final SELECT
# reads. One statement instead of seven: psycopg's per-statement work is a good part of
# a batch's CPU. The CTEs never touch the same row twice (a batch's new and changed leads,
# and its new and moved keys, are disjoint by construction in LeadEngine._write_batch_on).
_PG_WRITE_BATCH = (
    "WITH "
    + ", ".join(
        f"w{n} AS ({sql})"
        for n, sql in enumerate(
            (
                _PG_INSERT_LEADS,
                _PG_UPDATE_LEADS,
                _PG_INSERT_TPS,
                _PG_INSERT_KEYS,
                _PG_UPDATE_KEYS,
                _PG_INSERT_REQUESTS,
                _PG_ADD_LOADS,
            )
        )
    )
    + " SELECT 1"
)


def _pg_lead(row: Sequence[Any], tps: tuple[Touchpoint, ...]) -> Lead:
    values = dict(zip(_LEAD_COLUMNS, row, strict=True))
    for c in _LEAD_TIMES:
        if values[c] is not None:
            values[c] = values[c].astimezone(dt.UTC)
    return _lead(SimpleNamespace(**values), tps)


async def postgres_batch_lookup(
    conn: AsyncConnection,
    *,
    lock_keys: Iterable[str],
    method: str,
    request_keys: Sequence[RequestKey],
    channel_keys: Sequence[ChannelKey],
    keys: Sequence[tuple[str, str]],
    day: dt.date,
    load_ids: Sequence[str],
    missing_load_rows: Sequence[str],
) -> BatchFound:
    """The batch's advisory locks (mesh.unit_of_work.lock_hash of each key, in sorted
    order) and every lookup of a batch, in one pipeline (see above); the
    leads and dealer counts stay row-locked until `postgres_batch_write` commits."""
    raw = await conn.get_raw_connection()
    pg: Any = raw.driver_connection
    wanted_requests = {k for k in request_keys if k[1]}
    wanted_channel = {k for k in channel_keys if k[2]}
    wanted_keys = set(keys)
    params = {
        "method": method,
        "rids": sorted({k[1] for k in wanted_requests}),
        "scopes": sorted({k[0] for k in wanted_requests}),
        "clids": sorted({k[2] for k in wanted_channel}),
        "chans": sorted({k[0] for k in wanted_channel}),
        "contacts": sorted({k[0] for k in wanted_keys}),
    }
    hashes = sorted({lock_hash(k) for k in lock_keys})
    loads_ids = sorted(set(load_ids))
    try:
        async with pg.pipeline():
            # Every query here is meant to be an index lookup. While a table grows from
            # empty (a first bulk import) its statistics lag and the planner may pick a
            # sequential scan with a linear `= ANY(...)` filter, quadratic over an import
            # (measured: 0.75 s per 500-row batch at 100k rows): not in this transaction.
            await pg.execute("SET LOCAL enable_seqscan = off")
            if hashes:
                await pg.execute(_PG_LOCK, (hashes,))
            c_req = await pg.execute(_PG_REQUESTS, (params["scopes"], method, params["rids"]))
            c_chan = await pg.execute(_PG_CHANNEL_IDS, (params["clids"], params["chans"]))
            c_keys = await pg.execute(_PG_KEYS, (params["contacts"],))
            c_leads = await pg.execute(_PG_LEADS, params)
            c_tps = await pg.execute(_PG_TPS, params)
            if loads_ids and missing_load_rows:
                await pg.execute(_PG_LOAD_ROWS, (day, list(missing_load_rows)))
            c_loads = await pg.execute(_PG_LOADS, (day, loads_ids)) if loads_ids else None
        by_request = {
            (scope, rid): Prior(result, fp)
            for scope, rid, result, fp in await c_req.fetchall()
            if (scope, rid) in wanted_requests
        }
        by_channel = {
            (ch, dealer, clid): lead_id
            for ch, dealer, clid, lead_id in await c_chan.fetchall()
            if (ch, dealer, clid) in wanted_channel
        }
        key_db = {
            (c, b): lead_id for c, b, lead_id in await c_keys.fetchall() if (c, b) in wanted_keys
        }
        tps: dict[str, list[Touchpoint]] = {}
        for lead_id, channel, clid, occur, ref, rid, dealer in await c_tps.fetchall():
            tps.setdefault(lead_id, []).append(
                Touchpoint(Channel(channel), occur.astimezone(dt.UTC), clid, rid, ref, dealer)
            )
        found = {
            row[0]: _pg_lead(row, tuple(tps.get(row[0], ()))) for row in await c_leads.fetchall()
        }
        loads = dict(await c_loads.fetchall()) if c_loads is not None else {}
    except BaseException:
        await pg.rollback()
        raise
    return BatchFound(by_request, by_channel, key_db, found, loads)


async def postgres_batch_write(conn: AsyncConnection, w: BatchWrites) -> None:
    """Every write of a batch in ONE statement (`_PG_WRITE_BATCH`) pipelined with the
    commit; rolled back whole on any error."""
    raw = await conn.get_raw_connection()
    pg: Any = raw.driver_connection
    tps = [touchpoint_row(i, t) for i, t in w.touchpoints]
    key_inserts = [{"contact_key": c, "brand_key": b, "lead_id": i} for c, b, i in w.key_inserts]
    key_updates = [{"contact_key": c, "brand_key": b, "lead_id": i} for c, b, i in w.key_updates]
    requests = [_request_row(w.method, r, w.now) for r in w.requests if r.request_id]
    loads = [{"dealer_id": d, "day": w.day, "assigned": n} for d, n in sorted(w.added.items())]
    params = tuple(
        _pg_rows(rows) if rows else "[]"
        for rows in (
            [lead_row(x) for x in w.created],
            [lead_row(x) for x in w.changed],
            tps,
            key_inserts,
            key_updates,
            requests,
            loads,
        )
    )
    try:
        async with pg.pipeline():
            await pg.execute(_PG_WRITE_BATCH, params)
            await pg.commit()
    except BaseException:
        await pg.rollback()
        raise

"""The lead service's Core reads and writes outside the intake batch: leads by id, pages
of leads and dealers, the dealer registry, whole-lead updates, bulk inserts."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from services.lead.domain.listing import LeadFilter
from services.lead.domain.model import (
    Dealer,
    Lead,
    Touchpoint,
)
from services.lead.store.rows import (
    dealer_from_row,
    dealer_row,
    lead_from_row,
    lead_row,
    touchpoint_from_row,
)
from services.lead.store.tables import dealers, leads, touchpoints

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
    return {r.id: lead_from_row(r, tps.get(r.id, ())) for r in rows}


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
        out.setdefault(r.lead_id, []).append(touchpoint_from_row(r))
    return {k: tuple(v) for k, v in out.items()}


async def get_lead(conn: AsyncConnection, lead_id: str) -> Lead | None:
    """One lead with its touchpoints, or None."""
    return (await leads_by_ids(conn, [lead_id])).get(lead_id)


async def all_dealers(conn: AsyncConnection) -> list[Dealer]:
    """The whole registry, by id (routing needs every candidate; it is small)."""
    rows = await conn.execute(sa.select(dealers).order_by(dealers.c.id))
    return [dealer_from_row(r) for r in rows]


async def get_dealer(conn: AsyncConnection, dealer_id: str) -> Dealer | None:
    """One dealer, or None (pk_dealers)."""
    row = (await conn.execute(sa.select(dealers).where(dealers.c.id == dealer_id))).first()
    return dealer_from_row(row) if row else None


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
    return [dealer_from_row(r) for r in await conn.execute(query)]


def list_leads_query(
    flt: LeadFilter, *, after: tuple[dt.datetime, str] | None, limit: int
) -> sa.Select[Any]:
    """The SELECT of one ListLeads page (see `list_leads`; tests EXPLAIN it).

    Every filter is an equality followed by (create_time, id), so one index serves the
    page as a backwards range (tables.py names them):

    - a dealer (or the pool) with a status, a channel or a grade:
      ix_leads_dealer_id_{status,channel,grade}_create_time_id; with none of them,
      ix_leads_dealer_id_create_time_id;
    - no dealer: ix_leads_{status,channel,grade}_create_time_id, else
      ix_leads_create_time_id.

    With two of status, grade and channel, the planner takes one of their indexes and checks
    the other on its rows. The time range and the page key bound the same range. Overdue
    (open leads past their due time) is served by ix_leads_follow_up_due_time when no
    dealer is named: it reads only overdue leads, sorted.
    """
    query = sa.select(leads)
    if flt.dealer_id is not None:
        query = query.where(leads.c.dealer_id == flt.dealer_id)
    elif flt.unassigned_only:
        query = query.where(leads.c.dealer_id == "")
    if flt.status:
        query = query.where(leads.c.status == flt.status)
    if flt.grade:
        query = query.where(leads.c.grade == flt.grade)
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
        # `create_time <= t` first: a plain bound every index's range can start from;
        # the OR only refines the page's first instant.
        query = query.where(
            leads.c.create_time <= t,
            sa.or_(leads.c.create_time < t, leads.c.id < lead_id),
        )
    return query.order_by(leads.c.create_time.desc(), leads.c.id.desc()).limit(limit)


async def list_leads(
    conn: AsyncConnection,
    flt: LeadFilter,
    *,
    after: tuple[dt.datetime, str] | None,
    limit: int,
) -> list[Lead]:
    """A page of leads, newest first: (create_time desc, id desc), after the key `after`,
    each with its touchpoints; the indexes serving it are in `list_leads_query`."""
    if flt.nothing:
        return []
    rows = (await conn.execute(list_leads_query(flt, after=after, limit=limit))).all()
    tps = await touchpoints_of(conn, [r.id for r in rows])
    return [lead_from_row(r, tps.get(r.id, ())) for r in rows]


# The tables a bulk load grows, analysed after one on PostgreSQL (see imports.py).
BULK_TABLES = ("leads", "touchpoints", "lead_keys")


async def planned_leads(conn: AsyncConnection) -> float:
    """How many leads the PostgreSQL planner thinks there are (pg_class.reltuples, as of
    the last ANALYZE or VACUUM; 0 when never analysed)."""
    sql = sa.text("SELECT reltuples FROM pg_class WHERE oid = to_regclass('leads')")
    return max(0.0, float((await conn.execute(sql)).scalar() or 0))


async def analyze_bulk_tables(conn: AsyncConnection) -> None:
    """ANALYZE the tables a bulk load grows (PostgreSQL): the planner's sizes and
    distributions, so their queries keep their index plans."""
    await conn.execute(sa.text(f"ANALYZE {', '.join(BULK_TABLES)}"))


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


async def insert_dealer(conn: AsyncConnection, dealer: Dealer, actor: str) -> bool:
    """Insert a dealer; False if the id is taken."""
    stmt = (
        _insert(conn)(dealers)
        .values(**dealer_row(dealer, actor))
        .on_conflict_do_nothing()
        .returning(dealers.c.id)
    )
    return (await conn.execute(stmt)).first() is not None

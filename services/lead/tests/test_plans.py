"""The plans of the lead service's hot queries, checked with EXPLAIN (issue 17).

Each ListLeads filter the product offers must be served by an index in the page's keyset
order, at any size: the query is the store's own (`queries.list_leads` run for real; its
SQL and parameters are caught on the way to the driver and EXPLAINed as they were sent).

- SQLite: `EXPLAIN QUERY PLAN`, no statistics (the service never runs ANALYZE there): the
  expected index, a search on its leading column(s), and no sort of the rows.
- PostgreSQL: a quarter of a million leads (with touchpoints and keys) made by
  `INSERT ... SELECT generate_series` and analysed, as the service does after an import;
  `EXPLAIN (FORMAT JSON)` of a ListLeads with no match, one by channel, one of a dealer,
  and of the intake batch's lookups (store/batch_postgres.py), none with a Seq Scan or a
  merge over a whole index. Real sizes, not faked statistics: the planner scales
  `reltuples` by the table's actual pages, so a faked count on a small table plans as a
  small table.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from marque.lead.v1 import lead_service_pb2
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncConnection

from mesh.db import Database
from services.lead.domain.listing import LeadFilter
from services.lead.imports import ANALYZE_BASE, ANALYZE_ROWS, Analyzer
from services.lead.store import batch_postgres, queries
from services.lead.store.tables import MIGRATIONS
from tests.conftest import _postgres_schema_url

NOW = dt.datetime(2026, 12, 4, 12, tzinfo=dt.UTC)
AFTER = (NOW - dt.timedelta(days=3), "L00000000000000000000000000000")

# (filter, the indexes that may serve it: the first is what a single filter must use).
CASES: list[tuple[str, LeadFilter, tuple[str, ...]]] = [
    ("all", LeadFilter(), ("ix_leads_create_time_id",)),
    ("status", LeadFilter(status="WON"), ("ix_leads_status_create_time_id",)),
    ("channel", LeadFilter(channel="DEALER_WALK_IN"), ("ix_leads_channel_create_time_id",)),
    ("grade", LeadFilter(grade="H"), ("ix_leads_grade_create_time_id",)),
    (
        "time range",
        LeadFilter(create_start=NOW - dt.timedelta(days=7), create_end=NOW),
        ("ix_leads_create_time_id",),
    ),
    (
        "status, time range",
        LeadFilter(status="LOST", create_start=NOW - dt.timedelta(days=7)),
        ("ix_leads_status_create_time_id",),
    ),
    ("dealer", LeadFilter(dealer_id="D1"), ("ix_leads_dealer_id_create_time_id",)),
    ("pool", LeadFilter(unassigned_only=True), ("ix_leads_dealer_id_create_time_id",)),
    (
        "dealer, status",
        LeadFilter(dealer_id="D1", status="WON"),
        ("ix_leads_dealer_id_status_create_time_id",),
    ),
    (
        "pool, status",
        LeadFilter(unassigned_only=True, status="NEW"),
        ("ix_leads_dealer_id_status_create_time_id",),
    ),
    (
        "dealer, grade",
        LeadFilter(dealer_id="D1", grade="H"),
        ("ix_leads_dealer_id_grade_create_time_id",),
    ),
    (
        "dealer, channel",
        LeadFilter(dealer_id="D1", channel="DEALER_WALK_IN"),
        ("ix_leads_dealer_id_channel_create_time_id",),
    ),
    # Overdue: only overdue leads are read (by due time, or the dealer's), then sorted.
    ("overdue", LeadFilter(overdue_at=NOW), ()),
    ("dealer, overdue", LeadFilter(dealer_id="D1", overdue_at=NOW), ()),
    (
        "status, channel",
        LeadFilter(status="WON", channel="AUTOHOME"),
        ("ix_leads_status_create_time_id", "ix_leads_channel_create_time_id"),
    ),
    (
        "dealer, status, grade",
        LeadFilter(dealer_id="D1", status="NEW", grade="H"),
        ("ix_leads_dealer_id_status_create_time_id", "ix_leads_dealer_id_grade_create_time_id"),
    ),
]


@contextmanager
def caught_statements(conn: AsyncConnection) -> Iterator[list[tuple[str, Any]]]:
    """Every statement `conn` sends, with its parameters as the driver got them."""
    sent: list[tuple[str, Any]] = []

    def catch(_c: Any, _cur: Any, statement: str, params: Any, _ctx: Any, _many: bool) -> None:
        sent.append((statement, params))

    sync = conn.sync_connection
    assert sync is not None
    event.listen(sync, "before_cursor_execute", catch)
    try:
        yield sent
    finally:
        event.remove(sync, "before_cursor_execute", catch)


async def list_leads_sql(
    conn: AsyncConnection, flt: LeadFilter, after: tuple[dt.datetime, str] | None
) -> tuple[str, Any]:
    """The page query `queries.list_leads` sends for `flt`, and its parameters."""
    with caught_statements(conn) as sent:
        await queries.list_leads(conn, flt, after=after, limit=51)
    return sent[0]


# ---------------------------------------------------------------------------- SQLite


@pytest.fixture
async def sqlite_conn(tmp_path: Any) -> AsyncIterator[AsyncConnection]:
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'plans.db'}")
    await db.migrate(MIGRATIONS)
    async with db.engine.connect() as conn:
        yield conn
    await db.dispose()


@pytest.mark.parametrize("after", [None, AFTER], ids=["first page", "next page"])
@pytest.mark.parametrize(("name", "flt", "served_by"), CASES, ids=[c[0] for c in CASES])
async def test_sqlite_list_leads_is_an_index_range(
    sqlite_conn: AsyncConnection,
    name: str,
    flt: LeadFilter,
    served_by: tuple[str, ...],
    after: tuple[dt.datetime, str] | None,
) -> None:
    sql, params = await list_leads_sql(sqlite_conn, flt, after)
    explained = await sqlite_conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}", params)
    plan = [str(row._mapping["detail"]) for row in explained]
    leads_steps = [step for step in plan if " leads " in f" {step} "]
    assert len(leads_steps) == 1, plan
    step = leads_steps[0]
    assert "USING INDEX" in step or "USING COVERING INDEX" in step, plan
    if not served_by:  # overdue
        assert step.startswith("SEARCH leads"), plan
        return
    index = step.split(" INDEX ")[1].split()[0]
    assert index in served_by, plan
    assert not any("TEMP B-TREE" in s for s in plan), plan  # the index gives the order
    if index != "ix_leads_create_time_id":
        # The filter's equalities lead the index: a search, never a scan of all of it.
        assert step.startswith("SEARCH leads"), plan


# ---------------------------------------------------------------------------- PostgreSQL

ROWS = 250_000
DEALERS = 50

# Leads as the service writes them: most new or contacted, none WON; channels other than
# walk-ins; one dealer in ten rows of the pool (""); one every ten seconds (a month), newest first.
_PG_FILL = f"""
INSERT INTO leads (
    id, status, grade, score, rating_reasons, name, mobile_e164, email, city, province,
    brand, series, model, trim, model_year, time_frame, test_drive_requested, channel,
    channel_lead_id, consent_contact, consent_marketing, consent_share, preferred_dealer_id,
    dealer_id, routing_reason, follow_up_due_time, lost_reason, touch_count,
    last_touch_time, create_time, create_actor, update_time, update_actor, version,
    contact_digest, member_id)
SELECT
    'L' || lpad(g::text, 12, '0'),
    (ARRAY['NEW','NEW','NEW','CONTACTED','CONTACTED','TEST_DRIVE_BOOKED','LOST'])[1 + mod(g, 7)],
    (ARRAY['H','A','A','B','B','C','N'])[1 + mod(g / 7, 7)],
    50 + mod(g, 50), '[]', 'Wang Wei', '+86139' || lpad(g::text, 8, '0'), NULL,
    'Shanghai', 'Shanghai', 'Marque', 'M5', 'M5 Long Range', '', 2026, 'WITHIN_30_DAYS',
    mod(g, 3) = 0,
    (ARRAY['BRAND_SITE','AUTOHOME','YICHE','TENCENT_ADS','CALL_CENTER'])[1 + mod(g / 49, 5)],
    'ch-' || g, true, false, true, NULL,
    CASE WHEN mod(g, 10) = 0 THEN '' ELSE 'D' || mod(g / 11, {DEALERS}) END, 'nearest',
    t + interval '1 day', '', 1, t, t, 'bench', t, 'bench', 1, NULL, ''
FROM generate_series(1, {ROWS}) AS g,
     LATERAL (SELECT timestamptz '2026-12-04 12:00+00' - g * interval '10 seconds' AS t) AS ts
"""
_PG_FILL_TPS = f"""
INSERT INTO touchpoints (lead_id, channel, channel_lead_id, occur_time, payload_ref,
                         request_id, dealer_id)
SELECT 'L' || lpad(g::text, 12, '0'), 'AUTOHOME', 'ch-' || g, now(), 'sha256:x', '', ''
FROM generate_series(1, {ROWS}) AS g
"""
_PG_FILL_KEYS = f"""
INSERT INTO lead_keys (contact_key, brand_key, lead_id)
SELECT '+86139' || lpad(g::text, 8, '0'), 'marque', 'L' || lpad(g::text, 12, '0')
FROM generate_series(1, {ROWS}) AS g
"""
# One caller's request ids (a busy integration's history), left unanalysed: what the
# planner sees after a burst of SubmitLeads that autovacuum has not caught up with.
REQUEST_ROWS = 20_000
_PG_FILL_REQUESTS = f"""
INSERT INTO request_ids (scope, method, request_id, fingerprint, result, create_time)
SELECT 'service:bench', 'SubmitLead', 'r-' || g, md5(g::text), 'L' || lpad(g::text, 12, '0'),
       now()
FROM generate_series(1, {REQUEST_ROWS}) AS g
"""


def _nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", ()):
        yield from _nodes(child)


async def pg_plan(conn: AsyncConnection, sql: str, params: Any) -> list[dict[str, Any]]:
    """The nodes of `sql`'s plan, depth first."""
    row = (await conn.exec_driver_sql(f"EXPLAIN (FORMAT JSON) {sql}", params)).scalar_one()
    return list(_nodes(row[0]["Plan"]))


def assert_indexed(nodes: list[dict[str, Any]], *indexes: str) -> None:
    """Each of `indexes` is read by an index (only) scan, and nothing is read whole."""
    kinds = [n["Node Type"] for n in nodes]
    used = {n.get("Index Name") for n in nodes if "Index" in n["Node Type"]}
    assert "Seq Scan" not in kinds, nodes
    assert "Merge Join" not in kinds, nodes
    for index in indexes:
        assert index in used, nodes


async def _load(url: str) -> None:
    db = Database(url)
    await db.migrate(MIGRATIONS)
    async with db.engine.begin() as conn:
        for sql in (_PG_FILL, _PG_FILL_TPS, _PG_FILL_KEYS, _PG_FILL_REQUESTS):
            await conn.exec_driver_sql(sql)
    async with db.engine.begin() as conn:
        await conn.exec_driver_sql("ANALYZE leads, touchpoints, lead_keys")
    await db.dispose()


@pytest.fixture(scope="module")
def pg_loaded() -> Iterator[str]:
    """A quarter of a million leads in a schema of their own, analysed (as after an
    ImportLeads); loaded once for the module (a few seconds)."""
    base = os.environ.get("MARQUE_TEST_POSTGRES_URL")
    if not base:
        pytest.skip("MARQUE_TEST_POSTGRES_URL is not set")
    for url in _postgres_schema_url(base):
        asyncio.run(_load(url))
        yield url


@pytest.fixture
async def pg_conn(pg_loaded: str) -> AsyncIterator[AsyncConnection]:
    db = Database(pg_loaded)
    async with db.engine.connect() as conn:
        yield conn
    await db.dispose()


# (filter, the index that must serve it). A value the statistics call common (a fifth of
# the rows) may instead be found by walking the time index back and checking the rows: the
# planner's choice, reading about limit / share rows; one that matches nothing never is.
TIME = "ix_leads_create_time_id"
PG_LISTS = [
    ("status, no match", LeadFilter(status="WON"), ("ix_leads_status_create_time_id",)),
    (
        "channel, no match",
        LeadFilter(channel="DEALER_WALK_IN"),
        ("ix_leads_channel_create_time_id",),
    ),
    ("channel", LeadFilter(channel="AUTOHOME"), ("ix_leads_channel_create_time_id", TIME)),
    ("grade", LeadFilter(grade="H"), ("ix_leads_grade_create_time_id", TIME)),
    (
        "dealer, status",
        LeadFilter(dealer_id="D7", status="LOST"),
        ("ix_leads_dealer_id_status_create_time_id",),
    ),
    (
        "dealer, grade",
        LeadFilter(dealer_id="D7", grade="C"),
        ("ix_leads_dealer_id_grade_create_time_id",),
    ),
    (
        "dealer, channel",
        LeadFilter(dealer_id="D7", channel="YICHE"),
        ("ix_leads_dealer_id_channel_create_time_id",),
    ),
    (
        "dealer, status, no match",
        LeadFilter(dealer_id="D7", status="WON"),
        # Either range is empty.
        ("ix_leads_dealer_id_status_create_time_id", "ix_leads_status_create_time_id"),
    ),
    (
        "dealer, channel, no match",
        LeadFilter(dealer_id="D7", channel="DEALER_WALK_IN"),
        # Either range is empty: no walk-ins at all.
        ("ix_leads_dealer_id_channel_create_time_id", "ix_leads_channel_create_time_id"),
    ),
    (
        "pool, grade",
        LeadFilter(unassigned_only=True, grade="N"),
        ("ix_leads_dealer_id_grade_create_time_id", "ix_leads_dealer_id_create_time_id"),
    ),
]


@pytest.mark.postgres
@pytest.mark.parametrize("after", [None, AFTER], ids=["first page", "next page"])
@pytest.mark.parametrize(("name", "flt", "served_by"), PG_LISTS, ids=[c[0] for c in PG_LISTS])
async def test_postgres_list_leads_uses_its_index(
    pg_conn: AsyncConnection,
    name: str,
    flt: LeadFilter,
    served_by: tuple[str, ...],
    after: tuple[dt.datetime, str] | None,
) -> None:
    sql, params = await list_leads_sql(pg_conn, flt, after)
    nodes = await pg_plan(pg_conn, sql, params)
    assert_indexed(nodes)
    scans = [n for n in nodes if n["Node Type"] in ("Index Scan", "Index Only Scan")]
    assert [n["Index Name"] for n in scans][:1] in [[i] for i in served_by], nodes
    assert scans[0]["Scan Direction"] == "Backward", nodes  # the index gives the order
    assert "Sort" not in [n["Node Type"] for n in nodes], nodes


@pytest.mark.postgres
async def test_postgres_touchpoints_by_lead(pg_conn: AsyncConnection) -> None:
    assert len(await queries.leads_by_ids(pg_conn, ["L000000000007"])) == 1
    with caught_statements(pg_conn) as sent:
        await queries.touchpoints_of(pg_conn, ["L000000000007", "L000000000123"])
    assert_indexed(await pg_plan(pg_conn, *sent[0]), "ix_touchpoints_lead_id_id")


def batch_params(
    chans: list[str], extra_contacts: tuple[str, ...] | list[str] = ()
) -> dict[str, Any]:
    """The named parameters of the intake batch's lookups (batch_postgres._pg_lookup_params)
    for a batch of 32 spread over the loaded rows."""
    n = range(1000, 1000 + 32 * 97, 97)
    return {
        "method": "SubmitLead",
        "req_scopes": ["service:bench"] * len(n),
        "req_ids": [f"r-{i}" for i in n],
        "clids": [f"ch-{i}" for i in n],
        "chans": chans,
        "contacts": [f"+86139{i:08d}" for i in n] + list(extra_contacts),
    }


@pytest.mark.postgres
async def test_postgres_batch_lookups(pg_conn: AsyncConnection) -> None:
    """The intake batch's reads (store/batch_postgres.py) with a batch's worth of keys,
    without the `enable_seqscan = off` the batch sets for tables still growing."""
    params = batch_params(["AUTOHOME", "YICHE"], extra_contacts=["+8613900000000"])
    assert_indexed(
        await pg_plan(pg_conn, batch_postgres._PG_TPS, params),
        "ix_touchpoints_lead_id_id",
        "uq_touchpoints_channel_lead",
        "pk_lead_keys",
    )
    assert_indexed(await pg_plan(pg_conn, batch_postgres._PG_LEADS, params), "pk_leads")
    assert_indexed(
        await pg_plan(pg_conn, batch_postgres._PG_KEYS, (params["contacts"],)), "pk_lead_keys"
    )
    assert_indexed(
        await pg_plan(pg_conn, batch_postgres._PG_CHANNEL_IDS, (params["clids"], params["chans"])),
        "uq_touchpoints_channel_lead",
    )


@pytest.mark.postgres
async def test_postgres_request_ids_are_searched_by_id(pg_conn: AsyncConnection) -> None:
    """Every request id of a batch is an index condition on request_ids' primary key, in
    the request lookup and in the subqueries finding the leads and their touchpoints, on a
    table the planner has no statistics of; never a filter over the caller's history."""
    params = batch_params(["AUTOHOME"])
    for sql in (batch_postgres._PG_REQUESTS, batch_postgres._PG_LEADS, batch_postgres._PG_TPS):
        nodes = await pg_plan(pg_conn, sql, params)
        scans = [n for n in nodes if n.get("Relation Name") == "request_ids"]
        assert scans, nodes
        for scan in scans:
            assert scan.get("Index Name") == "pk_request_ids", scan
            assert "request_id" in scan.get("Index Cond", ""), scan
            assert "request_id" not in scan.get("Filter", ""), scan
    found = await pg_conn.exec_driver_sql(batch_postgres._PG_REQUESTS, params)
    assert sorted(row.request_id for row in found) == sorted(params["req_ids"])


# ---------------------------------------------------------------------------- ANALYZE


async def test_analyzer_runs_once_the_table_is_stale() -> None:
    """Per chunk: ANALYZE in the background when the table about doubled; at the end of a
    stream when it wrote ANALYZE_ROWS or a tenth of the table; never twice at once."""
    runs: list[int] = []
    release = asyncio.Event()

    async def analyze() -> float:
        runs.append(1)
        await release.wait()
        return 100_000.0

    analyzer = Analyzer(analyze)
    analyzer.wrote(ANALYZE_ROWS - 1)
    assert not runs
    analyzer.wrote(1)
    analyzer.wrote(500)  # while the first runs: counted, not a second ANALYZE
    await asyncio.sleep(0)
    assert runs == [1]
    release.set()
    await analyzer.finish()  # 500 rows since: not stale for 100k leads
    assert (len(runs), analyzer.planned, analyzer.written) == (1, 100_000.0, 500)
    analyzer.wrote(9_600)  # 10.1k since: ANALYZE_ROWS
    await analyzer.finish()
    assert (len(runs), analyzer.runs, analyzer.written) == (2, 2, 0)


@pytest.mark.postgres
async def test_postgres_import_analyzes(database_url: str) -> None:
    """After an ImportLeads into an empty database the planner counts its leads."""
    if database_url.startswith("sqlite"):
        pytest.skip("PostgreSQL only")
    from services.lead.tests.harness import SERVICE, lead_input, md, serve

    async def rows() -> AsyncIterator[lead_service_pb2.ImportLeadsRequest]:
        for n in range(ANALYZE_BASE + 30):
            yield lead_service_pb2.ImportLeadsRequest(lead=lead_input(f"1390000{n:04d}"))

    async with serve(database_url) as lead:
        async with lead.db.engine.connect() as conn:
            assert await queries.planned_leads(conn) == 0
        summary = await lead.stub.ImportLeads(rows(), metadata=md(SERVICE))
        assert summary.created == ANALYZE_BASE + 30
        async with lead.db.engine.connect() as conn:
            assert await queries.planned_leads(conn) == ANALYZE_BASE + 30
            analysed = await conn.exec_driver_sql(
                "SELECT count(*) FROM pg_stat_user_tables WHERE last_analyze IS NOT NULL "
                "AND relname IN ('leads', 'touchpoints', 'lead_keys') "
                "AND schemaname = current_schema()"
            )
            assert analysed.scalar_one() == 3

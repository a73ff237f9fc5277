"""The intake batch on PostgreSQL: every lookup in one pipeline, every write in one
statement pipelined with the commit (see the comment below)."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Sequence
from types import SimpleNamespace
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from mesh.unit_of_work import lock_hash
from services.lead.domain.model import (
    Channel,
    Lead,
    Touchpoint,
)
from services.lead.store.batch import (
    LEAD_COLUMNS,
    LEAD_TIMES,
    TP_COLUMNS,
    BatchFound,
    BatchWrites,
    ChannelKey,
    RequestKey,
    request_row,
)
from services.lead.store.batch_keys import (
    Wanted,
    channel_leads_found,
    key_leads_found,
    priors_found,
)
from services.lead.store.rows import lead_from_row, lead_row, touchpoint_row
from services.lead.store.tables import (
    OUTBOX,
    dealer_load,
    lead_keys,
    leads,
    request_ids,
    touchpoints,
)

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


# A batch's request ids, each searched on the primary key as (scope, method, request id):
# a LATERAL search per pair. `scope = ANY(..) AND request_id = ANY(..)` left the plan to
# the statistics: on a table not yet analysed (a caller's burst, autovacuum behind) the
# planner searched (scope, method) only and filtered request_id row by row, reading the
# caller's whole history (4.4 ms for 32 ids at 15,000 rows, three times a batch).
_PG_REQUEST_PAIRS = (
    "unnest(CAST(%(req_scopes)s AS text[]), CAST(%(req_ids)s AS text[])) AS k(scope, rid) "
    "CROSS JOIN LATERAL (SELECT scope, request_id, result, fingerprint FROM request_ids "
    "WHERE scope = k.scope AND method = %(method)s AND request_id = k.rid LIMIT 1) AS r"
)
_PG_KEY_IDS = (
    f"SELECT r.result FROM {_PG_REQUEST_PAIRS} "
    "UNION SELECT lead_id FROM touchpoints WHERE channel_lead_id = ANY(%(clids)s) "
    "AND channel = ANY(%(chans)s) AND channel_lead_id <> '' "
    "UNION SELECT lead_id FROM lead_keys WHERE contact_key = ANY(%(contacts)s)"
)
_PG_LOCK = (
    "SELECT pg_advisory_xact_lock(k) FROM unnest(CAST(%s AS bigint[])) "
    "WITH ORDINALITY AS t(k, n) ORDER BY n"
)
_PG_REQUESTS = f"SELECT r.scope, r.request_id, r.result, r.fingerprint FROM {_PG_REQUEST_PAIRS}"
_PG_CHANNEL_IDS = (
    "SELECT channel, dealer_id, channel_lead_id, lead_id FROM touchpoints "
    "WHERE channel_lead_id = ANY(%s) AND channel = ANY(%s) AND channel_lead_id <> ''"
)
_PG_KEYS = "SELECT contact_key, brand_key, lead_id FROM lead_keys WHERE contact_key = ANY(%s)"
_PG_LEADS = (
    f"SELECT {', '.join(LEAD_COLUMNS)} FROM leads WHERE id IN ({_PG_KEY_IDS}) "
    "ORDER BY id FOR UPDATE"
)
_PG_TPS = (
    f"SELECT {', '.join(TP_COLUMNS)} FROM touchpoints WHERE lead_id IN ({_PG_KEY_IDS}) "
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
_PG_INSERT_LEADS = _pg_insert(leads, LEAD_COLUMNS)
_PG_INSERT_TPS = _pg_insert(touchpoints, TP_COLUMNS)
_PG_INSERT_KEYS = _pg_insert(lead_keys, ("contact_key", "brand_key", "lead_id"))
_PG_INSERT_REQUESTS = _pg_insert(
    request_ids, ("scope", "method", "request_id", "fingerprint", "result", "create_time")
)
_PG_UPDATE_LEADS = (
    f"UPDATE leads SET {', '.join(f'{c} = v.{c}' for c in LEAD_COLUMNS[1:])} "
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
    values = dict(zip(LEAD_COLUMNS, row, strict=True))
    for c in LEAD_TIMES:
        if values[c] is not None:
            values[c] = values[c].astimezone(dt.UTC)
    return lead_from_row(SimpleNamespace(**values), tps)


def _pg_lookup_params(method: str, wanted: Wanted) -> dict[str, Any]:
    """The arrays every lookup searches with, sorted so equal batches send equal
    parameters; `_PG_LEADS` and `_PG_TPS` take them all by name."""
    requests = sorted(wanted.requests)
    return {
        "method": method,
        "req_scopes": [scope for scope, _ in requests],
        "req_ids": [rid for _, rid in requests],
        "clids": sorted({k[2] for k in wanted.channel}),
        "chans": sorted({k[0] for k in wanted.channel}),
        "contacts": sorted({k[0] for k in wanted.keys}),
    }


async def _pg_send_lookups(
    pg: Any,
    params: dict[str, Any],
    *,
    hashes: list[int],
    day: dt.date,
    loads_ids: list[str],
    missing_load_rows: Sequence[str],
) -> tuple[Any, ...]:
    """Lock, then every read, in one pipeline (one round trip); the cursors of the reads
    (requests, channel ids, keys, leads, touchpoints, loads or None), to fetch after."""
    async with pg.pipeline():
        # Every query here is meant to be an index lookup. While a table grows from
        # empty (a first bulk import) its statistics lag and the planner may pick a
        # sequential scan with a linear `= ANY(...)` filter, quadratic over an import
        # (measured: 0.75 s per 500-row batch at 100k rows): not in this transaction.
        await pg.execute("SET LOCAL enable_seqscan = off")
        if hashes:
            await pg.execute(_PG_LOCK, (hashes,))
        c_req = await pg.execute(_PG_REQUESTS, params)
        c_chan = await pg.execute(_PG_CHANNEL_IDS, (params["clids"], params["chans"]))
        c_keys = await pg.execute(_PG_KEYS, (params["contacts"],))
        c_leads = await pg.execute(_PG_LEADS, params)
        c_tps = await pg.execute(_PG_TPS, params)
        if loads_ids and missing_load_rows:
            await pg.execute(_PG_LOAD_ROWS, (day, list(missing_load_rows)))
        c_loads = await pg.execute(_PG_LOADS, (day, loads_ids)) if loads_ids else None
    return c_req, c_chan, c_keys, c_leads, c_tps, c_loads


async def _pg_leads_found(c_leads: Any, c_tps: Any) -> dict[str, Lead]:
    """The locked leads by id, each with its touchpoints in order (the two cursors of
    `_pg_send_lookups`), times in UTC as the rest of the service reads them."""
    tps: dict[str, list[Touchpoint]] = {}
    for lead_id, channel, clid, occur, ref, rid, dealer in await c_tps.fetchall():
        tps.setdefault(lead_id, []).append(
            Touchpoint(Channel(channel), occur.astimezone(dt.UTC), clid, rid, ref, dealer)
        )
    return {row[0]: _pg_lead(row, tuple(tps.get(row[0], ()))) for row in await c_leads.fetchall()}


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
    wanted = Wanted.of(request_keys, channel_keys, keys)
    params = _pg_lookup_params(method, wanted)
    hashes = sorted({lock_hash(k) for k in lock_keys})
    loads_ids = sorted(set(load_ids))
    try:
        c_req, c_chan, c_keys, c_leads, c_tps, c_loads = await _pg_send_lookups(
            pg,
            params,
            hashes=hashes,
            day=day,
            loads_ids=loads_ids,
            missing_load_rows=missing_load_rows,
        )
        by_request = priors_found(await c_req.fetchall(), wanted.requests)
        by_channel = channel_leads_found(await c_chan.fetchall(), wanted.channel)
        key_db = key_leads_found(await c_keys.fetchall(), wanted.keys)
        found = await _pg_leads_found(c_leads, c_tps)
        loads = dict(await c_loads.fetchall()) if c_loads is not None else {}
    except BaseException:
        await pg.rollback()
        raise
    return BatchFound(by_request, by_channel, key_db, found, loads)


async def postgres_batch_write(conn: AsyncConnection, w: BatchWrites) -> list[int]:
    """Every write of a batch in ONE statement (`_PG_WRITE_BATCH`) and its events' outbox
    rows, pipelined with the commit; rolled back whole on any error. Returns the events'
    seqs, in their order."""
    raw = await conn.get_raw_connection()
    pg: Any = raw.driver_connection
    tps = [touchpoint_row(i, t) for i, t in w.touchpoints]
    key_inserts = [{"contact_key": c, "brand_key": b, "lead_id": i} for c, b, i in w.key_inserts]
    key_updates = [{"contact_key": c, "brand_key": b, "lead_id": i} for c, b, i in w.key_updates]
    requests = [request_row(w.method, r, w.now) for r in w.requests if r.request_id]
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
    events = None
    try:
        async with pg.pipeline():
            await pg.execute(_PG_WRITE_BATCH, params)
            if w.events:  # the outbox rows, in the same transaction
                events = await pg.execute(
                    OUTBOX.postgres_insert_sql, (OUTBOX.postgres_json(w.events),)
                )
            await pg.commit()
    except BaseException:
        await pg.rollback()
        raise
    # Given in the order of the array (WITH ORDINALITY), returned in no promised order.
    return sorted(r[0] for r in await events.fetchall()) if events is not None else []

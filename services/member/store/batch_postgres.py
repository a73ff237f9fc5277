"""The points batch on PostgreSQL, straight on the psycopg connection: every lookup in one
pipeline (one round trip: the advisory locks, the members' rows locked, their identities,
the request ids, in order, in one transaction), every write as ONE statement of
data-modifying CTEs reading their rows from JSON documents (`json_populate_recordset`:
parsed and converted by the server, in C), pipelined with the commit (store/batch.py says
what they read and write). The lookups' lists are JSON too (`= ANY(ARRAY(SELECT
json_array_elements_text(...)))`: one text parameter, an index search like the `IN` of the
Core queries; sequential scans are off: while a table grows from empty its statistics lag).
Rows are read straight from psycopg's tuples and every time is converted once per batch
(store/batch.py `member_from`, `Texts`).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
from collections.abc import Sequence
from typing import Any

import psycopg
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection

from mesh.unit_of_work import lock_hash
from services.member.domain.identities import IdentityKey, IdentityType
from services.member.domain.model import IdentityRecord
from services.member.store.batch import (
    ENTRY_COLUMNS,
    LOT_COLUMNS,
    LOT_HEAD,
    MEMBER_COLUMNS,
    POINTS_COLUMNS,
    REQUEST_COLUMNS,
    TIER_COLUMNS,
    BatchFound,
    BatchWrites,
    Prior,
    RequestKey,
    Texts,
    lot_heads,
    member_from,
    points_row,
)

# The lists come as JSON text (one str parameter, json.dumps in C): psycopg's list dumper
# costs some microseconds per element on the writer's loop. `= ANY(ARRAY(...))` is
# computed once per statement and searched on the index like `= ANY(%s)`.
_JSON_ELEMENTS = "json_array_elements_text(CAST(%s AS json))"
_ANY = f"ANY(ARRAY(SELECT {_JSON_ELEMENTS}))"
_LOCK = (
    f"SELECT pg_advisory_xact_lock(CAST(k AS bigint)) FROM {_JSON_ELEMENTS} "
    "WITH ORDINALITY AS t(k, n) ORDER BY n"
)
_MEMBERS = (
    f"SELECT {', '.join(MEMBER_COLUMNS)} FROM members WHERE id = {_ANY} ORDER BY id FOR UPDATE"
)
_IDENTITIES = (
    "SELECT member_id, type, app_id, value, link_time FROM identities "
    f"WHERE member_id = {_ANY} AND erase_time IS NULL ORDER BY id"
)
# By the whole key, one pk_request_ids search per request (a list per column was searched
# on its leading column only, `scope`: every request id of the caller, 18 ms a batch at
# 20k of them, issue 17).
_REQUESTS = (
    "SELECT r.scope, r.method, r.request_id, r.fingerprint, r.result "
    "FROM json_to_recordset(CAST(%s AS json)) AS k(scope text, method text, request_id text) "
    "CROSS JOIN LATERAL (SELECT scope, method, request_id, fingerprint, result "
    "FROM request_ids WHERE scope = k.scope AND method = k.method "
    "AND request_id = k.request_id LIMIT 1) AS r"  # LIMIT: a search per key, never a join
)
# The head of each debtor's queue of lots (ix_point_lots_member_id_fifo, LIMIT per member).
_LOT_HEADS = (
    "SELECT m.id, l.lot_id, l.remaining, l.expire_time, l.earned_time "
    f"FROM {_JSON_ELEMENTS} AS m(id) CROSS JOIN LATERAL ("
    "SELECT lot_id, remaining, expire_time, earned_time FROM point_lots "
    "WHERE member_id = m.id ORDER BY expire_time, earned_time, lot_id LIMIT %s) AS l"
)


def _from_json(table: str, ordered: bool = False) -> str:
    source = f"json_populate_recordset(NULL::{table}, CAST(%s AS json))"
    return f"{source} WITH ORDINALITY AS v" if ordered else f"{source} AS v"


def _insert(table: str, columns: Sequence[str], returning: str = "") -> str:
    cols = ", ".join(columns)
    # In the documents' order: the ledger's `seq` must follow the booking order.
    sql = (
        f"INSERT INTO {table} ({cols}) SELECT {', '.join(f'v.{c}' for c in columns)} "
        f"FROM {_from_json(table, ordered=True)} ORDER BY v.ordinality"
    )
    return f"{sql} RETURNING {returning}" if returning else sql


_POINTS_AND_ID = (*POINTS_COLUMNS, "id")  # points_row's order
_UPDATE_MEMBERS = (
    f"UPDATE members SET {', '.join(f'{c} = v.{c}' for c in POINTS_COLUMNS)} "
    f"FROM {_from_json('members')} WHERE members.id = v.id"
)
# One statement instead of four: psycopg's per-statement work is a good part of a batch's
# CPU. The CTEs never touch the same row twice (each changed member is written once).
_INDEX_ORDER = (
    "SELECT set_config('enable_sort', %s, true), set_config('enable_bitmapscan', %s, true)"
)
# Lots: each lot is in one of the three (a lot opened and changed in the batch is inserted
# as the batch leaves it).
_SET_LOTS = (
    f"UPDATE point_lots SET remaining = v.remaining FROM {_from_json('point_lots')} "
    "WHERE point_lots.lot_id = v.lot_id"
)
_DELETE_LOTS = f"DELETE FROM point_lots WHERE lot_id = {_ANY}"
_WRITE = (
    f"WITH e AS ({_insert('point_transactions', ENTRY_COLUMNS, 'id, seq')}), "
    f"m AS ({_UPDATE_MEMBERS}), "
    f"r AS ({_insert('request_ids', REQUEST_COLUMNS)}), "
    f"t AS ({_insert('tier_changes', TIER_COLUMNS)}), "
    f"lo AS ({_insert('point_lots', LOT_COLUMNS)}), "
    f"ls AS ({_SET_LOTS}), "
    f"ld AS ({_DELETE_LOTS}) "
    "SELECT id, seq FROM e"
)
_TYPES = {t.value: t for t in IdentityType}
_KEY = ("scope", "method", "request_id")


def _utc(value: dt.datetime | None) -> dt.datetime | None:
    if value is None or value.tzinfo is dt.UTC:
        return value
    return value.astimezone(dt.UTC)


def _json_time(value: dt.datetime) -> str:
    if value.tzinfo is None:
        raise ValueError("naive datetime given to a UTC column")
    return value.isoformat()


def _document(columns: Sequence[str], rows: Sequence[tuple[Any, ...]]) -> str:
    """Rows (their times already text) as the JSON array of objects
    `json_populate_recordset` reads."""
    return json.dumps([dict(zip(columns, row, strict=True)) for row in rows]) if rows else "[]"


async def _rollback(pg: Any) -> None:
    with contextlib.suppress(Exception):  # the writer drops a connection that failed
        await pg.rollback()


def _wrapped(e: psycopg.Error) -> Exception:
    """A psycopg error as SQLAlchemy's (IntegrityError...), without parameters."""
    return DBAPIError.instance(None, None, e, psycopg.Error, hide_parameters=True)


async def postgres_lookup(
    conn: AsyncConnection,
    member_ids: Sequence[str],
    request_keys: Sequence[RequestKey],
    debtors: Sequence[str] = (),
) -> BatchFound:
    """The batch's advisory locks on its request keys, its members' rows locked (in id
    order), their live identities, the request ids seen and the head of the `debtors'`
    lots, in one pipeline; the rows stay locked until `postgres_write` commits (or the
    connection rolls back)."""
    raw = await conn.get_raw_connection()
    pg: Any = raw.driver_connection
    ids = json.dumps(sorted(set(member_ids)))
    wanted = set(request_keys)
    hashes = sorted({lock_hash(f"r|{s}|{m}|{r}") for s, m, r in wanted})
    try:
        async with pg.pipeline():
            await pg.execute("SET LOCAL enable_seqscan = off")
            if hashes:
                await pg.execute(_LOCK, (json.dumps(hashes),))
            c_members = await pg.execute(_MEMBERS, (ids,))
            c_idents = await pg.execute(_IDENTITIES, (ids,))
            c_requests = c_lots = None
            if wanted:
                keys = [dict(zip(_KEY, k, strict=True)) for k in sorted(wanted)]
                c_requests = await pg.execute(_REQUESTS, (json.dumps(keys),))
            if debtors:  # in the index's order, whatever the statistics (store/plans.py)
                owing = json.dumps(sorted(set(debtors)))
                await pg.execute(_INDEX_ORDER, ("off", "off"))
                c_lots = await pg.execute(_LOT_HEADS, (owing, LOT_HEAD + 1))
                await pg.execute(_INDEX_ORDER, ("on", "on"))
        rows = await c_members.fetchall()
        idents = await c_idents.fetchall()
        seen = await c_requests.fetchall() if c_requests is not None else []
        heads = await c_lots.fetchall() if c_lots is not None else []
    except psycopg.Error as e:
        await _rollback(pg)
        raise _wrapped(e) from e
    except BaseException:
        await _rollback(pg)
        raise
    found = {row[0]: member_from(row, _utc) for row in rows}  # id first
    by_member: dict[str, list[IdentityRecord]] = {}
    for member_id, type_, app_id, value, link_time in idents:
        key = IdentityKey(_TYPES[type_], value, app_id)
        by_member.setdefault(member_id, []).append(IdentityRecord(key, _utc(link_time)))  # type: ignore[arg-type]
    identities = {m: tuple(found_idents) for m, found_idents in by_member.items()}
    requests = {
        (scope, method, rid): Prior(result, fp)
        for scope, method, rid, fp, result in seen
        if (scope, method, rid) in wanted
    }
    lots, whole = lot_heads(heads, _utc)
    return BatchFound(found, identities, requests, lots, whole)


async def postgres_write(conn: AsyncConnection, w: BatchWrites) -> dict[str, int]:
    """Every write of a batch in ONE statement (`_WRITE`) pipelined with the commit; the
    `seq` of each booked entry by id. Rolled back whole on any error."""
    raw = await conn.get_raw_connection()
    pg: Any = raw.driver_connection
    text = Texts(_json_time).__getitem__
    params = (
        _document(ENTRY_COLUMNS, [b.row(text) for b in w.entries]),
        _document(_POINTS_AND_ID, [points_row(row, text) for row in w.members]),
        _document(REQUEST_COLUMNS, [r.row(text) for r in w.requests]),
        _document(TIER_COLUMNS, [t.row(text) for t in w.tier_changes]),
        _document(LOT_COLUMNS, w.lot_rows(text)),
        _document(("remaining", "lot_id"), [(lot.remaining, lot.id) for lot in w.lots_set]),
        json.dumps(w.lots_spent),
    )
    try:
        async with pg.pipeline():
            cur = None
            if w.entries or w.members or w.requests or w.tier_changes or w.lots_spent:
                cur = await pg.execute(_WRITE, params)
            await pg.commit()
        seqs = {} if cur is None else {i: int(s) for i, s in await cur.fetchall()}
    except psycopg.Error as e:
        await _rollback(pg)
        raise _wrapped(e) from e
    except BaseException:
        await _rollback(pg)
        raise
    return seqs

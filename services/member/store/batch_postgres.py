"""The points batch on PostgreSQL, straight on the psycopg connection: every lookup in one
pipeline (one round trip: the advisory locks, the members' rows locked, their identities,
the request ids, in order, in one transaction), every write as ONE statement of
data-modifying CTEs reading their rows from JSON documents (`json_populate_recordset`:
parsed and converted by the server, in C), pipelined with the commit (store/batch.py says
what they read and write). `= ANY(array)` is an index search like the `IN` of the Core
queries (and sequential scans are off: while a table grows from empty its statistics lag).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any, cast

import psycopg
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection

from mesh.schema import UtcDateTime
from mesh.unit_of_work import lock_hash
from services.member.domain.model import IdentityRecord
from services.member.store.batch import (
    ENTRY_COLUMNS,
    MEMBER_COLUMNS,
    POINTS_COLUMNS,
    REQUEST_COLUMNS,
    TIER_COLUMNS,
    BatchFound,
    BatchWrites,
    Prior,
    RequestKey,
    points_values,
)
from services.member.store.rows import identity_records, member_row
from services.member.store.tables import members

_LOCK = (
    "SELECT pg_advisory_xact_lock(k) FROM unnest(CAST(%s AS bigint[])) "
    "WITH ORDINALITY AS t(k, n) ORDER BY n"
)
_MEMBERS = (
    f"SELECT {', '.join(MEMBER_COLUMNS)} FROM members WHERE id = ANY(%s) ORDER BY id FOR UPDATE"
)
_IDENTITIES = (
    "SELECT member_id, type, app_id, value, link_time FROM identities "
    "WHERE member_id = ANY(%s) AND erase_time IS NULL ORDER BY id"
)
_REQUESTS = (
    "SELECT scope, method, request_id, fingerprint, result FROM request_ids "
    "WHERE scope = ANY(%s) AND method = ANY(%s) AND request_id = ANY(%s)"
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


_UPDATE_MEMBERS = (
    f"UPDATE members SET {', '.join(f'{c} = v.{c}' for c in POINTS_COLUMNS)} "
    f"FROM {_from_json('members')} WHERE members.id = v.id"
)
# One statement instead of four: psycopg's per-statement work is a good part of a batch's
# CPU. The CTEs never touch the same row twice (each changed member is written once).
_WRITE = (
    f"WITH e AS ({_insert('point_transactions', ENTRY_COLUMNS, 'id, seq')}), "
    f"m AS ({_UPDATE_MEMBERS}), "
    f"r AS ({_insert('request_ids', REQUEST_COLUMNS)}), "
    f"t AS ({_insert('tier_changes', TIER_COLUMNS)}) "
    "SELECT id, seq FROM e"
)
_MEMBER_TIMES = tuple(c.name for c in members.c if isinstance(c.type, UtcDateTime))


def _utc(value: dt.datetime | None) -> dt.datetime | None:
    return None if value is None else value.astimezone(dt.UTC)


def _json_default(value: Any) -> str:
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.isoformat()
    raise TypeError(f"cannot send {type(value).__name__} as JSON")


def _document(rows: Sequence[dict[str, Any]]) -> str:
    return json.dumps(rows, default=_json_default) if rows else "[]"


async def _rollback(pg: Any) -> None:
    with contextlib.suppress(Exception):  # the writer drops a connection that failed
        await pg.rollback()


def _wrapped(e: psycopg.Error) -> Exception:
    """A psycopg error as SQLAlchemy's (IntegrityError...), without parameters."""
    return DBAPIError.instance(None, None, e, psycopg.Error, hide_parameters=True)


async def postgres_lookup(
    conn: AsyncConnection, member_ids: Sequence[str], request_keys: Sequence[RequestKey]
) -> BatchFound:
    """The batch's advisory locks on its request keys, its members' rows locked (in id
    order), their live identities and the request ids seen, in one pipeline; the rows stay
    locked until `postgres_write` commits (or the connection rolls back)."""
    raw = await conn.get_raw_connection()
    pg: Any = raw.driver_connection
    ids = sorted(set(member_ids))
    wanted = set(request_keys)
    hashes = sorted({lock_hash(f"r|{s}|{m}|{r}") for s, m, r in wanted})
    try:
        async with pg.pipeline():
            await pg.execute("SET LOCAL enable_seqscan = off")
            if hashes:
                await pg.execute(_LOCK, (hashes,))
            c_members = await pg.execute(_MEMBERS, (ids,))
            c_idents = await pg.execute(_IDENTITIES, (ids,))
            c_requests = None
            if wanted:
                c_requests = await pg.execute(
                    _REQUESTS,
                    (
                        sorted({k[0] for k in wanted}),
                        sorted({k[1] for k in wanted}),
                        sorted({k[2] for k in wanted}),
                    ),
                )
        rows = await c_members.fetchall()
        idents = await c_idents.fetchall()
        seen = await c_requests.fetchall() if c_requests is not None else []
    except psycopg.Error as e:
        await _rollback(pg)
        raise _wrapped(e) from e
    except BaseException:
        await _rollback(pg)
        raise
    found: dict[str, Any] = {}
    for row in rows:
        values = dict(zip(MEMBER_COLUMNS, row, strict=True))
        for c in _MEMBER_TIMES:
            values[c] = _utc(values[c])
        found[values["id"]] = member_row(cast(Any, SimpleNamespace(**values)))
    by_member: dict[str, list[Any]] = {}
    for member_id, type_, app_id, value, link_time in idents:
        ident = SimpleNamespace(type=type_, app_id=app_id, value=value, link_time=_utc(link_time))
        by_member.setdefault(member_id, []).append(ident)
    identities: dict[str, tuple[IdentityRecord, ...]] = {
        m: identity_records(cast(Any, found_rows)) for m, found_rows in by_member.items()
    }
    requests = {
        (scope, method, rid): Prior(result, fp)
        for scope, method, rid, fp, result in seen
        if (scope, method, rid) in wanted
    }
    return BatchFound(found, identities, requests)


async def postgres_write(conn: AsyncConnection, w: BatchWrites) -> dict[str, int]:
    """Every write of a batch in ONE statement (`_WRITE`) pipelined with the commit; the
    `seq` of each booked entry by id. Rolled back whole on any error."""
    raw = await conn.get_raw_connection()
    pg: Any = raw.driver_connection
    params = (
        _document([b.values() for b in w.entries]),
        _document([points_values(row) for row in w.members]),
        _document([r.values() for r in w.requests]),
        _document([t.values() for t in w.tier_changes]),
    )
    try:
        async with pg.pipeline():
            cur = None
            if w.entries or w.members or w.requests or w.tier_changes:
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

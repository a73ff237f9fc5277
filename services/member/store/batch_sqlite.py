"""The points batch on SQLite: every lookup in one call on the SQLite thread, every write and
the commit in another (store/batch.py says what they read and write).

aiosqlite runs every DBAPI call (cursor, execute, fetch, close) on the connection's own
thread, one hand-over each way per call; through SQLAlchemy a batch's dozen statements
would cost some 40 of them, each dearer than the statement on a busy core. So the lookups
and the writes are two plain sqlite3 functions, each run whole on that thread in ONE call
(`mesh.unit_of_work.on_sqlite_thread`), reading and writing the values exactly as the
column types store them (UTC text), so the SQLAlchemy reads elsewhere see the same rows.
`IN (SELECT value FROM json_each(?))` keeps every statement's text constant whatever the
batch size, and is still a search on the index. The rows are read straight from the tuples
and every time is converted once per batch (store/batch.py `member_from`, `Texts`): those
conversions were most of the batch's own CPU.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from mesh.unit_of_work import on_sqlite_thread
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

_IN = "(SELECT value FROM json_each(?))"
_SQL_MEMBERS = f"SELECT {', '.join(MEMBER_COLUMNS)} FROM members WHERE id IN {_IN}"
# ix_identities_member_id
_SQL_IDENTITIES = (
    "SELECT member_id, type, app_id, value, link_time FROM identities "
    f"WHERE member_id IN {_IN} AND erase_time IS NULL ORDER BY id"
)
# pk_request_ids (scope, method, request_id)
_SQL_REQUESTS = (
    "SELECT scope, method, request_id, fingerprint, result FROM request_ids "
    f"WHERE scope IN {_IN} AND method IN {_IN} AND request_id IN {_IN}"
)


# ix_point_lots_member_id_fifo: the head of one member's queue
_SQL_LOT_HEAD = (
    "SELECT member_id, lot_id, remaining, expire_time, earned_time FROM point_lots "
    "WHERE member_id = ? ORDER BY expire_time, earned_time, lot_id LIMIT ?"
)


def _insert(table: str, columns: Sequence[str]) -> str:
    marks = ", ".join("?" for _ in columns)
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})"


_SQL_INSERT_ENTRY = _insert("point_transactions", ENTRY_COLUMNS)
_SQL_INSERT_REQUEST = _insert("request_ids", REQUEST_COLUMNS)
_SQL_INSERT_TIER = _insert("tier_changes", TIER_COLUMNS)
_SQL_INSERT_LOT = _insert("point_lots", LOT_COLUMNS)
_SQL_SET_LOT = "UPDATE point_lots SET remaining = ? WHERE lot_id = ?"
_SQL_DELETE_LOT = "DELETE FROM point_lots WHERE lot_id = ?"
_SQL_UPDATE_MEMBER = (
    f"UPDATE members SET {', '.join(f'{c} = ?' for c in POINTS_COLUMNS)} WHERE id = ?"
)
_TYPES = {t.value: t for t in IdentityType}


def _utc_text(value: dt.datetime) -> str:
    """A time as the column types store it on SQLite: UTC as SQLAlchemy's text,
    "YYYY-MM-DD HH:MM:SS.ffffff"."""
    if value.tzinfo is dt.UTC:
        return value.isoformat(" ", "microseconds")[:-6]  # without "+00:00"
    if value.tzinfo is None:
        raise ValueError("naive datetime given to a UTC column")
    return value.astimezone(dt.UTC).replace(tzinfo=None).isoformat(" ", "microseconds")


def _time(text: str | None) -> dt.datetime | None:
    """A stored time, aware UTC. SQLAlchemy's text has no offset (a row written by a raw
    migration may have one): with "+00:00" added, the parsed time's tzinfo is dt.UTC
    itself, several times cheaper than parsing and then `.replace(tzinfo=dt.UTC)`."""
    if text is None:
        return None
    if len(text) >= 19 and text[-6] not in "+-" and text[-1] != "Z":
        return dt.datetime.fromisoformat(text + "+00:00")
    return dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC)


async def sqlite_lookup(
    conn: AsyncConnection,
    member_ids: Sequence[str],
    request_keys: Sequence[RequestKey],
    debtors: Sequence[str] = (),
) -> BatchFound:
    """BEGIN IMMEDIATE, then the batch's members, their live identities, the request ids
    seen and the head of the lots of the `debtors` (members with a redemption), in one
    call on the SQLite thread; the transaction stays open."""
    ids = json.dumps(sorted(set(member_ids)))
    wanted = set(request_keys)
    scopes = json.dumps(sorted({k[0] for k in wanted}))
    methods = json.dumps(sorted({k[1] for k in wanted}))
    rids = json.dumps(sorted({k[2] for k in wanted}))

    owing = sorted(set(debtors))

    def run(db: Any) -> tuple[list[Any], list[Any], list[Any], list[Any]]:
        db.execute("BEGIN IMMEDIATE")
        try:
            rows = db.execute(_SQL_MEMBERS, (ids,)).fetchall()
            idents = db.execute(_SQL_IDENTITIES, (ids,)).fetchall()
            seen = db.execute(_SQL_REQUESTS, (scopes, methods, rids)).fetchall() if wanted else []
            heads = [lot for m in owing for lot in db.execute(_SQL_LOT_HEAD, (m, LOT_HEAD + 1))]
            return rows, idents, seen, heads
        except BaseException:
            db.rollback()
            raise

    rows, idents, seen, heads = await on_sqlite_thread(conn, run)
    found = {row[0]: member_from(row, _time) for row in rows}  # id first
    by_member: dict[str, list[IdentityRecord]] = {}
    for member_id, type_, app_id, value, link_time in idents:
        key = IdentityKey(_TYPES[type_], value, app_id)
        by_member.setdefault(member_id, []).append(IdentityRecord(key, _time(link_time)))  # type: ignore[arg-type]
    identities = {m: tuple(found_idents) for m, found_idents in by_member.items()}
    requests = {
        (scope, method, rid): Prior(result, fp)
        for scope, method, rid, fp, result in seen
        if (scope, method, rid) in wanted
    }
    lots, whole = lot_heads(heads, _time)
    return BatchFound(found, identities, requests, lots, whole)


async def sqlite_write(conn: AsyncConnection, w: BatchWrites) -> dict[str, int]:
    """Every write of a batch and the commit, in one call on the SQLite thread: the ledger
    entries in booking order (each one's rowid is its `seq`), the members' points columns,
    the request ids, the tier changes; rolled back whole on any error."""
    text = Texts(_utc_text).__getitem__
    entries = [b.row(text) for b in w.entries]
    updates = [points_row(row, text) for row in w.members]
    requests = [r.row(text) for r in w.requests]
    tiers = [t.row(text) for t in w.tier_changes]
    lot_rows = w.lot_rows(text)
    lot_sets = [(lot.remaining, lot.id) for lot in w.lots_set]
    lot_spent = [(lot_id,) for lot_id in w.lots_spent]

    def run(db: Any) -> dict[str, int]:
        try:
            seqs: dict[str, int] = {}
            cur = db.cursor()
            for values in entries:
                cur.execute(_SQL_INSERT_ENTRY, values)
                seqs[values[0]] = cur.lastrowid
            for sql, rows in (
                (_SQL_UPDATE_MEMBER, updates),
                (_SQL_INSERT_REQUEST, requests),
                (_SQL_INSERT_TIER, tiers),
                (_SQL_INSERT_LOT, lot_rows),
                (_SQL_SET_LOT, lot_sets),
                (_SQL_DELETE_LOT, lot_spent),
            ):
                if rows:
                    cur.executemany(sql, rows)
            cur.close()
            db.commit()
            return seqs
        except BaseException:
            db.rollback()
            raise

    result: dict[str, int] = await on_sqlite_thread(conn, run)
    return result

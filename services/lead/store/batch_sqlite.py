"""The intake batch on SQLite: every lookup in one call, every write and the commit in
another (see the comment below)."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Sequence
from types import SimpleNamespace
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from services.lead.domain.model import (
    Channel,
    Lead,
    Touchpoint,
)
from services.lead.store.batch import (
    LEAD_BOOLS,
    LEAD_COLUMNS,
    LEAD_TIMES,
    TP_COLUMNS,
    BatchFound,
    BatchWrites,
    ChannelKey,
    Prior,
    RequestKey,
)
from services.lead.store.batch_keys import (
    Wanted,
    channel_leads_found,
    key_leads_found,
    priors_found,
)
from services.lead.store.rows import lead_from_row, lead_row
from services.lead.store.tables import OUTBOX

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


def sqlite_value(value: Any) -> Any:
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


_LEAD_TIME_AT = tuple(i for i, c in enumerate(LEAD_COLUMNS) if c in LEAD_TIMES)
_LEAD_REASONS_AT = LEAD_COLUMNS.index("rating_reasons")


def sqlite_lead_values(lead: Lead) -> list[Any]:
    """A lead's `leads` row in column order, stored as `sqlite_value` would store each
    value, converting only the columns that need it (a generic conversion of all 33
    values costs ~30 µs per lead in a busy server)."""
    row = lead_row(lead)
    values = [row[c] for c in LEAD_COLUMNS]
    for i in _LEAD_TIME_AT:
        values[i] = sqlite_value(values[i])
    values[_LEAD_REASONS_AT] = sqlite_value(values[_LEAD_REASONS_AT])
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
_SQL_LEADS = f"SELECT {', '.join(LEAD_COLUMNS)} FROM leads WHERE id IN {_IDS} ORDER BY id"
_SQL_TPS = (
    f"SELECT {', '.join(TP_COLUMNS)} FROM touchpoints WHERE lead_id IN {_IDS} ORDER BY lead_id, id"
)
_SQL_LOAD_ROWS = (
    "INSERT INTO dealer_load (dealer_id, day, assigned) VALUES (?, ?, 0) ON CONFLICT DO NOTHING"
)
_SQL_LOADS = (
    f"SELECT dealer_id, assigned FROM dealer_load WHERE day = ? AND dealer_id IN {_IDS} "
    "ORDER BY dealer_id"
)
_SQL_INSERT_LEAD = (
    f"INSERT INTO leads ({', '.join(LEAD_COLUMNS)}) VALUES ({', '.join('?' for _ in LEAD_COLUMNS)})"
)
_SQL_UPDATE_LEAD = (
    f"UPDATE leads SET {', '.join(f'{c} = ?' for c in LEAD_COLUMNS[1:])} WHERE id = ?"
)
_SQL_INSERT_TP = (
    f"INSERT INTO touchpoints ({', '.join(TP_COLUMNS)}) "
    f"VALUES ({', '.join('?' for _ in TP_COLUMNS)})"
)
_SQL_INSERT_KEY = "INSERT INTO lead_keys (contact_key, brand_key, lead_id) VALUES (?, ?, ?)"
_SQL_UPDATE_KEY = "UPDATE lead_keys SET lead_id = ? WHERE contact_key = ? AND brand_key = ?"
_SQL_INSERT_REQUEST = (
    "INSERT INTO request_ids (scope, method, request_id, fingerprint, result, create_time) "
    "VALUES (?, ?, ?, ?, ?, ?)"
)
_SQL_ADD_LOAD = "UPDATE dealer_load SET assigned = assigned + ? WHERE dealer_id = ? AND day = ?"


async def _on_sqlite_thread(conn: AsyncConnection, fn: Any) -> Any:
    """Run `fn(sqlite3_connection)` on the aiosqlite connection's own thread, in one
    hand-over (aiosqlite's `_execute`, the primitive behind each of its own methods)."""
    raw = await conn.get_raw_connection()
    aio: Any = raw.driver_connection
    return await aio._execute(fn, aio._conn)


def _sqlite_lead(row: Sequence[Any], tps: tuple[Touchpoint, ...]) -> Lead:
    values = dict(zip(LEAD_COLUMNS, row, strict=True))
    for c in LEAD_TIMES:
        values[c] = _sqlite_time(values[c])
    for c in LEAD_BOOLS:
        values[c] = bool(values[c])
    values["rating_reasons"] = json.loads(values["rating_reasons"])
    return lead_from_row(SimpleNamespace(**values), tps)


def _json_sorted(values: Iterable[str]) -> str:
    """Distinct values as the sorted JSON array `json_each(?)` reads (see above)."""
    return json.dumps(sorted(set(values)))


def _sqlite_priors(db: Any, method: str, wanted: set[RequestKey]) -> dict[RequestKey, Prior]:
    """Earlier calls of the batch's request ids (pk_request_ids); no query for none."""
    if not wanted:
        return {}
    scopes = _json_sorted(k[0] for k in wanted)
    rids = _json_sorted(k[1] for k in wanted)
    return priors_found(db.execute(_SQL_REQUESTS, (scopes, method, rids)), wanted)


def _sqlite_channel_leads(db: Any, wanted: set[ChannelKey]) -> dict[ChannelKey, str]:
    """The lead of each channel lead id seen (uq_touchpoints_channel_lead: the id, then
    the channel checked); no query for none."""
    if not wanted:
        return {}
    ids = _json_sorted(k[2] for k in wanted)
    chans = _json_sorted(k[0] for k in wanted)
    return channel_leads_found(db.execute(_SQL_CHANNEL_IDS, (ids, chans)), wanted)


def _sqlite_key_leads(db: Any, wanted: set[tuple[str, str]]) -> dict[tuple[str, str], str]:
    """The current lead of each (contact, brand) (pk_lead_keys: contact first)."""
    if not wanted:
        return {}
    contacts = _json_sorted(k[0] for k in wanted)
    return key_leads_found(db.execute(_SQL_KEYS, (contacts,)), wanted)


def _sqlite_leads(db: Any, lead_ids: list[str]) -> dict[str, Lead]:
    """Those leads with their touchpoints in order (pk_leads, ix_touchpoints_lead_id_id),
    by id; `lead_ids` sorted, as the reads of every batch take rows in one order."""
    if not lead_ids:
        return {}
    rows = db.execute(_SQL_LEADS, (json.dumps(lead_ids),)).fetchall()
    tps: dict[str, list[Touchpoint]] = {}
    for lead_id, channel, clid, occur, ref, rid, dealer in db.execute(
        _SQL_TPS, (json.dumps([r[0] for r in rows]),)
    ):
        tps.setdefault(lead_id, []).append(
            Touchpoint(Channel(channel), _sqlite_time(occur), clid, rid, ref, dealer)  # type: ignore[arg-type]
        )
    return {row[0]: _sqlite_lead(row, tuple(tps.get(row[0], ()))) for row in rows}


def _sqlite_loads(
    db: Any, day_text: str, load_ids: Sequence[str], missing_load_rows: Sequence[str]
) -> dict[str, int]:
    """Today's count of each dealer (pk_dealer_load), its row made first if this process
    has not made sure of it yet, so the batch's increments always find a row."""
    if not load_ids:
        return {}
    if missing_load_rows:
        db.executemany(_SQL_LOAD_ROWS, [(d, day_text) for d in missing_load_rows])
    return dict(db.execute(_SQL_LOADS, (day_text, _json_sorted(load_ids))).fetchall())


def _sqlite_lookup(
    db: Any,
    wanted: Wanted,
    *,
    method: str,
    day_text: str,
    load_ids: Sequence[str],
    missing_load_rows: Sequence[str],
) -> BatchFound:
    """Every lookup of `sqlite_batch_lookup`, run whole on the SQLite thread; rolled back
    on any error, else the transaction is left open for the writes."""
    db.execute("BEGIN IMMEDIATE")
    try:
        by_request = _sqlite_priors(db, method, wanted.requests)
        by_channel = _sqlite_channel_leads(db, wanted.channel)
        key_db = _sqlite_key_leads(db, wanted.keys)
        lead_ids = sorted(
            {*(p.result for p in by_request.values()), *by_channel.values(), *key_db.values()}
        )
        found = _sqlite_leads(db, lead_ids)
        loads = _sqlite_loads(db, day_text, load_ids, missing_load_rows)
        return BatchFound(by_request, by_channel, key_db, found, loads)
    except BaseException:
        db.rollback()
        raise


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
    wanted = Wanted.of(request_keys, channel_keys, keys)
    day_text = day.isoformat()
    result: BatchFound = await _on_sqlite_thread(
        conn,
        lambda db: _sqlite_lookup(
            db,
            wanted,
            method=method,
            day_text=day_text,
            load_ids=load_ids,
            missing_load_rows=missing_load_rows,
        ),
    )
    return result


async def sqlite_batch_write(conn: AsyncConnection, w: BatchWrites) -> list[int]:
    """Every write of a batch and the commit, in one call on the SQLite thread: new leads,
    changed leads written back whole, touchpoints, (contact, brand) keys pointed at their
    current lead, request ids remembered, dealer counts raised, the batch's events into the
    outbox; rolled back whole on any error. Returns the events' seqs, in their order (one
    writer inserting into a rowid table: consecutive, ending at the last rowid)."""
    new_rows = [sqlite_lead_values(lead) for lead in w.created]
    changed_rows = []
    for lead in w.changed:
        row = sqlite_lead_values(lead)
        changed_rows.append([*row[1:], row[0]])
    now = sqlite_value(w.now)
    tp_rows = [
        (
            lead_id,
            tp.channel.value,
            tp.channel_lead_id,
            sqlite_value(tp.time),
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
    event_rows = [OUTBOX.sqlite_values(row) for row in w.events]

    def run(db: Any) -> list[int]:
        seqs: list[int] = []
        try:
            for sql, rows in (
                (_SQL_INSERT_LEAD, new_rows),
                (_SQL_UPDATE_LEAD, changed_rows),
                (_SQL_INSERT_TP, tp_rows),
                (_SQL_INSERT_KEY, w.key_inserts),
                (_SQL_UPDATE_KEY, key_updates),
                (_SQL_INSERT_REQUEST, request_rows),
                (_SQL_ADD_LOAD, load_rows),
                (OUTBOX.sqlite_insert_sql, event_rows),
            ):
                if rows:
                    db.executemany(sql, rows)
            if event_rows:
                last = db.execute("SELECT last_insert_rowid()").fetchone()[0]
                seqs = list(range(last - len(event_rows) + 1, last + 1))
            db.commit()
        except BaseException:
            db.rollback()
            raise
        return seqs

    return await _on_sqlite_thread(conn, run)

"""The rows of `inbound_documents` and `seen_signatures`."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from mesh.schema import sqlite_time
from mesh.unit_of_work import on_sqlite_thread
from services.adapters.dms.domain.model import InboundDocument, Kind
from services.adapters.dms.store.tables import inbound_documents, seen_signatures

_d = inbound_documents.c


def _record(row: sa.Row[tuple[object, ...]]) -> InboundDocument:
    m = row._mapping
    return InboundDocument(
        document_id=m["document_id"],
        dealer_id=m["dealer_id"],
        kind=Kind(m["kind"]),
        source_id=m["source_id"],
        revision=m["revision"],
        event_type=m["event_type"],
        event_id=m["event_id"],
        body_sha256=m["body_sha256"],
        receive_time=m["receive_time"],
    )


async def lookup(
    conn: AsyncConnection, keys: Sequence[str], signatures: Sequence[str]
) -> tuple[dict[str, tuple[InboundDocument, str]], set[str]]:
    """In ONE statement (one round trip, one hand-over to the SQLite thread): the documents
    already accepted under these natural keys (with their content digests), and which of
    these signatures were accepted before."""
    s = seen_signatures.c
    docs = sa.select(sa.literal("d").label("what"), *[c for c in inbound_documents.c]).where(
        _d.natural_key.in_(list(keys))
    )
    sigs = sa.select(
        sa.literal("s").label("what"),
        *[
            (s.signature if c.name == "natural_key" else sa.null()).label(c.name)
            for c in inbound_documents.c
        ],
    ).where(s.signature.in_(list(signatures)))
    found: dict[str, tuple[InboundDocument, str]] = {}
    seen: set[str] = set()
    for row in await conn.execute(sa.union_all(docs, sigs)):
        if row.what == "s":
            seen.add(row.natural_key)
        else:
            found[row.natural_key] = (_record(row), row.body_sha256)
    return found, seen


_DOC_COLUMNS = tuple(c.name for c in inbound_documents.c)
_SQLITE_DOCS = (
    f"INSERT INTO inbound_documents ({', '.join(_DOC_COLUMNS)}) "
    f"VALUES ({', '.join('?' for _ in _DOC_COLUMNS)})"
)
_SQLITE_SIGNATURES = "INSERT INTO seen_signatures (signature, seen_time) VALUES (?, ?)"


def _values(d: InboundDocument, key: str) -> dict[str, object]:
    return {
        "document_id": d.document_id,
        "natural_key": key,
        "dealer_id": d.dealer_id,
        "kind": d.kind.value,
        "source_id": d.source_id,
        "revision": d.revision,
        "event_type": d.event_type,
        "event_id": d.event_id,
        "body_sha256": d.body_sha256,
        "receive_time": d.receive_time,
    }


async def insert(
    conn: AsyncConnection,
    docs: Sequence[tuple[InboundDocument, str]],
    signatures: Sequence[str],
    now: dt.datetime,
) -> None:
    """Record accepted documents (with their natural keys) and the signatures of the batch:
    on SQLite both in ONE hand-over to its thread, as the column types store them (the
    per-row work of SQLAlchemy's executemany was a third of a batch's time); on PostgreSQL
    one statement each."""
    if conn.dialect.name == "sqlite":
        doc_rows = [
            tuple(
                sqlite_time(v) if isinstance(v, dt.datetime) else v for v in _values(d, k).values()
            )
            for d, k in docs
        ]
        sig_rows = [(sig, sqlite_time(now)) for sig in signatures]

        def write(raw: Any) -> None:
            if doc_rows:
                raw.executemany(_SQLITE_DOCS, doc_rows)
            if sig_rows:
                raw.executemany(_SQLITE_SIGNATURES, sig_rows)

        await on_sqlite_thread(conn, write)
        return
    if docs:
        await conn.execute(inbound_documents.insert(), [_values(d, k) for d, k in docs])
    if signatures:
        await conn.execute(
            seen_signatures.insert(), [{"signature": s, "seen_time": now} for s in signatures]
        )


async def forget_signatures(conn: AsyncConnection, before: dt.datetime) -> int:
    """Drop the signatures seen before `before` (their timestamps are stale by now)."""
    s = seen_signatures.c
    done = await conn.execute(seen_signatures.delete().where(s.seen_time < before))
    return int(done.rowcount or 0)


async def get(conn: AsyncConnection, document_id: str) -> InboundDocument | None:
    """One document by the adapter's id."""
    row = (
        await conn.execute(sa.select(inbound_documents).where(_d.document_id == document_id))
    ).first()
    return None if row is None else _record(row)


async def page(
    conn: AsyncConnection,
    *,
    dealer_id: str,
    kind: Kind | None,
    after: tuple[dt.datetime, str] | None,
    limit: int,
) -> list[InboundDocument]:
    """Documents newest first (receive time, then id, both descending), after a cursor."""
    query = sa.select(inbound_documents)
    if dealer_id:
        query = query.where(_d.dealer_id == dealer_id)
    if kind is not None:
        query = query.where(_d.kind == kind.value)
    if after is not None:
        when, doc_id = after
        query = query.where(
            sa.or_(
                _d.receive_time < when,
                sa.and_(_d.receive_time == when, _d.document_id < doc_id),
            )
        )
    query = query.order_by(_d.receive_time.desc(), _d.document_id.desc()).limit(limit)
    return [_record(row) for row in await conn.execute(query)]


async def count(conn: AsyncConnection) -> int:
    """How many documents are recorded (tests, bench)."""
    return int(
        (await conn.execute(sa.select(sa.func.count()).select_from(inbound_documents))).scalar_one()
    )

"""Row locks for reads that precede a change: `FOR UPDATE` on PostgreSQL, so two changes of
one row in different processes apply one after the other; SQLite's transaction holds the
single write lock already, and has no FOR UPDATE."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection


def for_update(query: Any, conn: AsyncConnection, *, lock: bool = True) -> Any:
    """`query` locking the rows it reads until commit, where the back end needs it."""
    if lock and conn.dialect.name == "postgresql":
        return query.with_for_update()
    return query

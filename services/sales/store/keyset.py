"""Keyset paging by (create_time, id), newest first, the way every sales List pages: the
token's key is `<create_time µs>|<id>` and the next page starts strictly after it."""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa

EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def key_of(create_time: dt.datetime, id_: str) -> str:
    """The sort key of a row, for its page token."""
    micros = (create_time - EPOCH) // dt.timedelta(microseconds=1)
    return f"{micros}|{id_}"


def after(table: sa.Table, key: str | None) -> Any:
    """The condition "older than the key" (true when there is no key)."""
    if not key:
        return sa.true()
    micros, _, id_ = key.partition("|")
    when = EPOCH + dt.timedelta(microseconds=int(micros))
    c = table.c
    return sa.or_(c.create_time < when, sa.and_(c.create_time == when, c.id < id_))


def newest_first(table: sa.Table) -> tuple[Any, Any]:
    """The order the key pages in."""
    return table.c.create_time.desc(), table.c.id.desc()

"""Table-definition pieces every service's store uses, written once."""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect

# Constraint and index names that are stable across back ends, so hand-written Alembic
# migrations and the metadata agree and a test can compare them.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "pk": "pk_%(table_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
}


def new_metadata() -> sa.MetaData:
    """A MetaData with the platform's naming convention."""
    return sa.MetaData(naming_convention=NAMING_CONVENTION)


class UtcDateTime(sa.TypeDecorator[dt.datetime]):
    """An aware UTC datetime on both back ends (SQLite drops the zone; this restores it)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(dt.UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        assert isinstance(value, dt.datetime)
        return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


def sqlite_time(value: dt.datetime) -> str:
    """UtcDateTime's text on SQLite ("YYYY-MM-DD HH:MM:SS.ffffff", UTC), for raw SQL that
    bypasses the type (one hand-over batches, mesh/events/sqlite_claims.py)."""
    if value.tzinfo is not dt.UTC:
        value = value.astimezone(dt.UTC)
    return value.replace(tzinfo=None).isoformat(" ", "microseconds")


# An autoincrementing 64-bit key: BIGINT identity on PostgreSQL, the rowid on SQLite.
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

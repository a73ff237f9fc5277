"""A service's database: one async SQLAlchemy engine from a URL, sessions, migrations.

SQLite (the zero-set-up default, a file under var/) and PostgreSQL (production and CI) are
driven through the same API, so the same service code and tests run on both.

Durability (DESIGN.md §5: nothing acknowledged may be lost):
- SQLite runs in WAL mode with `synchronous=NORMAL`: a committed transaction survives the
  process being killed (the WAL is in the OS page cache), but not an OS crash or power loss.
  `MARQUE_SQLITE_SYNCHRONOUS=FULL` fsyncs every commit and survives those too, at the cost
  of one fsync per transaction.
- PostgreSQL is durable on commit with its default `synchronous_commit=on`.

SQLite's page cache is 32 MiB per connection (`MARQUE_SQLITE_CACHE_KIB`; SQLite's own
default is 2,000 KiB): a million leads' tables and their ten indexes have some 12 MB of
interior pages alone, and with 2 MB a merge into an old lead made ~57 read calls to the
OS, with 32 MiB ~34 (issue 17, docs/performance.md). A connection's cache fills only with
the pages it reads. `MARQUE_SQLITE_MMAP_MIB` reads the file through mmap instead (0, the
default: off; the mapped pages count in the process's RSS).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

SQLITE_BUSY_TIMEOUT_MS = 5000
_SYNCHRONOUS_LEVELS = ("OFF", "NORMAL", "FULL", "EXTRA")
# A connection's page cache and mmap window (see the module docstring).
SQLITE_CACHE_KIB = 32768
SQLITE_MMAP_MIB = 0


def sqlite_synchronous(env: dict[str, str] | None = None) -> str:
    """The SQLite `synchronous` level: NORMAL unless `MARQUE_SQLITE_SYNCHRONOUS` says else."""
    raw = (os.environ if env is None else env).get("MARQUE_SQLITE_SYNCHRONOUS", "").strip()
    level = raw.upper() or "NORMAL"
    if level not in _SYNCHRONOUS_LEVELS:
        raise ValueError(f"MARQUE_SQLITE_SYNCHRONOUS must be one of {_SYNCHRONOUS_LEVELS}")
    return level


def _sqlite_size(env: dict[str, str] | None, name: str, default: int) -> int:
    raw = (os.environ if env is None else env).get(name, "").strip()
    if not raw:
        return default
    if not raw.isdigit():
        raise ValueError(f"{name} must be a whole number >= 0")
    return int(raw)


def sqlite_cache_kib(env: dict[str, str] | None = None) -> int:
    """Each SQLite connection's page cache, KiB: `MARQUE_SQLITE_CACHE_KIB`."""
    return _sqlite_size(env, "MARQUE_SQLITE_CACHE_KIB", SQLITE_CACHE_KIB)


def sqlite_mmap_mib(env: dict[str, str] | None = None) -> int:
    """How much of the database file SQLite reads through mmap, MiB:
    `MARQUE_SQLITE_MMAP_MIB` (0: none, reads through the page cache only)."""
    return _sqlite_size(env, "MARQUE_SQLITE_MMAP_MIB", SQLITE_MMAP_MIB)


def _on_sqlite_connect(synchronous: str) -> Any:
    cache_kib, mmap_mib = sqlite_cache_kib(), sqlite_mmap_mib()

    def set_pragmas(dbapi_connection: Any, _record: Any) -> None:
        # Pragmas are per connection, so they are set on every new pool connection.
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute(f"PRAGMA synchronous={synchronous}")
            cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute(f"PRAGMA cache_size=-{cache_kib}")
            cursor.execute(f"PRAGMA mmap_size={mmap_mib << 20}")
        finally:
            cursor.close()

    return set_pragmas


class Database:
    """One service's database. Create once per process; `dispose()` on shutdown.

    `url` is an async SQLAlchemy URL: `sqlite+aiosqlite:///var/lead.db` or
    `postgresql+psycopg://user@host/db`. For SQLite the parent directory is created, so a
    fresh checkout needs no set-up.
    """

    def __init__(self, url: str | URL, *, echo: bool = False, **engine_kwargs: Any) -> None:
        self.url: URL = make_url(url) if isinstance(url, str) else url
        self.is_sqlite: bool = self.url.get_backend_name() == "sqlite"
        if self.is_sqlite:
            database = self.url.database
            if database and database != ":memory:" and not database.startswith("file:"):
                Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        else:
            # Connections dropped by a restarted server or a load balancer are replaced
            # instead of failing the first query after the outage.
            engine_kwargs.setdefault("pool_pre_ping", True)
        # SQL parameters are request data (names, mobiles): never in an error's message,
        # hence never in a log line (DESIGN.md §8; see also mesh/dberrors.py).
        engine_kwargs.setdefault("hide_parameters", True)
        self.engine: AsyncEngine = create_async_engine(self.url, echo=echo, **engine_kwargs)
        if self.is_sqlite:
            event.listen(
                self.engine.sync_engine, "connect", _on_sqlite_connect(sqlite_synchronous())
            )
        self._sessions = async_sessionmaker(self.engine, expire_on_commit=False)

    def __repr__(self) -> str:
        return f"Database({self.url.render_as_string(hide_password=True)!r})"

    def session(self) -> AsyncSession:
        """A new ORM session (`async with db.session() as s: ...; await s.commit()`).

        `expire_on_commit=False` so objects stay readable after commit without another
        round trip (an async session cannot lazy-load on attribute access).
        """
        return self._sessions()

    @asynccontextmanager
    async def begin(self) -> AsyncIterator[AsyncConnection]:
        """A Core connection inside a transaction: committed on success, rolled back on error."""
        async with self.engine.begin() as conn:
            yield conn

    async def dispose(self) -> None:
        """Close every pooled connection (shutdown, or before reopening in tests)."""
        await self.engine.dispose()

    async def migrate(self, script_location: Path | str, revision: str = "head") -> str | None:
        """Upgrade the schema with Alembic to `revision` (default head); returns the revision
        the database is at afterwards.

        The upgrade runs on one of this engine's connections (through `run_sync`), handed to
        the service's `env.py` as `config.attributes["connection"]`; see `mesh.migrations`.
        """
        from alembic import command
        from alembic.runtime.migration import MigrationContext

        from mesh.migrations import alembic_config

        config = alembic_config(script_location, self.url)

        lock_key = f"marque-migrate:{Path(script_location).parent.name}"

        def upgrade(sync_conn: Any) -> str | None:
            if self.url.get_backend_name() == "postgresql":
                # Replicas starting together must not race the same upgrade: the first
                # holds the lock until its migration commits, the others then find head.
                sync_conn.exec_driver_sql(
                    "SELECT pg_advisory_xact_lock(hashtext(%(key)s))", {"key": lock_key}
                )
            config.attributes["connection"] = sync_conn
            command.upgrade(config, revision)
            return MigrationContext.configure(sync_conn).get_current_revision()

        async with self.engine.connect() as conn:
            current = await conn.run_sync(upgrade)
            await conn.commit()
        return current

"""The DMS adapter's store: the hand-written migration matches the tables, on both back ends."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from mesh.db import Database
from mesh.unit_of_work import UnitOfWork, transaction
from services.adapters.dms import store
from services.adapters.dms.store import documents


async def test_migration_matches_the_tables(database_url: str) -> None:
    db = Database(database_url)
    try:
        assert await db.migrate(store.MIGRATIONS) == "0002"
        assert await db.migrate(store.MIGRATIONS) == "0002"

        def diff(conn: sa.Connection) -> list[object]:
            ctx = MigrationContext.configure(conn, opts={"compare_type": True})
            return list(compare_metadata(ctx, store.metadata))

        async with db.engine.connect() as conn:
            assert await conn.run_sync(diff) == []
    finally:
        await db.dispose()


async def test_old_signatures_are_forgotten(database_url: str) -> None:
    db = Database(database_url)
    t0 = dt.datetime(2026, 12, 3, 9, 0, tzinfo=dt.UTC)
    try:
        await db.migrate(store.MIGRATIONS)

        async def write(uow: UnitOfWork) -> None:
            await documents.insert(uow.conn, [], ["sha256=old"], t0)
            await documents.insert(uow.conn, [], ["sha256=new"], t0 + dt.timedelta(minutes=9))

        await transaction(db, write)

        async def sweep(uow: UnitOfWork) -> int:
            return await documents.forget_signatures(uow.conn, t0 + dt.timedelta(minutes=5))

        assert await transaction(db, sweep) == 1
        async with db.engine.connect() as conn:
            _, seen = await documents.lookup(conn, [], ["sha256=old", "sha256=new"])
        assert seen == {"sha256=new"}
    finally:
        await db.dispose()

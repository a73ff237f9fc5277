"""The DMS adapter's store: the hand-written migration matches the tables, on both back ends."""

from __future__ import annotations

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from mesh.db import Database
from services.adapters.dms import store


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

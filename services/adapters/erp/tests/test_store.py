"""The ERP adapter's store: the hand-written migration matches the tables, on both back ends."""

from __future__ import annotations

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from mesh.db import Database
from services.adapters.erp import store


async def test_migration_matches_the_tables(database_url: str) -> None:
    db = Database(database_url)
    try:
        assert await db.migrate(store.MIGRATIONS) == "0003"
        assert await db.migrate(store.MIGRATIONS) == "0003"

        def diff(conn: sa.Connection) -> list[object]:
            ctx = MigrationContext.configure(conn, opts={"compare_type": True})
            return list(compare_metadata(ctx, store.metadata))

        async with db.engine.connect() as conn:
            assert await conn.run_sync(diff) == []
    finally:
        await db.dispose()


async def test_a_claim_is_one_callers_until_its_lease_ends(database_url: str) -> None:
    """New orders are claimed fresh; a second claim while the lease runs is held; after the
    lease (or a release) it is claimed again as tried before; a recorded order is skipped;
    forget drops the claim."""
    import datetime as dt

    from mesh.unit_of_work import UnitOfWork, transaction
    from services.adapters.erp.store import claims

    t0 = dt.datetime(2026, 12, 3, 9, 0, tzinfo=dt.UTC)
    lease = dt.timedelta(seconds=60)
    db = Database(database_url)
    try:
        await db.migrate(store.MIGRATIONS)

        async def claim(at: dt.datetime, *ids: str) -> claims.Claims:
            async def work(uow: UnitOfWork) -> claims.Claims:
                return await claims.claim(uow.conn, ids, at, at + lease)

            return await transaction(db, work)

        first = await claim(t0, "a", "b")
        assert (first.fresh, first.held, first.retried) == ({"a", "b"}, set(), set())
        again = await claim(t0 + dt.timedelta(seconds=59), "a", "c")
        assert (again.fresh, again.held, again.retried) == ({"c"}, {"a"}, set())
        later = await claim(t0 + lease, "a")
        assert (later.fresh, later.held, later.retried) == (set(), set(), {"a"})
        async with db.begin() as conn:
            await claims.release(conn, ["b"], t0)
            assert await claims.of_order(conn, "a") == (2, t0 + lease + lease)
        released = await claim(t0 + dt.timedelta(seconds=1), "b")
        assert released.retried == {"b"}
        async with db.begin() as conn:
            await claims.forget(conn, ["c"])
            assert await claims.of_order(conn, "c") is None
        assert (await claim(t0, "c")).fresh == {"c"}
    finally:
        await db.dispose()

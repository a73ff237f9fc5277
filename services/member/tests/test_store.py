"""The member store below the servicer: the hand-written migration matches the tables,
and the ledger invariants hold in the database, on SQLite and PostgreSQL (the engine driven
directly, see direct.py)."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.exc import IntegrityError

from mesh.db import Database
from mesh.errors import FailedPrecondition
from services.member import store
from services.member.domain.errors import INSUFFICIENT_POINTS
from services.member.domain.identities import IdentityKey, IdentityType
from services.member.store import MIGRATIONS, tables
from services.member.tests.direct import Direct, W, direct
from services.member.tests.direct import w as write

T0 = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)


@pytest.fixture
async def member_store(database_url: str) -> AsyncIterator[Direct]:
    async with direct(database_url) as d:
        yield d


def w(request_id: str, now: dt.datetime = T0) -> W:
    return write(request_id, now)


async def test_migration_matches_the_tables(database_url: str) -> None:
    db = Database(database_url)
    try:
        assert await db.migrate(MIGRATIONS) == "0007"
        assert await db.migrate(MIGRATIONS) == "0007"  # idempotent

        def diff(conn: sa.Connection) -> list[object]:
            ctx = MigrationContext.configure(conn, opts={"compare_type": True})
            return list(compare_metadata(ctx, store.metadata))

        async with db.engine.connect() as conn:
            assert await conn.run_sync(diff) == []
    finally:
        await db.dispose()


async def test_database_refuses_a_negative_balance_and_a_second_live_identity(
    member_store: Direct,
) -> None:
    key = IdentityKey(IdentityType.MOBILE, "+8613800000001")
    m, _ = await member_store.register(w("r1"), key, "", "")
    with pytest.raises(IntegrityError):
        async with member_store.db.begin() as conn:
            await conn.execute(
                tables.members.update().where(tables.members.c.id == m.id).values(balance=-1)
            )
    with pytest.raises(IntegrityError):
        async with member_store.db.begin() as conn:
            await conn.execute(
                tables.identities.insert().values(
                    member_id=m.id, type="mobile", app_id="", value=key.value, link_time=T0
                )
            )


async def test_many_concurrent_earns_and_redeems_keep_balance_equal_to_ledger(
    member_store: Direct,
) -> None:
    m, _ = await member_store.register(
        w("r"), IdentityKey(IdentityType.MOBILE, "+8613800000002"), "", ""
    )

    async def earn(i: int) -> None:
        await member_store.earn(w(f"e{i}"), m.id, 10, "x", "")

    async def redeem(i: int) -> bool:
        try:
            await member_store.redeem(w(f"d{i}"), m.id, 25, "y", "")
        except FailedPrecondition as e:
            assert e.reason == INSUFFICIENT_POINTS
            return False
        return True

    results = await asyncio.gather(*(earn(i) for i in range(30)), *(redeem(i) for i in range(30)))
    won = sum(1 for r in results if r is True)
    got = await member_store.get_member(m.id, T0)
    assert got.balance == await member_store.ledger_sum(m.id) == 300 - 25 * won
    assert got.balance >= 0

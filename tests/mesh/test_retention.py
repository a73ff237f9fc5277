"""mesh.retention.Sweeper on SQLite and PostgreSQL: only rows older than the retention go,
a batch per transaction; the background task sweeps, survives a failed sweep, stops."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import AsyncIterator

import pytest
import sqlalchemy as sa

from mesh.config import Settings
from mesh.db import Database
from mesh.retention import Sweeper, request_id_sweeper
from mesh.schema import UtcDateTime, new_metadata

NOW = dt.datetime(2026, 11, 24, 12, 0, tzinfo=dt.UTC)
KEEP = dt.timedelta(days=7)

metadata = new_metadata()
seen = sa.Table(
    "seen_requests",
    metadata,
    sa.Column("request_id", sa.String(64), primary_key=True),
    sa.Column("method", sa.String(32), primary_key=True),
    sa.Column("create_time", UtcDateTime(), nullable=False),
    sa.Index("ix_seen_requests_create_time", "create_time"),
)


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    database = Database(database_url)
    async with database.begin() as conn:
        await conn.run_sync(metadata.create_all)
    yield database
    await database.dispose()


async def insert(db: Database, ages: dict[str, dt.timedelta]) -> None:
    async with db.begin() as conn:
        await conn.execute(
            seen.insert(),
            [
                {"request_id": rid, "method": m, "create_time": NOW - age}
                for rid, age in ages.items()
                for m in ("Submit", "Earn")
            ],
        )


async def left(db: Database) -> set[str]:
    async with db.begin() as conn:
        return set((await conn.execute(sa.select(seen.c.request_id))).scalars())


async def test_sweep_deletes_only_rows_older_than_the_retention(db: Database) -> None:
    ages = {f"old-{i}": KEEP + dt.timedelta(minutes=i + 1) for i in range(7)}
    ages |= {"new": dt.timedelta(hours=1), "edge": KEEP - dt.timedelta(seconds=1)}
    await insert(db, ages)
    sweeper = Sweeper(db, seen.c.create_time, keep=KEEP, every=3600, batch=3)
    statements: list[str] = []

    def count_deletes(_conn: object, _cursor: object, statement: str, *_: object) -> None:
        if statement.lstrip().upper().startswith("DELETE"):
            statements.append(statement)

    sa.event.listen(db.engine.sync_engine, "before_cursor_execute", count_deletes)
    try:
        assert await sweeper.sweep(NOW) == 14  # 7 ids x 2 methods
    finally:
        sa.event.remove(db.engine.sync_engine, "before_cursor_execute", count_deletes)
    assert len(statements) == 5  # batches of 3: 3+3+3+3+2
    assert await left(db) == {"new", "edge"}
    assert await sweeper.sweep(NOW) == 0


async def test_background_sweeps_until_stopped(db: Database) -> None:
    await insert(db, {"old": KEEP * 2, "new": dt.timedelta(0)})
    sweeper = Sweeper(db, seen.c.create_time, keep=KEEP, every=0.02, first=0.0, clock=lambda: NOW)
    sweeper.start()
    try:
        for _ in range(200):
            if await left(db) == {"new"}:
                break
            await asyncio.sleep(0.01)
        assert await left(db) == {"new"}
    finally:
        await sweeper.stop()
    assert all(not t.get_name().startswith("sweep-") for t in asyncio.all_tasks())


async def test_a_failed_sweep_is_logged_and_the_next_one_runs(
    db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    calls = {"n": 0}

    def clock() -> dt.datetime:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("clock broke")
        return NOW

    await insert(db, {"old": KEEP * 2})
    sweeper = Sweeper(db, seen.c.create_time, keep=KEEP, every=0.02, first=0.0, clock=clock)
    with caplog.at_level(logging.WARNING, logger="mesh.retention"):
        sweeper.start()
        try:
            for _ in range(200):
                if not await left(db):
                    break
                await asyncio.sleep(0.01)
        finally:
            await sweeper.stop()
    assert "sweeping seen_requests failed" in caplog.text
    assert await left(db) == set()


def test_bad_arguments_are_refused() -> None:
    db = Database("sqlite+aiosqlite:///:memory:")
    with pytest.raises(ValueError):
        Sweeper(db, seen.c.create_time, keep=dt.timedelta(0), every=1)
    with pytest.raises(ValueError):
        Sweeper(db, seen.c.create_time, keep=KEEP, every=0)
    with pytest.raises(ValueError):
        Sweeper(db, seen.c.create_time, keep=KEEP, every=1, batch=0)


def test_request_id_retention_comes_from_settings() -> None:
    settings = Settings.from_env(
        "lead",
        {"MARQUE_REQUEST_ID_RETENTION_DAYS": "2.5", "MARQUE_RETENTION_SWEEP_SECONDS": "60"},
    )
    assert (settings.request_id_retention_days, settings.retention_sweep_seconds) == (2.5, 60)
    sweeper = request_id_sweeper(
        Database("sqlite+aiosqlite:///:memory:"), seen.c.create_time, settings
    )
    assert sweeper.keep == dt.timedelta(days=2.5) and sweeper.every == 60
    for bad in ("0", "-1", "nan", "inf", "soon"):
        with pytest.raises(ValueError, match="MARQUE_REQUEST_ID_RETENTION_DAYS"):
            Settings.from_env("lead", {"MARQUE_REQUEST_ID_RETENTION_DAYS": bad})
    assert Settings.from_env("lead", {}).request_id_retention_days == 7.0

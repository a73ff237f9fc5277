"""mesh.unit_of_work and mesh.idempotency on both back ends (the `database_url` fixture)."""

from __future__ import annotations

import asyncio
import datetime as dt
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from mesh.db import Database
from mesh.idempotency import Request, RequestIdReused, RequestIds, request_ids_table
from mesh.identity import Caller, Kind
from mesh.schema import new_metadata
from mesh.unit_of_work import UnitOfWork, begin, transaction

metadata = new_metadata()
counters = sa.Table(
    "counters",
    metadata,
    sa.Column("name", sa.String(16), primary_key=True),
    sa.Column("value", sa.Integer, nullable=False),
)
events = sa.Table("events", metadata, sa.Column("id", sa.String(16), primary_key=True))
request_ids = request_ids_table(
    metadata, sa.Column("member_id", sa.String(40)), sa.Index("ix_request_ids_member", "member_id")
)
IDS = RequestIds(request_ids)
NOW = dt.datetime(2026, 12, 2, tzinfo=dt.UTC)


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    database = Database(database_url)
    async with database.engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
        await conn.execute(counters.insert().values(name="c", value=0))
    yield database
    await database.dispose()


async def value(db: Database) -> int:
    async with db.engine.connect() as conn:
        return int((await conn.execute(sa.select(counters.c.value))).scalar_one())


async def bump(uow: UnitOfWork) -> int:
    await uow.lock("counter:c")
    current = (
        await uow.conn.execute(sa.select(counters.c.value).where(counters.c.name == "c"))
    ).scalar_one()
    await asyncio.sleep(0)  # let a concurrent transaction try to interleave
    await uow.conn.execute(counters.update().values(value=current + 1))
    return int(current) + 1


async def test_concurrent_read_modify_writes_never_lose_an_update(db: Database) -> None:
    results = await asyncio.gather(*(transaction(db, bump) for _ in range(20)))
    assert sorted(results) == list(range(1, 21))
    assert await value(db) == 20


async def test_hooks_run_once_after_commit_even_when_retried(db: Database) -> None:
    attempts: list[int] = []
    ran: list[str] = []

    async def work(uow: UnitOfWork) -> str:
        attempts.append(1)
        uow.after_commit(lambda: ran.append("counted"))
        await uow.conn.execute(counters.update().values(value=len(attempts)))
        if len(attempts) < 3:  # a lost unique-key race, twice
            await uow.conn.execute(events.insert().values(id="dup"))
            await uow.conn.execute(events.insert().values(id="dup"))
        return "done"

    assert await transaction(db, work) == "done"
    assert (len(attempts), ran, await value(db)) == (3, ["counted"], 3)


async def test_a_failed_transaction_writes_nothing_and_runs_no_hook(db: Database) -> None:
    ran: list[str] = []

    async def work(uow: UnitOfWork) -> None:
        uow.after_commit(lambda: ran.append("x"))
        await uow.conn.execute(counters.update().values(value=99))
        raise ValueError("a rule said no")

    with pytest.raises(ValueError, match="a rule said no"):
        await transaction(db, work)
    assert (ran, await value(db)) == ([], 0)


async def test_request_ids_belong_to_the_caller_and_stand_for_one_request(db: Database) -> None:
    a, b = Caller(Kind.DEALER, "a", dealer_id="A"), Caller(Kind.DEALER, "b", dealer_id="B")
    first = Request.of(a, "r-1", "EarnPoints", "M1", 10)

    async def earn(req: Request, result: str) -> str | None:
        async def work(uow: UnitOfWork) -> str | None:
            return await IDS.claim(uow.conn, "EarnPoints", req, result, NOW, member_id="M1")

        return await transaction(db, work)

    assert await earn(first, "t-1") is None  # claimed: the caller does the work
    assert await earn(first, "t-2") == "t-1"  # a retry: the first result
    assert await earn(Request.of(b, "r-1", "EarnPoints", "M1", 10), "t-3") is None
    with pytest.raises(RequestIdReused) as err:
        await earn(Request.of(a, "r-1", "EarnPoints", "M1", 99), "t-4")
    assert err.value.reason == "REQUEST_ID_REUSED"
    assert [v.field for v in err.value.field_violations] == ["request_id"]

    async with db.engine.connect() as conn:
        rows = (await conn.execute(sa.select(request_ids.c.scope, request_ids.c.result))).all()
    assert sorted(rows) == [("dealer:a", "t-1"), ("dealer:b", "t-3")]


async def test_remember_and_prior(db: Database) -> None:
    req = Request("service:x", "r-9", "fp")

    async def first(uow: UnitOfWork) -> str | None:
        found = await IDS.prior(uow.conn, "Update", req)
        if found is None:
            await IDS.remember(uow.conn, "Update", req, "M1", NOW, member_id="M1")
        return found

    assert await transaction(db, first) is None
    assert await transaction(db, first) == "M1"
    erased = Request("service:x", "r-9", "erased-marker")

    async def after_erasure(uow: UnitOfWork) -> str | None:
        return await IDS.prior(uow.conn, "Update", erased, also="fp")

    assert await transaction(db, after_erasure) == "M1"


async def test_claim_accepts_the_second_fingerprint(db: Database) -> None:
    """An erased member's request id keeps only a non-personal fingerprint; the retry of the
    same request, which still carries the personal one, claims nothing and gets the result."""
    kept = Request("service:x", "r-7", "erased-marker")

    async def claim(req: Request, also: str | None) -> str | None:
        async def work(uow: UnitOfWork) -> str | None:
            return await IDS.claim(uow.conn, "Earn", req, "T1", NOW, also=also, member_id="M1")

        return await transaction(db, work)

    assert await claim(kept, None) is None
    retry = Request("service:x", "r-7", "personal-fp")
    assert await claim(retry, "erased-marker") == "T1"
    with pytest.raises(RequestIdReused):
        await claim(retry, "something-else")


def test_request_ids_table_takes_the_service_columns_and_indexes() -> None:
    assert {"member_id", "fingerprint", "result", "create_time"} <= set(request_ids.c.keys())
    indexes = {i.name: [c.name for c in i.columns] for i in request_ids.indexes}
    assert indexes == {
        "ix_request_ids_create_time": ["create_time"],
        "ix_request_ids_member": ["member_id"],
    }


# ---------------------------------------------------------------- SQLite: the one-hop begin

# Another process writing the counter at once (timeout 0: a locked database fails it).
_OTHER_WRITER = """
import sqlite3, sys
db = sqlite3.connect(sys.argv[1], timeout=0)
try:
    db.execute("UPDATE counters SET value = value + 1000")
    db.commit()
except sqlite3.OperationalError as e:
    print(e)
    sys.exit(3)
"""


async def other_process_writes(path: str) -> bool:
    """Whether another process could write the database just now."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _OTHER_WRITER, path, stdout=asyncio.subprocess.PIPE
    )
    out, _ = await proc.communicate()
    assert proc.returncode in (0, 3), out
    if proc.returncode == 3:
        assert b"locked" in out, out
    return proc.returncode == 0


@pytest.fixture
async def sqlite_db(tmp_path: Path) -> AsyncIterator[Database]:
    database = Database(f"sqlite+aiosqlite:///{tmp_path / 'uow.db'}")
    async with database.engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
        await conn.execute(counters.insert().values(name="c", value=0))
    yield database
    await database.dispose()


async def test_sqlite_begin_is_one_hand_over(
    sqlite_db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    import aiosqlite

    real = aiosqlite.Connection._execute
    hops: list[object] = []

    async def counted(self: aiosqlite.Connection, fn: object, *args: object) -> object:
        hops.append(fn)
        return await real(self, fn, *args)

    async with sqlite_db.engine.connect() as conn:
        monkeypatch.setattr(aiosqlite.Connection, "_execute", counted)
        await begin(conn)
        assert len(hops) == 1
        assert conn.in_transaction()
        await conn.rollback()


async def test_sqlite_holds_the_write_lock_from_its_start_and_commits_or_rolls_back(
    sqlite_db: Database,
) -> None:
    path = str(sqlite_db.url.database)
    seen: list[bool] = []

    async def work(uow: UnitOfWork) -> int:
        # Before the work has run a single statement, nobody else may write.
        seen.append(await other_process_writes(path))
        current = (await uow.conn.execute(sa.select(counters.c.value))).scalar_one()
        seen.append(await other_process_writes(path))
        await uow.conn.execute(counters.update().values(value=current + 1))
        return int(current) + 1

    assert await transaction(sqlite_db, work) == 1
    assert seen == [False, False]
    assert await value(sqlite_db) == 1  # committed, and nothing in between

    async def refused(uow: UnitOfWork) -> None:
        await uow.conn.execute(counters.update().values(value=99))
        seen.append(await other_process_writes(path))
        raise ValueError("a rule said no")

    with pytest.raises(ValueError):
        await transaction(sqlite_db, refused)
    assert seen[-1] is False
    assert await value(sqlite_db) == 1  # rolled back
    # Both ended their transaction: the lock is free again.
    assert await other_process_writes(path)
    assert await value(sqlite_db) == 1001

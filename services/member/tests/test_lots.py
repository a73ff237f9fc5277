"""The stored open lots (store/lots.py, migration 0006) and the bounded slow paths (issue 17).

- Whatever the writes (bursts of concurrent earns and redemptions committed in one points
  batch, redemptions beyond the head of the queue the batch reads, expiry, merges), the
  stored lots equal `ledger.open_lots` replayed from the whole ledger.
- The expiry path (`accounts.settle`), a qualifying-points cache that ran out
  (`accounts.refresh_qualifying`) and a page of the ledger read only what they need: on a
  member with thousands of entries, every statement they send is an index search (SQLite's
  query plan) and the rows they read stay within the lots due, the credits that left the
  window or the page (PostgreSQL, tables never analysed: EXPLAIN ANALYZE of each
  statement, rows read by every scan counted).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncConnection

from mesh.db import Database
from mesh.errors import FailedPrecondition
from mesh.unit_of_work import UnitOfWork
from services.member import accounts, store
from services.member.domain import ledger, tiers
from services.member.domain.identities import IdentityKey, IdentityType
from services.member.domain.model import MemberRecord
from services.member.store import MIGRATIONS
from services.member.store.batch import LOT_HEAD
from services.member.tests.direct import Direct, W, direct
from services.member.tests.direct import w as write
from services.member.tests.test_qualifying import replayed_lots, stored_lots

T0 = dt.datetime(2025, 5, 31, 8, 0, tzinfo=dt.UTC)
_ids = itertools.count()
BURSTS, PER_BURST = 40, 64  # 2,560 credits, a burst a minute


@contextmanager
def caught_statements(conn: AsyncConnection) -> Iterator[list[tuple[str, Any]]]:
    """Every statement `conn` sends, with its parameters as the driver got them."""
    sent: list[tuple[str, Any]] = []

    def catch(_c: Any, _cur: Any, statement: str, params: Any, _ctx: Any, _many: bool) -> None:
        sent.append((statement, params))

    sync = conn.sync_connection
    assert sync is not None
    event.listen(sync, "before_cursor_execute", catch)
    try:
        yield sent
    finally:
        event.remove(sync, "before_cursor_execute", catch)


def w(now: dt.datetime) -> W:
    return write(f"l{next(_ids)}", now)


async def new_member(s: Direct, now: dt.datetime) -> MemberRecord:
    key = IdentityKey(IdentityType.APP_USER_ID, f"l-{next(_ids)}")
    m, _ = await s.register(w(now), key, "", "")
    return m


async def burst(s: Direct, member_id: str, now: dt.datetime, writes: list[int]) -> None:
    """Concurrent writes at `now` (one points batch): positive earns, negative redeems."""

    async def one(points: int) -> None:
        try:
            if points > 0:
                await s.earn(w(now), member_id, points, "visit", "")
            else:
                await s.redeem(w(now), member_id, -points, "gift", "")
        except FailedPrecondition:
            pass  # not enough points: refused alone

    await asyncio.gather(*(one(p) for p in writes))


async def assert_lots_match(s: Direct, *member_ids: str) -> None:
    for m in member_ids:
        assert await stored_lots(s, m) == await replayed_lots(s, m)
        lots = await stored_lots(s, m)
        assert sum(lot.remaining for lot in lots) == await s.ledger_sum(m)


STEP = st.one_of(
    st.tuples(st.just("burst"), st.lists(st.integers(-400, 300).filter(bool), max_size=40)),
    st.tuples(st.just("advance"), st.sampled_from([60, 86_400 * 30, 86_400 * 365 * 2])),
    st.tuples(st.just("merge"), st.integers(1, 500)),
)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(steps=st.lists(STEP, min_size=1, max_size=8))
def test_stored_lots_equal_the_replayed_ledger(database_url: str, steps: list[Any]) -> None:
    async def run() -> None:
        async with direct(database_url) as s:
            now = T0
            m = await new_member(s, now)
            # More lots than a batch reads of the head: redemptions beyond it are Slow.
            await burst(s, m.id, now, [1] * (LOT_HEAD + 8))
            for kind, value in steps:
                if kind == "burst":
                    await burst(s, m.id, now, value)
                elif kind == "advance":
                    now += dt.timedelta(seconds=value)
                    await s.get_member(m.id, now)  # expires what is due
                else:
                    loser = await new_member(s, now)
                    await s.earn(w(now), loser.id, value, "visit", "")
                    await s.merge(w(now), m.id, loser.id, "same person")
                    await assert_lots_match(s, loser.id)
                await assert_lots_match(s, m.id)

    asyncio.run(run())


async def busy_member(s: Direct) -> str:
    """A member with BURSTS x PER_BURST credits, a burst a minute from T0."""
    m = await new_member(s, T0)
    for i in range(BURSTS):
        await burst(s, m.id, T0 + dt.timedelta(minutes=i), [10] * PER_BURST)
    return m.id


async def statements_of(db: Database, work: Any) -> list[tuple[str, Any]]:
    """The statements `work(uow)` sends in a transaction that is rolled back afterwards."""
    async with db.engine.connect() as conn:
        await conn.begin()
        uow = UnitOfWork(conn, is_sqlite=conn.dialect.name == "sqlite")
        with caught_statements(conn) as sent:
            await work(uow)
        await conn.rollback()
    return sent


async def rows_read(conn: AsyncConnection, statement: str, params: Any) -> int:
    """Rows a statement reads: SQLite, the rows it returns, its plan an index search;
    PostgreSQL, every scan node's rows, kept and filtered out (EXPLAIN ANALYZE)."""
    raw = await conn.get_raw_connection()
    if conn.dialect.name == "sqlite":
        plan = await conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", params)
        details = [r[-1] for r in plan]
        assert all(d.startswith(("SEARCH", "USE TEMP")) for d in details), details
        return len((await conn.exec_driver_sql(statement, params)).all())
    cur = await raw.driver_connection.execute(  # type: ignore[union-attr]
        f"EXPLAIN (ANALYZE, FORMAT JSON) {statement}", params
    )
    (doc,) = (await cur.fetchone())[0]
    return _scanned(doc["Plan"])


def _scanned(node: dict[str, Any]) -> int:
    own = 0
    # A bitmap's heap scan reads the rows its index scan found: counted once.
    if "Scan" in node["Node Type"] and node["Node Type"] != "Bitmap Index Scan":
        assert node["Node Type"] != "Seq Scan", node
        loops = node.get("Actual Loops", 1)
        own = (node["Actual Rows"] + node.get("Rows Removed by Filter", 0)) * loops
    return own + sum(_scanned(child) for child in node.get("Plans", ()))


async def total_read(db: Database, sent: list[tuple[str, Any]]) -> int:
    selects = [(q, p) for q, p in sent if q.lstrip().upper().startswith("SELECT")]
    assert selects
    async with db.engine.connect() as conn:
        return sum([await rows_read(conn, q, p) for q, p in selects])


@pytest.fixture
async def busy(database_url: str) -> Any:
    async with direct(database_url) as s:
        # Never analysed (PostgreSQL): plans must not need the statistics (store/plans.py).
        yield s, await busy_member(s)


async def test_expiry_reads_the_due_lots_only(busy: tuple[Direct, str]) -> None:
    s, member_id = busy
    now = ledger.add_months(T0, ledger.DEFAULT_EXPIRY_MONTHS)  # the first burst is due

    async def settle(uow: UnitOfWork) -> None:
        row = await accounts.lock(uow, member_id)
        assert row.next_expiry is not None and row.next_expiry <= now
        assert await accounts.settle(uow, row, now) == (BURSTS - 1) * PER_BURST * 10

    read = await total_read(s.db, await statements_of(s.db, settle))
    # The member's row, the due lots (one by one as each closes), the first expiry left.
    assert read <= 3 * PER_BURST + 8, read


async def test_a_cache_that_ran_out_reads_the_credits_that_left(busy: tuple[Direct, str]) -> None:
    s, member_id = busy
    now = ledger.add_months(T0, tiers.WINDOW_MONTHS) + dt.timedelta(seconds=1)

    async def refresh(uow: UnitOfWork) -> None:
        row = await accounts.lock(uow, member_id)
        assert row.cache.at(now) is None
        total = await accounts.refresh_qualifying(uow, member_id, now, row.cache)
        assert total == (BURSTS - 1) * PER_BURST * 10

    read = await total_read(s.db, await statements_of(s.db, refresh))
    assert read <= PER_BURST + 8, read


# A 0005 ledger: A and B earned, 50 redeemed (from A), A's rest expired, C earned, 30
# redeemed (from B): open lots B 70, C 100.
_OLD_LEDGER = [
    ("pt_a", "earn", 100, 0, 400),
    ("pt_b", "earn", 100, 1, 500),
    ("pt_r1", "redeem", -50, 2, None),
    ("pt_x", "expire", -50, 3, None),
    ("pt_c", "earn", 100, 4, 600),
    ("pt_r2", "redeem", -30, 5, None),
]


async def test_a_page_of_the_ledger_reads_the_page(busy: tuple[Direct, str]) -> None:
    s, member_id = busy
    for before in (None, BURSTS * PER_BURST // 2):
        async with s.db.engine.connect() as conn:
            with caught_statements(conn) as sent:
                page = await store.points.list_transactions(conn, member_id, before, 51)
        assert len(page) == 51
        assert await total_read(s.db, sent) <= 51 + 2


async def test_upgrade_fills_the_lots_from_the_ledger(database_url: str) -> None:
    """A database at 0005 with a ledger (credits, FIFO debits, an expiry) upgrades to lots
    equal to its replay, and the service goes on from them."""
    db = Database(database_url)
    try:
        assert await db.migrate(MIGRATIONS, "0005") == "0005"
        async with db.begin() as conn:
            await conn.execute(
                sa.text(
                    "INSERT INTO members (id, state, balance, next_expiry, create_time,"
                    " create_actor, update_time, update_actor) VALUES ('m_old', 'active', 170,"
                    " :exp, :t, 'x', :t, 'x')"
                ),
                {"t": T0, "exp": T0 + dt.timedelta(days=500)},
            )
            for id_, kind, points, day, expire in _OLD_LEDGER:
                at = T0 + dt.timedelta(days=day)
                await conn.execute(
                    store.tables.point_transactions.insert().values(
                        id=id_, member_id="m_old", kind=kind, points=points,
                        balance_after=0, actor="x", create_time=at,
                        expire_time=None if expire is None else T0 + dt.timedelta(days=expire),
                        earned_time=at if expire is not None else None,
                        lot_id="pt_a" if kind == "expire" else None,
                    )
                )  # fmt: skip
        assert await db.migrate(MIGRATIONS) == "0007"
        s = Direct(db)
        lots = await stored_lots(s, "m_old")
        assert [(lot.id, lot.remaining) for lot in lots] == [("pt_b", 70), ("pt_c", 100)]
        assert lots == await replayed_lots(s, "m_old")
        now = T0 + dt.timedelta(days=501)  # B expires first, then 50 of C are redeemed
        _, got = await s.redeem(w(now), "m_old", 50, "gift", "")
        assert got.balance == 50
        await assert_lots_match(s, "m_old")
        await s.close()
    finally:
        await db.dispose()


async def test_the_batch_finds_request_ids_by_their_whole_key(
    busy: tuple[Direct, str], database_url: str
) -> None:
    """The points batch's request-id lookup on PostgreSQL reads one index entry per key,
    not every request id of the caller (it did: a list per column, searched on `scope`)."""
    if database_url.startswith("sqlite"):
        pytest.skip("SQLite searches the primary key on all three columns (IN lists)")
    s, _ = busy
    async with s.db.engine.connect() as conn:
        r = store.tables.request_ids.c
        rids = await conn.scalars(sa.select(r.request_id).where(r.method == "EarnPoints").limit(64))
        keys = [{"scope": "service:test", "method": "EarnPoints", "request_id": r} for r in rids]
        await conn.exec_driver_sql("SET LOCAL enable_seqscan = off")  # as the lookup does
        raw = await conn.get_raw_connection()
        cur = await raw.driver_connection.execute(  # type: ignore[union-attr]
            f"EXPLAIN (ANALYZE, FORMAT JSON) {store.batch_postgres._REQUESTS}",
            (json.dumps(keys),),
        )
        (doc,) = (await cur.fetchone())[0]
    assert doc["Plan"]["Actual Rows"] == len(keys) == 64
    assert _scanned(doc["Plan"]) <= 2 * len(keys)

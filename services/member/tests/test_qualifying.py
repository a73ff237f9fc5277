"""The cached qualifying points on the member row (migration 0002) against the ledger:
whatever the sequence of earns, redemptions and clock moves (across month ends, leap days
and the exact moment a credit leaves the 12-month window), the member's qualifying points
equal the rolling-window sum over the ledger, the tier follows them, and the balance
equals the ledger sum and is never negative; on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
from collections.abc import AsyncIterator

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mesh.db import Database
from mesh.errors import FailedPrecondition
from services.member import store
from services.member.domain import ledger, tiers
from services.member.domain.errors import INSUFFICIENT_POINTS
from services.member.domain.identities import IdentityKey, IdentityType
from services.member.domain.model import MemberRecord
from services.member.store import MIGRATIONS, tables
from services.member.tests.direct import Direct, W, direct
from services.member.tests.direct import w as write

T0 = dt.datetime(2024, 1, 31, 12, 0, tzinfo=dt.UTC)  # a month end, in a leap year
_ids = itertools.count()


def w(now: dt.datetime) -> W:
    return write(f"q{next(_ids)}", now)


async def ledger_qualifying(s: Direct, member_id: str, now: dt.datetime) -> int:
    """The rolling-window sum computed the slow way: every credit of the ledger."""
    pt = tables.point_transactions.c
    async with s.db.engine.connect() as conn:
        rows = (
            await conn.execute(
                sa.select(pt.earned_time, pt.points).where(
                    pt.member_id == member_id, pt.kind.in_(["earn", "merge_in"])
                )
            )
        ).all()
    return tiers.qualifying_points([(r.earned_time, r.points) for r in rows], now)


async def check(s: Direct, member: MemberRecord, now: dt.datetime) -> None:
    expected = await ledger_qualifying(s, member.id, now)
    assert member.qualifying_points == expected
    fresh = await s.get_member(member.id, now)
    assert fresh.qualifying_points == expected
    assert fresh.tier == tiers.tier_for(expected, s.config.tiers).code
    assert fresh.balance == await s.ledger_sum(member.id) >= 0
    assert await stored_lots(s, member.id) == await replayed_lots(s, member.id)


async def stored_lots(s: Direct, member_id: str) -> list[ledger.Lot]:
    """The open lots the store keeps (store/lots.py)."""
    async with s.db.engine.connect() as conn:
        return await store.lots.open_lots(conn, member_id)


async def replayed_lots(s: Direct, member_id: str) -> list[ledger.Lot]:
    """The open lots replayed from the whole ledger: what the stored ones must equal."""
    async with s.db.engine.connect() as conn:
        return ledger.open_lots(await store.points.entries(conn, member_id))


@pytest.fixture
async def member_store(database_url: str) -> AsyncIterator[Direct]:
    async with direct(database_url) as d:
        yield d


async def new_member(s: Direct, now: dt.datetime) -> MemberRecord:
    n = next(_ids)
    m, _ = await s.register(w(now), IdentityKey(IdentityType.APP_USER_ID, f"q-{n}"), "", "")
    return m


async def test_window_edges_across_month_ends_and_leap_days(member_store: Direct) -> None:
    s = member_store
    m = await new_member(s, T0)
    earns = [
        (T0, 600),  # 31 Jan 2024: leaves when add_months(now, -12) reaches it
        (dt.datetime(2024, 2, 29, 9, 0, tzinfo=dt.UTC), 500),  # leap day
        (dt.datetime(2024, 3, 31, 23, 59, 59, tzinfo=dt.UTC), 4000),
    ]
    for at, points in earns:
        _, got = await s.earn(w(at), m.id, points, "visit", "")
        await check(s, got, at)
    assert got.tier == "GOLD"
    probes = [
        dt.datetime(2025, 1, 31, 11, 59, 59, tzinfo=dt.UTC),  # all three still in
        dt.datetime(2025, 1, 31, 12, 0, tzinfo=dt.UTC),  # the first just left
        dt.datetime(2025, 2, 28, 8, 59, 59, tzinfo=dt.UTC),
        dt.datetime(2025, 2, 28, 9, 0, tzinfo=dt.UTC),  # 28 Feb 2025 - 12 months = 28 Feb
        dt.datetime(2025, 3, 1, 0, 0, tzinfo=dt.UTC),  # the leap-day credit has left
        dt.datetime(2025, 3, 31, 23, 59, 58, tzinfo=dt.UTC),
        dt.datetime(2025, 3, 31, 23, 59, 59, tzinfo=dt.UTC),  # nothing left
    ]
    for now in probes:
        await check(s, await s.get_member(m.id, now), now)
    # An earn after everything left: the slow path recomputes, then the cache holds.
    _, got = await s.earn(w(probes[-1]), m.id, 10, "visit", "")
    await check(s, got, probes[-1])
    later = probes[-1] + dt.timedelta(days=40)
    _, got = await s.earn(w(later), m.id, 20, "visit", "")
    assert got.qualifying_points == 30
    await check(s, got, later)
    changes = await s.list_tier_changes(m.id, None, 10)
    assert [(c.from_tier, c.to_tier) for c in reversed(changes)] == [
        ("", "SILVER"),
        ("SILVER", "GOLD"),
        ("GOLD", "SILVER"),
        ("SILVER", ""),
    ]


async def test_merge_and_a_clock_set_back_invalidate_the_cache(member_store: Direct) -> None:
    s = member_store
    winner, loser = await new_member(s, T0), await new_member(s, T0)
    await s.earn(w(T0), loser.id, 700, "visit", "")
    later = T0 + dt.timedelta(days=200)
    await s.earn(w(later), winner.id, 400, "visit", "")
    merged, _ = await s.merge(w(later), winner.id, loser.id, "same person")
    assert merged.qualifying_points == 1100
    await check(s, merged, later)
    # The loser's lot keeps its earn time: it leaves the winner's window on its own date.
    gone = ledger.add_months(T0, 12)
    _, got = await s.earn(w(gone), winner.id, 1, "visit", "")
    assert got.qualifying_points == 401
    await check(s, got, gone)
    # A clock set back (a test clock, a corrected host) never counts a credit dated later.
    back = later - dt.timedelta(days=1)
    _, got = await s.redeem(w(back), winner.id, 5, "gift", "")
    assert got.qualifying_points == 700
    await check(s, got, back)


async def test_upgrade_from_0001_recomputes_from_the_ledger(database_url: str) -> None:
    db = Database(database_url)
    s = Direct(db)
    try:
        assert await db.migrate(MIGRATIONS, "0001") == "0001"
        async with db.begin() as conn:
            await conn.execute(
                sa.text(
                    "INSERT INTO members (id, state, balance, next_expiry, create_time,"
                    " create_actor, update_time, update_actor) VALUES ('m_old', 'active', 1200,"
                    " :exp, :t, 'x', :t, 'x')"
                ),
                {"t": T0, "exp": ledger.add_months(T0, 24)},
            )
            await conn.execute(
                sa.text(
                    "INSERT INTO point_transactions (id, member_id, kind, points, balance_after,"
                    " actor, create_time, expire_time, earned_time) VALUES"
                    " ('pt_old', 'm_old', 'earn', 1200, 1200, 'x', :t, :exp, :t)"
                ),
                {"t": T0, "exp": ledger.add_months(T0, 24)},
            )
        assert await db.migrate(MIGRATIONS) == "0007"
        now = T0 + dt.timedelta(days=1)
        got = await s.get_member("m_old", now)
        assert (got.qualifying_points, got.tier) == (1200, "SILVER")
        _, got = await s.earn(w(now), "m_old", 10, "visit", "")
        assert (got.qualifying_points, got.balance) == (1210, 1210)
        await check(s, got, now)
    finally:
        await s.close()
        await db.dispose()


STEP = st.one_of(
    st.tuples(st.just("earn"), st.integers(1, 3000)),
    st.tuples(st.just("redeem"), st.integers(1, 3000)),
    st.tuples(
        st.just("advance"),
        st.one_of(
            st.sampled_from([1, 3600, 86_400 * 28, 86_400 * 30, 86_400 * 31, 86_400 * 365]),
            st.integers(1, 86_400 * 400),
        ),
    ),
    # Jump to the exact moment the oldest credit so far leaves the window, or just before.
    st.tuples(st.just("edge"), st.sampled_from([-1, 0])),
)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(steps=st.lists(STEP, min_size=1, max_size=25))
def test_any_sequence_keeps_cache_equal_to_ledger(
    database_url: str, steps: list[tuple[str, int]]
) -> None:
    async def run() -> None:
        db = Database(database_url)
        s = Direct(db)
        try:
            await db.migrate(MIGRATIONS)
            now = T0
            m = await new_member(s, now)
            earned: list[dt.datetime] = []
            for kind, value in steps:
                if kind == "advance":
                    now += dt.timedelta(seconds=value)
                    got = await s.get_member(m.id, now)
                elif kind == "edge":
                    if earned:
                        edge = ledger.add_months(earned[0], 12) + dt.timedelta(seconds=value)
                        now = max(now, edge)
                    got = await s.get_member(m.id, now)
                elif kind == "earn":
                    _, got = await s.earn(w(now), m.id, value, "visit", "")
                    earned.append(now)
                else:
                    try:
                        _, got = await s.redeem(w(now), m.id, value, "gift", "")
                    except FailedPrecondition as e:
                        assert e.reason == INSUFFICIENT_POINTS
                        got = await s.get_member(m.id, now)
                await check(s, got, now)
        finally:
            await s.close()
            await db.dispose()

    asyncio.run(run())

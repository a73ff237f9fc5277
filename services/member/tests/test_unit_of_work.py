"""Every write is one `mesh.unit_of_work` transaction: a lost race or a serialization
failure rolls the whole change back and runs it again, and the domain metrics count what
committed, once (before, a retried EarnPoints counted its points twice). On SQLite and
PostgreSQL, the engine driven directly."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import sqlalchemy as sa
from prometheus_client import REGISTRY
from sqlalchemy.exc import IntegrityError

from mesh.errors import FailedPrecondition
from services.member import store
from services.member.domain.identities import IdentityKey, IdentityType
from services.member.store import tables
from services.member.tests.direct import OEM, Direct, direct, w

T0 = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)


@pytest.fixture
async def member_store(database_url: str) -> AsyncIterator[Direct]:
    async with direct(database_url) as d:
        yield d


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def fail_once(
    monkeypatch: pytest.MonkeyPatch, module: Any, name: str, *, before: bool = False
) -> list[int]:
    """Make `module.name` lose a unique-key race the first time it runs (after doing its
    work, as a real insert would; `before` it, for a step that commits what it wrote); the
    calls are counted in the list returned."""
    real: Callable[..., Awaitable[Any]] = getattr(module, name)
    calls: list[int] = []

    async def flaky(*args: Any, **kwargs: Any) -> Any:
        if before and not calls:
            calls.append(1)
            raise IntegrityError("INSERT ...", {}, Exception("a twin got there first"))
        result = await real(*args, **kwargs)
        calls.append(1)
        if len(calls) == 1:
            raise IntegrityError("INSERT ...", {}, Exception("a twin got there first"))
        return result

    monkeypatch.setattr(module, name, flaky)
    return calls


async def count_rows(d: Direct, table: sa.Table, member_id: str) -> int:
    async with d.db.engine.connect() as conn:
        query = sa.select(sa.func.count()).select_from(table).where(table.c.member_id == member_id)
        return int((await conn.execute(query)).scalar_one())


async def test_a_retried_earn_books_and_counts_once(
    member_store: Direct, monkeypatch: pytest.MonkeyPatch
) -> None:
    d = member_store
    m, _ = await d.register(w("r", T0), IdentityKey(IdentityType.MOBILE, "+8613800000101"), "", "")
    earned = sample("marque_points_total", direction="earn")
    silver = sample("marque_member_tier_changes_total", to="SILVER")
    # The group-committed batch writes everything (entry, points, tier change, request id)
    # and commits in one call: it loses a race there, and the batch runs again from its
    # lookup; what the first attempt decided (and would have counted) is dropped.
    calls = fail_once(monkeypatch, store, "batch_write", before=True)
    txn, member = await d.earn(w("e1", T0), m.id, 1500, "purchase", "order-1")
    assert len(calls) == 2, "the transaction ran twice"
    assert (member.balance, member.tier) == (1500, "SILVER")
    assert sample("marque_points_total", direction="earn") - earned == 1500
    assert sample("marque_member_tier_changes_total", to="SILVER") - silver == 1
    assert await d.ledger_sum(m.id) == 1500
    assert await count_rows(d, tables.point_transactions, m.id) == 1
    assert await count_rows(d, tables.tier_changes, m.id) == 1
    # The request id was remembered once, by the attempt that committed.
    again, _ = await d.earn(w("e1", T0), m.id, 1500, "purchase", "order-1")
    assert again == txn
    assert sample("marque_points_total", direction="earn") - earned == 1500


async def test_rolled_back_work_counts_nothing(
    member_store: Direct, monkeypatch: pytest.MonkeyPatch
) -> None:
    d = member_store
    key = IdentityKey(IdentityType.MOBILE, "+8613800000102")
    created = sample("marque_members_registered_total", outcome="created")
    existing = sample("marque_members_registered_total", outcome="existing")
    calls = fail_once(monkeypatch, store.members, "insert_identity")
    m, was_new = await d.register(w("r1", T0), key, "Li Lei", "")
    assert was_new and len(calls) == 2
    assert sample("marque_members_registered_total", outcome="created") - created == 1
    assert sample("marque_members_registered_total", outcome="existing") == existing
    # Erasure: counted once, when it commits.
    erasures = sample("marque_member_erasures_total")
    calls = fail_once(monkeypatch, store.requests, "set_fingerprint")
    await d.at(T0).erase(m.id, req=w("x1", T0).req, caller=OEM)
    assert len(calls) >= 2
    assert sample("marque_member_erasures_total") - erasures == 1


async def test_a_refused_redemption_counts_once_and_books_nothing(member_store: Direct) -> None:
    d = member_store
    m, _ = await d.register(w("r", T0), IdentityKey(IdentityType.MOBILE, "+8613800000103"), "", "")
    await d.earn(w("e", T0), m.id, 10, "x", "")
    refused = sample("marque_points_redeem_refused_total")
    with pytest.raises(FailedPrecondition) as e:
        await d.redeem(w("d", T0), m.id, 11, "coupon", "")
    assert e.value.reason == "INSUFFICIENT_POINTS"
    assert sample("marque_points_redeem_refused_total") - refused == 1
    assert await count_rows(d, tables.point_transactions, m.id) == 1


async def test_concurrent_first_registrations_race_and_make_one_member(
    member_store: Direct,
) -> None:
    """Two engines (two processes) registering one new mobile at once: on PostgreSQL the
    loser's insert waits on uq_identities_live, fails when the winner commits and is
    retried; both answer the one member."""
    d = member_store
    other = Direct(d.db)
    key = IdentityKey(IdentityType.MOBILE, "+8613800000104")
    created = sample("marque_members_registered_total", outcome="created")
    (a, new_a), (b, new_b) = await asyncio.gather(
        d.register(w("ra", T0), key, "", ""), other.register(w("rb", T0), key, "", "")
    )
    assert a.id == b.id and sorted([new_a, new_b]) == [False, True]
    assert sample("marque_members_registered_total", outcome="created") - created == 1

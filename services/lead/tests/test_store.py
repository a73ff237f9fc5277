"""The store and the group-commit engine on SQLite and PostgreSQL (`database_url`).

These go below the gRPC layer on purpose: concurrency across processes is simulated with
two `Database` engines on one database, which a single in-process server cannot show.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator
from dataclasses import replace

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from mesh.db import Database
from mesh.errors import InvalidArgument
from mesh.idempotency import RequestIdReused
from mesh.identity import Caller, Kind
from services.lead import store
from services.lead.domain.config import LeadConfig
from services.lead.domain.model import Channel, Dealer, LeadInput, SubmitOutcome, TimeFrame
from services.lead.engine import ImportRow, LeadEngine
from services.lead.intake_writer import new_lead_id
from services.lead.store import MIGRATIONS

SERVICE = Caller(Kind.SERVICE, "test", service="test")
DIGEST_KEY = b"test-contact-digest-key-of-32-bytes!"


def lead_input(mobile: str = "13800138000", **changes: object) -> LeadInput:
    base = LeadInput(
        channel=Channel.AUTOHOME,
        name="Li Lei",
        mobile=mobile,
        city="Shanghai",
        province="Shanghai",
        brand="Marque",
        series="M5",
        model="M5 Long Range",
        time_frame=TimeFrame.WITHIN_15_DAYS,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


SHANGHAI = [
    Dealer("SH1", "Shanghai One", ("Marque",), "Shanghai", "Shanghai", 3),
    Dealer("SH2", "Shanghai Two", ("Marque",), "Shanghai", "Shanghai", 3),
]


async def open_engine(url: str, *, migrate: bool = True) -> LeadEngine:
    db = Database(url)
    if migrate:
        await db.migrate(MIGRATIONS)
    engine = LeadEngine(db, LeadConfig(), secret=DIGEST_KEY)
    await engine.start()
    return engine


async def close(engine: LeadEngine) -> None:
    await engine.stop()
    await engine.db.dispose()


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[LeadEngine]:
    e = await open_engine(database_url)
    await e.seed_dealers(SHANGHAI)
    yield e
    await close(e)


async def count(engine: LeadEngine, table: sa.Table) -> int:
    async with engine.db.engine.connect() as conn:
        return int((await conn.execute(sa.select(sa.func.count()).select_from(table))).scalar_one())


async def test_migration_matches_the_tables(database_url: str) -> None:
    db = Database(database_url)
    assert await db.migrate(MIGRATIONS) == "0006"

    def diff(conn: sa.Connection) -> list[object]:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        return list(compare_metadata(ctx, store.metadata))

    async with db.engine.connect() as conn:
        assert await conn.run_sync(diff) == []
    await db.dispose()


async def test_create_retry_resend_merge(engine: LeadEngine) -> None:
    first = await engine.submit(
        lead_input(request_id="r1", channel_lead_id="ah-1"), SERVICE, "sha256:1"
    )
    assert first.outcome is SubmitOutcome.CREATED
    assert first.lead.mobile_e164 == "+8613800138000"
    assert first.lead.dealer_id in {"SH1", "SH2"}

    retry = await engine.submit(
        lead_input(request_id="r1", channel_lead_id="ah-1"), SERVICE, "sha256:1"
    )
    resend = await engine.submit(
        lead_input(request_id="r2", channel_lead_id="ah-1"), SERVICE, "sha256:1"
    )
    assert (retry.outcome, resend.outcome) == (SubmitOutcome.DUPLICATE, SubmitOutcome.DUPLICATE)
    assert retry.lead.id == resend.lead.id == first.lead.id

    merged = await engine.submit(
        lead_input(
            "+86 138-0013-8000",
            channel=Channel.YICHE,
            channel_lead_id="yc-9",
            request_id="r3",
            time_frame=TimeFrame.WITHIN_7_DAYS,
        ),
        SERVICE,
        "sha256:2",
    )
    assert merged.outcome is SubmitOutcome.MERGED
    assert merged.lead.id == first.lead.id
    assert [t.channel for t in merged.lead.touchpoints] == [Channel.AUTOHOME, Channel.YICHE]
    assert merged.lead.grade.value == "H"
    assert await count(engine, store.leads) == 1
    assert await count(engine, store.touchpoints) == 2
    # A retry of the merge (the same request again) changes nothing either.
    again = await engine.submit(
        lead_input(
            "+86 138-0013-8000",
            channel=Channel.YICHE,
            channel_lead_id="yc-9",
            request_id="r3",
            time_frame=TimeFrame.WITHIN_7_DAYS,
        ),
        SERVICE,
        "sha256:2",
    )
    assert again.outcome is SubmitOutcome.DUPLICATE
    # The same request id with another request is refused, and changes nothing.
    with pytest.raises(RequestIdReused):
        await engine.submit(
            lead_input("13800138000", channel=Channel.YICHE, request_id="r3"), SERVICE, "x"
        )
    assert await count(engine, store.touchpoints) == 2


async def test_one_batch_many_submissions_one_transaction(engine: LeadEngine) -> None:
    before = engine.writer.batches
    inputs = [lead_input(f"139{i:08d}", request_id=f"b{i}") for i in range(200)]
    # The same mobile three times in the batch: one create, then two merges.
    inputs += [lead_input("13700000001", request_id=f"m{i}") for i in range(3)]
    results = await asyncio.gather(*(engine.submit(i, SERVICE, "x") for i in inputs))
    assert engine.writer.batches - before < 20
    outcomes = [r.outcome for r in results]
    assert outcomes.count(SubmitOutcome.CREATED) == 201
    assert outcomes.count(SubmitOutcome.MERGED) == 2
    assert await count(engine, store.leads) == 201
    assert await count(engine, store.touchpoints) == 203


async def test_concurrent_same_mobile_from_two_processes_is_one_lead(database_url: str) -> None:
    a = await open_engine(database_url)
    await a.seed_dealers(SHANGHAI)
    b = await open_engine(database_url, migrate=False)
    try:
        subs = []
        for i in range(30):
            e = a if i % 2 else b
            subs.append(e.submit(lead_input(request_id=f"c{i}"), SERVICE, "x"))
            subs.append(e.submit(lead_input(f"1390000{i:04d}", request_id=f"d{i}"), SERVICE, "x"))
        results = await asyncio.gather(*subs)
        same = [r for r in results if r.lead.mobile_e164 == "+8613800138000"]
        assert len({r.lead.id for r in same}) == 1
        assert [r.outcome for r in same].count(SubmitOutcome.CREATED) == 1
        assert await count(a, store.leads) == 31
        assert await count(a, store.touchpoints) == 60
    finally:
        await close(b)
        await close(a)


async def test_routing_stays_within_capacity_across_processes(database_url: str) -> None:
    a = await open_engine(database_url)
    await a.seed_dealers(SHANGHAI)
    b = await open_engine(database_url, migrate=False)
    try:
        results = await asyncio.gather(
            *(
                (a if i % 2 else b).submit(lead_input(f"1360000{i:04d}"), SERVICE, "x")
                for i in range(20)
            )
        )
        per_dealer: dict[str | None, int] = {}
        for r in results:
            per_dealer[r.lead.dealer_id] = per_dealer.get(r.lead.dealer_id, 0) + 1
        assert per_dealer == {"SH1": 3, "SH2": 3, None: 14}
        async with a.db.engine.connect() as conn:
            loads = dict(
                (
                    await conn.execute(
                        sa.select(store.dealer_load.c.dealer_id, store.dealer_load.c.assigned)
                    )
                ).all()
            )
        assert loads == {"SH1": 3, "SH2": 3}
    finally:
        await close(b)
        await close(a)


async def test_bad_input_writes_nothing(engine: LeadEngine) -> None:
    with pytest.raises(InvalidArgument) as err:
        await engine.submit(lead_input("021 6555 1234", name=""), SERVICE, "x")
    fields = {v.field for v in err.value.field_violations}
    assert {"lead.customer.mobile", "lead.customer.name"} <= fields
    assert await count(engine, store.leads) == 0
    assert await count(engine, store.touchpoints) == 0
    assert await count(engine, store.request_ids) == 0


async def test_import_in_chunks_reports_rows(engine: LeadEngine) -> None:
    n = 1200

    async def rows() -> AsyncIterator[ImportRow]:
        for i in range(1, n + 1):
            mobile = "021 6555 1234" if i % 100 == 0 else f"135{i:08d}"
            if i % 250 == 0:
                mobile = "13500000001"  # row 1's mobile: a merge
            yield i, lead_input(mobile, channel=Channel.BULK_IMPORT), b"row"
        yield n + 1, InvalidArgument.for_field("channel", "required"), b""

    summary = await engine.import_rows(rows(), SERVICE)
    assert summary.received == n + 1
    assert summary.merged == 4
    assert summary.rejected == 10 + 1  # rows 500 and 1000 are merges, not landlines
    assert summary.created == n - 10 - 4
    assert [row for row, _ in summary.rejections][:3] == [100, 200, 300]
    assert summary.rejections[-1][0] == n + 1
    assert summary.rejections[0][1].field == "lead.customer.mobile"
    assert await count(engine, store.leads) == summary.created


async def test_update_status_is_idempotent_and_scoped(engine: LeadEngine) -> None:
    lead = (await engine.submit(lead_input(), SERVICE, "x")).lead
    owner = Caller(Kind.DEALER, "u1", dealer_id=lead.dealer_id)
    other = Caller(Kind.DEALER, "u2", dealer_id="SH1" if lead.dealer_id == "SH2" else "SH2")
    from mesh.errors import FailedPrecondition, NotFound
    from services.lead.domain.model import LeadStatus

    with pytest.raises(NotFound):
        await engine.update_status(lead.id, LeadStatus.CONTACTED, "", "u-0", other)
    done = await engine.update_status(lead.id, LeadStatus.CONTACTED, "", "u-1", owner)
    assert done.status is LeadStatus.CONTACTED
    assert done.version == lead.version + 1
    again = await engine.update_status(lead.id, LeadStatus.CONTACTED, "", "u-1", owner)
    assert again.version == done.version
    lost = await engine.update_status(lead.id, LeadStatus.LOST, "bought elsewhere", "u-2", owner)
    assert lost.follow_up_due is None
    with pytest.raises(FailedPrecondition):
        await engine.update_status(lead.id, LeadStatus.WON, "", "u-3", owner)
    # A closed lead never absorbs a new enquiry: the same mobile starts a new lead.
    fresh = await engine.submit(lead_input(), SERVICE, "x")
    assert fresh.outcome is SubmitOutcome.CREATED and fresh.lead.id != lead.id
    assert await count(engine, store.lead_keys) == 1


async def test_lead_ids_sort_by_time() -> None:
    t = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    ids = [new_lead_id(t + dt.timedelta(milliseconds=i)) for i in range(50)]
    assert ids == sorted(ids)
    assert all(len(i) == 28 and i.startswith("L") for i in ids)


def _pool_events(engine: LeadEngine) -> dict[str, int]:
    """Counts of pool check-outs and invalidations on the engine's database."""
    seen = {"checkout": 0, "invalidate": 0}
    sync = engine.db.engine.sync_engine

    @sa.event.listens_for(sync, "checkout")
    def _checkout(*_: object) -> None:
        seen["checkout"] += 1

    @sa.event.listens_for(sync, "invalidate")
    def _invalidate(*_: object) -> None:
        seen["invalidate"] += 1

    return seen


async def test_writer_keeps_its_connection_between_batches(engine: LeadEngine) -> None:
    await engine.submit(lead_input("13800138001"), SERVICE, "p0")  # connects, reads dealers
    seen = _pool_events(engine)
    for i in range(2, 5):
        await engine.submit(lead_input(f"1380013800{i}"), SERVICE, f"p{i}")
    assert seen == {"checkout": 0, "invalidate": 0}
    assert engine.writer.batches == 4


async def test_writer_takes_a_fresh_connection_after_a_pause(engine: LeadEngine) -> None:
    engine.intake.connection._idle = 0.0  # every gap between batches counts as a pause
    await engine.submit(lead_input("13800138001"), SERVICE, "p0")
    seen = _pool_events(engine)
    for i in range(2, 5):
        await engine.submit(lead_input(f"1380013800{i}"), SERVICE, f"p{i}")
    assert seen == {"checkout": 3, "invalidate": 0}


async def test_a_failed_batch_drops_the_writer_connection(
    engine: LeadEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    await engine.submit(lead_input("13800138001"), SERVICE, "p0")
    name = "postgres_batch_write" if engine.is_postgres else "sqlite_batch_write"
    real = getattr(store, name)
    calls: list[int] = []

    async def fails_once(conn: object, w: store.BatchWrites) -> list[int]:
        calls.append(len(w.created))
        if len(calls) == 1:
            raise sa.exc.OperationalError("INSERT", {}, Exception("connection lost"))
        return await real(conn, w)

    monkeypatch.setattr(store, name, fails_once)
    seen = _pool_events(engine)
    first, second = await asyncio.gather(
        engine.submit(lead_input("13800138002"), SERVICE, "p2"),
        engine.submit(lead_input("13800138003"), SERVICE, "p3"),
    )
    # The batch of two failed, its connection was discarded, each was retried alone.
    assert calls == [2, 1, 1]
    assert first.outcome is second.outcome is SubmitOutcome.CREATED
    assert seen["invalidate"] == 1 and seen["checkout"] == 1
    assert await count(engine, store.leads) == 3


async def test_sqlite_rows_convert_every_column_that_needs_it(engine: LeadEngine) -> None:
    """The fast row builder converts only the time and list columns: it must give what
    converting every value of `lead_row` in table-column order gives."""
    lead = (await engine.submit(lead_input(email="li@example.com"), SERVICE, "p")).lead
    row = store.lead_row(lead)
    columns = [c.name for c in store.leads.c]
    generic = [store.sqlite_value(row[c]) for c in columns]
    assert store.sqlite_lead_values(lead) == generic
    assert set(row) == set(columns)

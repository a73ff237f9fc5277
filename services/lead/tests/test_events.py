"""Lead's domain events on both back ends: intake's LeadCreated and LeadAssigned ride in the
group-committed batch, AssignLead and UpdateLeadStatus write theirs with the change, and
member's events link a person's leads to the member and erase them (checked on the rows)."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator
from typing import Any

import pytest
import sqlalchemy as sa
from marque.lead.v1 import lead_events_pb2, lead_pb2
from marque.member.v1 import member_events_pb2

from mesh import contact
from mesh.events.envelope import Envelope
from mesh.events.handover import Handover
from mesh.identity import Caller, Kind
from mesh.unit_of_work import UnitOfWork, transaction
from services.lead import events, store
from services.lead.domain.model import Channel, LeadStatus, SubmitOutcome
from services.lead.engine import LeadEngine
from services.lead.tests.test_store import (
    DIGEST_KEY,
    SERVICE,
    SHANGHAI,
    close,
    lead_input,
    open_engine,
)

OEM = Caller(Kind.OEM, "staff")
E164 = "+8613800138000"
T0 = dt.datetime(2026, 12, 3, 9, tzinfo=dt.UTC)


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[LeadEngine]:
    e = await open_engine(database_url)
    await e.seed_dealers(SHANGHAI)
    yield e
    await close(e)


async def outbox(engine: LeadEngine) -> list[tuple[str, str, bytes]]:
    t = store.tables.outbox
    async with engine.db.engine.connect() as conn:
        rows = await conn.execute(sa.select(t.c.type, t.c.aggregate, t.c.payload).order_by(t.c.seq))
    return [(r.type.rsplit(".", 1)[1], r.aggregate, r.payload) for r in rows]


async def test_intake_emits_created_in_its_batch(engine: LeadEngine) -> None:
    first = await engine.submit(lead_input(request_id="r1"), SERVICE, "sha256:1")
    await engine.submit(lead_input(request_id="r1"), SERVICE, "sha256:1")  # a retry
    merged = await engine.submit(
        lead_input(channel=Channel.YICHE, request_id="r2"), SERVICE, "sha256:2"
    )
    assert (first.outcome, merged.outcome) == (SubmitOutcome.CREATED, SubmitOutcome.MERGED)
    rows = await outbox(engine)
    assert [(t, a) for t, a, _ in rows] == [("LeadCreated", first.lead.id)]
    created = lead_events_pb2.LeadCreated.FromString(rows[0][2])
    assert created.channel == lead_pb2.CHANNEL_AUTOHOME
    assert created.contact_digest == contact.digest(E164, DIGEST_KEY)
    assert created.dealer_id == first.lead.dealer_id
    assert all(b"13800138000" not in p and b"Li Lei" not in p for _, _, p in rows)


async def test_assign_and_status_changes_emit_with_the_change(engine: LeadEngine) -> None:
    lead = (await engine.submit(lead_input(), SERVICE, "sha256:1")).lead
    other = "SH2" if lead.dealer_id == "SH1" else "SH1"
    await engine.assign(lead.id, other, "closer to the customer", "a1", OEM)
    await engine.assign(lead.id, other, "closer to the customer", "a1", OEM)  # a retry
    await engine.update_status(lead.id, LeadStatus.CONTACTED, "", "s1", OEM)
    await engine.update_status(lead.id, LeadStatus.CONTACTED, "", "s2", OEM)  # no move
    rows = (await outbox(engine))[1:]
    assert [t for t, _, _ in rows] == ["LeadAssigned", "LeadStatusChanged"]
    moved = lead_events_pb2.LeadAssigned.FromString(rows[0][2])
    assert (moved.previous_dealer_id, moved.dealer_id) == (lead.dealer_id, other)
    changed = lead_events_pb2.LeadStatusChanged.FromString(rows[1][2])
    assert (changed.previous_status, changed.status) == (
        lead_pb2.LEAD_STATUS_NEW,
        lead_pb2.LEAD_STATUS_CONTACTED,
    )


def _envelope(event: Any) -> Envelope:
    name = type(event).DESCRIPTOR.full_name
    return Envelope("e-" + name, "/marque/member", name, "m_1", T0)


async def handle(engine: LeadEngine, handler: Any, event: Any) -> None:
    async def work(uow: UnitOfWork) -> None:
        await handler(uow, event, _envelope(event))

    await transaction(engine.db, work, outbox=store.tables.OUTBOX)


async def test_a_registered_member_is_known_to_the_won_lead(engine: LeadEngine) -> None:
    lead = (await engine.submit(lead_input(), SERVICE, "sha256:1")).lead
    registered = member_events_pb2.MemberRegistered(
        member_id="m_1", contact_digests=[contact.digest(E164, DIGEST_KEY)]
    )
    await handle(engine, events.on_member_registered, registered)
    merged = member_events_pb2.MemberMerged(
        member_id="m_2", merged_member_id="m_1", contact_digests=registered.contact_digests
    )
    await handle(engine, events.on_member_merged, merged)
    await engine.update_status(lead.id, LeadStatus.CONTACTED, "", "s1", OEM)
    await engine.update_status(lead.id, LeadStatus.WON, "", "s2", OEM)
    won = lead_events_pb2.LeadStatusChanged.FromString((await outbox(engine))[-1][2])
    assert (won.status, won.member_id) == (lead_pb2.LEAD_STATUS_WON, "m_2")


async def test_an_erased_member_leaves_only_anonymous_facts(engine: LeadEngine) -> None:
    kept = (await engine.submit(lead_input("13900139000"), SERVICE, "sha256:9")).lead
    lead = (await engine.submit(lead_input(channel_lead_id="ah-1"), SERVICE, "sha256:1")).lead
    erased = member_events_pb2.MemberErased(
        member_id="m_1", contact_digests=[contact.digest(E164, DIGEST_KEY)]
    )
    await handle(engine, events.on_member_erased, erased)
    await handle(engine, events.on_member_erased, erased)  # a second delivery: nothing left
    async with engine.db.engine.connect() as conn:
        row = (await conn.execute(sa.select(store.leads).where(store.leads.c.id == lead.id))).one()
        tps = (
            await conn.execute(
                sa.select(store.touchpoints).where(store.touchpoints.c.lead_id == lead.id)
            )
        ).all()
        keys = (await conn.execute(sa.select(store.lead_keys.c.lead_id))).scalars().all()
        other = (
            await conn.execute(sa.select(store.leads).where(store.leads.c.id == kept.id))
        ).one()
    assert (row.name, row.mobile_e164, row.email, row.city, row.contact_digest) == (
        "",
        None,
        None,
        "",
        None,
    )
    assert (row.channel, row.grade, row.brand, row.create_time) == (
        "AUTOHOME",
        lead.grade.value,
        "Marque",
        lead.create_time,
    )
    assert [(t.channel_lead_id, t.payload_ref) for t in tps] == [("", "erased")]
    assert keys == [kept.id]
    assert other.mobile_e164 == "+8613900139000" and other.name == "Li Lei"
    done = [p for t, _, p in await outbox(engine) if t == "LeadDataErased"]
    counts = [lead_events_pb2.LeadDataErased.FromString(p).leads_erased for p in done]
    assert counts == [1, 0]
    # The lead still reads, without the person.
    got = await engine.get_lead(lead.id, OEM)
    assert got.mobile_e164 is None and got.name == "" and got.channel is Channel.AUTOHOME


async def test_older_leads_get_their_digest_in_the_background(engine: LeadEngine) -> None:
    lead = (await engine.submit(lead_input(), SERVICE, "sha256:1")).lead
    async with engine.db.engine.begin() as conn:  # as migration 0004 leaves older leads
        await conn.execute(sa.update(store.leads).values(contact_digest=None))
    assert await engine.backfill_digests(batch=1) == 1
    assert await engine.backfill_digests() == 0
    async with engine.db.engine.connect() as conn:
        digest = (
            await conn.execute(
                sa.select(store.leads.c.contact_digest).where(store.leads.c.id == lead.id)
            )
        ).scalar_one()
    assert digest == contact.digest(E164, DIGEST_KEY)


async def test_the_lead_follows_its_opportunity_in_sales(engine: LeadEngine) -> None:
    from marque.sales.v1 import sales_events_pb2, sales_pb2

    lead = (await engine.submit(lead_input(), SERVICE, "sha256:1")).lead
    drive = sales_events_pb2.OpportunityStageChanged(
        opportunity_id="opp_1",
        lead_id=lead.id,
        dealer_id=lead.dealer_id,
        stage=sales_pb2.STAGE_TEST_DRIVE,
        previous_stage=sales_pb2.STAGE_QUALIFIED,
    )
    await handle(engine, events.on_opportunity_stage_changed, drive)
    assert (await engine.get_lead(lead.id, OEM)).status is LeadStatus.TEST_DRIVE_BOOKED
    quoted = sales_events_pb2.OpportunityStageChanged(
        opportunity_id="opp_1", lead_id=lead.id, stage=sales_pb2.STAGE_QUOTE
    )
    await handle(engine, events.on_opportunity_stage_changed, quoted)  # not lead's business
    delivered = sales_events_pb2.OrderDelivered(
        order=sales_events_pb2.OrderFacts(order_id="ord_1", lead_id=lead.id)
    )
    await handle(engine, events.on_order_delivered, delivered)
    await handle(engine, events.on_order_delivered, delivered)  # again: already WON
    lost = sales_events_pb2.OpportunityStageChanged(
        opportunity_id="opp_1", lead_id=lead.id, stage=sales_pb2.STAGE_LOST, lost_reason="x"
    )
    await handle(engine, events.on_opportunity_stage_changed, lost)  # WON is final: ignored
    assert (await engine.get_lead(lead.id, OEM)).status is LeadStatus.WON
    moves = [
        lead_events_pb2.LeadStatusChanged.FromString(p).status
        for t, _, p in await outbox(engine)
        if t == "LeadStatusChanged"
    ]
    assert moves == [lead_pb2.LEAD_STATUS_TEST_DRIVE_BOOKED, lead_pb2.LEAD_STATUS_WON]


async def test_a_lost_opportunity_loses_the_lead_with_its_reason(engine: LeadEngine) -> None:
    from marque.sales.v1 import sales_events_pb2, sales_pb2

    lead = (await engine.submit(lead_input(), SERVICE, "sha256:1")).lead
    lost = sales_events_pb2.OpportunityStageChanged(
        opportunity_id="opp_1",
        lead_id=lead.id,
        stage=sales_pb2.STAGE_LOST,
        lost_reason="bought elsewhere",
    )
    await handle(engine, events.on_opportunity_stage_changed, lost)
    after = await engine.get_lead(lead.id, OEM)
    assert (after.status, after.lost_reason) == (LeadStatus.LOST, "bought elsewhere")
    unknown = sales_events_pb2.OrderDelivered(order=sales_events_pb2.OrderFacts(lead_id="nope"))
    await handle(engine, events.on_order_delivered, unknown)  # nothing to follow, no error


async def test_new_leads_events_go_to_the_relay_from_memory(engine: LeadEngine) -> None:
    """With a relay taking rows from memory (mesh/events/handover.py), a batch's events
    about leads it creates are born leased and handed over with the seqs the database gave
    them; an event about a lead that existed before is an ordinary row, for a claim."""
    woken: list[bool] = []
    handover = Handover("test-relay", dt.timedelta(seconds=30), lambda: woken.append(True))
    handover.open = True
    outbox_ = store.tables.OUTBOX
    outbox_.attach(handover)
    try:
        first = await engine.submit(lead_input(request_id="r0"), SERVICE, "sha256:0")
        together = await asyncio.gather(  # one batch of several new leads
            *(
                engine.submit(lead_input(f"1390013900{i}", request_id=f"n{i}"), SERVICE, f"s{i}")
                for i in range(5)
            )
        )
        other = "SH2" if first.lead.dealer_id == "SH1" else "SH1"
        await engine.assign(first.lead.id, other, "closer", "a1", OEM)  # an existing lead
        handed = handover.take(100)
    finally:
        outbox_.attach(None)
    t = store.tables.outbox
    async with engine.db.engine.connect() as conn:
        rows = (await conn.execute(sa.select(t).order_by(t.c.seq))).all()
    by_seq = {r.seq: r for r in rows}
    created = [first.lead.id] + [s.lead.id for s in together]
    assert sorted(c.aggregate for c in handed) == sorted(created)
    for c in handed:  # what the relay got is what was committed, under that seq
        row = by_seq[c.seq]
        assert (row.id, row.aggregate, row.payload) == (c.id, c.aggregate, c.payload)
        assert (row.lease_owner, row.attempts) == (handover.owner, 1)
    assert woken
    [assigned] = [r for r in rows if r.type.endswith("LeadAssigned")]
    assert (assigned.lease_owner, assigned.attempts) == (None, 0)  # for a claim

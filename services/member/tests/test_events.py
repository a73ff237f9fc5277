"""Member's domain events: written with the change that makes them (the outbox rows of each
unit of work), carrying ids and contact digests, never a mobile; and lead's won leads turned
into dealer relations by the handler, once."""

from __future__ import annotations

import contextlib
import datetime as dt
from typing import Any

import sqlalchemy as sa
from marque.lead.v1 import lead_events_pb2, lead_pb2
from marque.member.v1 import member_events_pb2

from mesh import contact
from mesh.events.envelope import Envelope
from mesh.idempotency import Request
from mesh.unit_of_work import UnitOfWork, transaction
from services.member import events
from services.member.domain.identities import IdentityKey, IdentityType
from services.member.domain.relations import DealerRelation, Relation
from services.member.store import relations, tables
from services.member.tests.direct import DIGEST_KEY, SERVICE, Direct, direct, w

T0 = dt.datetime(2026, 12, 3, 9, tzinfo=dt.UTC)
MOBILE = "+8613812345678"
VIN = "LZ91AE3A4J3LSA560"
CAR = {"brand": "Marque", "model": "M5", "purchase_date": "", "dealer_id": "D001"}


def mobile(number: str = MOBILE) -> IdentityKey:
    return IdentityKey(IdentityType.MOBILE, number)


async def outbox(d: Direct) -> list[tuple[str, str, bytes]]:
    t = tables.outbox
    async with d.db.engine.connect() as conn:
        rows = await conn.execute(sa.select(t.c.type, t.c.aggregate, t.c.payload).order_by(t.c.seq))
    return [(r.type, r.aggregate, r.payload) for r in rows]


async def test_registration_emits_once_with_the_digest_not_the_mobile(database_url: str) -> None:
    async with direct(database_url) as d:
        member, created = await d.register(w("r1", T0), mobile(), "Li Lei", "Shanghai")
        await d.register(w("r1", T0), mobile(), "Li Lei", "Shanghai")  # a retry
        await d.register(w("r2", T0), mobile(), "Li Lei", "Shanghai")  # the same person
        rows = await outbox(d)
    assert created
    assert [(t, s) for t, s, _ in rows] == [("marque.member.v1.MemberRegistered", member.id)]
    event = member_events_pb2.MemberRegistered.FromString(rows[0][2])
    assert event.member_id == member.id
    assert list(event.contact_digests) == [contact.digest(MOBILE, DIGEST_KEY)]
    assert MOBILE.encode() not in rows[0][2] and b"13812345678" not in rows[0][2]
    assert b"Li Lei" not in rows[0][2]


async def test_merge_erase_and_binding_emit_their_events(database_url: str) -> None:
    async with direct(database_url) as d:
        a, _ = await d.register(w("a", T0), mobile(), "A", "")
        b, _ = await d.register(w("b", T0), mobile("+8613900000001"), "B", "")
        await d.merge(w("m", T0), a.id, b.id, "same person")
        await d.at(T0).bind_vehicle(a.id, VIN, CAR, req=w("v", T0).req, caller=SERVICE)
        await d.at(T0).bind_vehicle(a.id, VIN, CAR, req=w("v2", T0).req, caller=SERVICE)  # kept
        await d.at(T0).erase(a.id, req=w("e", T0).req, caller=SERVICE)
        await d.at(T0).erase(a.id, req=w("e2", T0).req, caller=SERVICE)  # already erased
        rows = await outbox(d)
    names = [t.rsplit(".", 1)[1] for t, _, _ in rows]
    assert names == [
        "MemberRegistered",
        "MemberRegistered",
        "MemberMerged",
        "VehicleBound",
        "MemberErased",
    ]
    both = sorted(contact.digest(m, DIGEST_KEY) for m in (MOBILE, "+8613900000001"))
    merged = member_events_pb2.MemberMerged.FromString(rows[2][2])
    assert (merged.member_id, merged.merged_member_id) == (a.id, b.id)
    assert list(merged.contact_digests) == both
    assert member_events_pb2.VehicleBound.FromString(rows[3][2]).vin == VIN
    erased = member_events_pb2.MemberErased.FromString(rows[4][2])
    assert erased.member_id == a.id and list(erased.contact_digests) == both
    assert erased.erase_time.ToDatetime(dt.UTC) == T0


async def test_a_failed_change_leaves_no_event(database_url: str) -> None:
    """The registration's event is in its transaction: a failure after it writes neither."""
    async with direct(database_url) as d:
        req = Request(SERVICE.ref, "r-fail", "fp")

        async def register_then_fail(uow):
            from services.member import lifecycle

            await lifecycle.register_member(
                uow, mobile(), "X", "", req=req, now=T0, secret=DIGEST_KEY
            )
            raise RuntimeError("after the change")

        with contextlib.suppress(RuntimeError):
            await transaction(d.db, register_then_fail, outbox=tables.OUTBOX)
        assert await outbox(d) == []
        async with d.db.engine.connect() as conn:
            assert (
                await conn.execute(sa.select(sa.func.count()).select_from(tables.members))
            ).scalar() == 0


def _won(
    member_id: str,
    dealer_id: str = "D001",
    status: lead_pb2.LeadStatus = lead_pb2.LEAD_STATUS_WON,
) -> tuple[lead_events_pb2.LeadStatusChanged, Envelope]:
    event = lead_events_pb2.LeadStatusChanged(
        lead_id="L1",
        status=status,
        dealer_id=dealer_id,
        member_id=member_id,
    )
    envelope = Envelope("e1", "/marque/lead", "marque.lead.v1.LeadStatusChanged", "L1", T0)
    return event, envelope


async def test_a_won_lead_records_the_dealers_lead_relation_once(database_url: str) -> None:
    async with direct(database_url) as d:
        a, _ = await d.register(w("a", T0), mobile(), "A", "")
        b, _ = await d.register(w("b", T0), mobile("+8613900000001"), "B", "")
        await d.merge(w("m", T0), a.id, b.id, "same person")

        async def handle(event_and_envelope):
            async def work(uow):
                await events.on_lead_status_changed(uow, *event_and_envelope)

            await transaction(d.db, work)

        await handle(_won(a.id))
        await handle(_won(a.id))  # a second won lead at the same dealer adds nothing
        await handle(_won(b.id, "D002"))  # the merged member's lead goes to the survivor
        await handle(_won(a.id, "D003", lead_pb2.LEAD_STATUS_CONTACTED))  # not won
        await handle(_won("", "D004"))  # no member known
        await handle(_won("m_unknown", "D005"))
        async with d.db.engine.connect() as conn:
            found = await relations.relations_of(conn, a.id)
            gone = await relations.relations_of(conn, b.id)
    lead = [r for r in found if r.relation is Relation.LEAD]
    assert sorted(r.dealer_id for r in lead) == ["D001", "D002"]
    assert DealerRelation("D001", Relation.LEAD) in lead
    assert [r for r in gone if r.dealer_id == "D002"] == []


async def test_each_services_erasure_is_kept_once(database_url: str) -> None:
    from services.member.domain.erasure import pending_services
    from services.member.store import erasures

    async with direct(database_url) as d:
        a, _ = await d.register(w("a", T0), mobile(), "A", "")
        await d.at(T0).erase(a.id, req=w("e", T0).req, caller=SERVICE)
        async with d.db.engine.connect() as conn:
            before = await erasures.receipts_of(conn, a.id)
        assert [r.service for r in before] == ["member"]
        assert pending_services(before) == ["lead", "sales"]
        later = T0 + dt.timedelta(seconds=3)
        answer = lead_events_pb2.LeadDataErased(member_id=a.id, leads_erased=2)
        answer.erase_time.FromDatetime(later)
        env = Envelope("e9", "/marque/lead", "marque.lead.v1.LeadDataErased", a.id, later)
        for _ in range(2):  # a redelivery keeps the first receipt

            async def work(uow: UnitOfWork) -> None:
                await events.on_lead_data_erased(uow, answer, env)

            await transaction(d.db, work)
        assert pending_services(await _receipts(d, a.id)) == ["sales"]
        from marque.sales.v1 import sales_events_pb2

        sales = sales_events_pb2.SalesDataErased(member_id=a.id, records_erased=1)
        sales.erase_time.FromDatetime(later)
        sales_env = Envelope("e10", "/marque/sales", "marque.sales.v1.SalesDataErased", a.id, later)

        async def from_sales(uow: UnitOfWork) -> None:
            await events.on_sales_data_erased(uow, sales, sales_env)

        await transaction(d.db, from_sales)
        after = await _receipts(d, a.id)
    assert [(r.service, r.items, r.done_time) for r in after] == [
        ("lead", 2, later),
        ("member", 1, T0),
        ("sales", 1, later),
    ]
    assert pending_services(after) == []


async def _receipts(d: Direct, member_id: str) -> list[Any]:
    from services.member.store import erasures

    async with d.db.engine.connect() as conn:
        return list(await erasures.receipts_of(conn, member_id))

"""Lead's domain events: what it emits (built here from domain values, written with the
change that makes them) and what member's events make it do.

Emitted (`marque.lead.v1`, subject = the lead id; LeadDataErased: the member id):
LeadCreated from intake (rows of the group-committed batch; it names the routed dealer),
LeadAssigned when the dealer changes (AssignLead, or a merge that routes again),
LeadStatusChanged from UpdateLeadStatus, LeadDataErased once an erasure is done here.
Consumed (`marque.member.v1`):
- MemberRegistered, MemberMerged: the person's leads learn their member id, so a lead WON
  later tells member whose dealer relation it is;
- MemberErased: the person's leads keep only their anonymous facts (domain/erasure.py), and
  lead says so (LeadDataErased), so the erasure is visible as done per service.
Consumed (`marque.sales.v1`): the lead's status follows its opportunity in sales: a test
drive booked (OpportunityStageChanged TEST_DRIVE) is TEST_DRIVE_BOOKED, a lost opportunity
LOST with its reason, a delivered order (OrderDelivered) WON. A step the lead has passed
already (a late event, a lead closed by hand) changes nothing.

`EVENTS` is the wiring `mesh.service.Service` runs and `python -m mesh.events.replay lead`
loads.
"""

from __future__ import annotations

import datetime as dt
import functools
import os

from google.protobuf.timestamp_pb2 import Timestamp
from marque.lead.v1 import lead_events_pb2
from marque.member.v1 import member_events_pb2
from marque.sales.v1 import sales_events_pb2, sales_pb2

from mesh.convert import timestamp
from mesh.events.envelope import Envelope
from mesh.events.runtime import EventSpec
from mesh.events.subscriptions import subscribe, subscriptions_in
from mesh.unit_of_work import UnitOfWork
from services.lead import store
from services.lead.domain import erasure, followup
from services.lead.domain.config import LeadConfig
from services.lead.domain.model import Lead, LeadStatus
from services.lead.store import people

ERASED_BY = "event:MemberErased"
BY_SALES = "event:sales"
# The opportunity stages lead's status follows (the others are sales' own business).
FOLLOWED_STAGES = {
    sales_pb2.STAGE_TEST_DRIVE: LeadStatus.TEST_DRIVE_BOOKED,
    sales_pb2.STAGE_LOST: LeadStatus.LOST,
}


@functools.cache
def _config() -> LeadConfig:
    """Lead's rules as the service was configured (read once, like app.py does)."""
    return LeadConfig.from_env(os.environ)


def _ts(when: dt.datetime) -> Timestamp:
    stamp = timestamp(when)
    assert stamp is not None
    return stamp


def created(lead: Lead) -> lead_events_pb2.LeadCreated:
    """A new lead, its anonymous facts and the digest of its person."""
    return lead_events_pb2.LeadCreated(
        lead_id=lead.id,
        channel=f"CHANNEL_{lead.channel.name}",
        grade=f"LEAD_GRADE_{lead.grade.name}",
        dealer_id=lead.dealer_id or "",
        brand=lead.brand,
        create_time=_ts(lead.create_time),
        contact_digest=lead.contact_digest or "",
    )


def assigned(before: Lead | None, after: Lead) -> lead_events_pb2.LeadAssigned | None:
    """The lead's new dealer, if it has one it did not have before."""
    previous = before.dealer_id if before is not None else None
    if not after.dealer_id or after.dealer_id == previous:
        return None
    return lead_events_pb2.LeadAssigned(
        lead_id=after.id,
        dealer_id=after.dealer_id,
        previous_dealer_id=previous or "",
        reason=after.routing_reason,
        assign_time=_ts(after.update_time),
    )


def status_changed(before: Lead, after: Lead) -> lead_events_pb2.LeadStatusChanged | None:
    """The lead's new status, if it moved."""
    if after.status is before.status:
        return None
    return lead_events_pb2.LeadStatusChanged(
        lead_id=after.id,
        status=f"LEAD_STATUS_{after.status.name}",
        previous_status=f"LEAD_STATUS_{before.status.name}",
        dealer_id=after.dealer_id or "",
        member_id=after.member_id,
        change_time=_ts(after.update_time),
    )


def changes(
    before: Lead, after: Lead
) -> list[lead_events_pb2.LeadAssigned | lead_events_pb2.LeadStatusChanged]:
    """The events of one change of a lead, in the order they happened."""
    found = [assigned(before, after), status_changed(before, after)]
    return [e for e in found if e is not None]


@subscribe(member_events_pb2.MemberRegistered)
async def on_member_registered(
    uow: UnitOfWork, event: member_events_pb2.MemberRegistered, envelope: Envelope
) -> None:
    """The person's leads learn their member (unless one was known already)."""
    await people.link_member(uow.conn, event.contact_digests, event.member_id, replace=False)


@subscribe(member_events_pb2.MemberMerged)
async def on_member_merged(
    uow: UnitOfWork, event: member_events_pb2.MemberMerged, envelope: Envelope
) -> None:
    """Both people's leads (their contacts are the survivor's now) name the survivor."""
    await people.link_member(uow.conn, event.contact_digests, event.member_id, replace=True)


@subscribe(member_events_pb2.MemberErased)
async def on_member_erased(
    uow: UnitOfWork, event: member_events_pb2.MemberErased, envelope: Envelope
) -> None:
    """Erase the person from their leads, keep the anonymous facts, say it is done."""
    now = dt.datetime.now(dt.UTC)
    ids = await people.lead_ids_of(uow.conn, event.contact_digests)
    found = await store.leads_by_ids(uow.conn, ids, for_update=not uow.is_sqlite)
    erased = [erasure.erase(lead, now=now, actor=ERASED_BY) for lead in found.values()]
    await store.update_leads(uow.conn, erased)
    await people.erase_rows_beside(uow.conn, list(found))
    done = lead_events_pb2.LeadDataErased(
        member_id=event.member_id, leads_erased=len(erased), erase_time=_ts(now)
    )
    uow.emit(done, subject=event.member_id)


@subscribe(sales_events_pb2.OpportunityStageChanged)
async def on_opportunity_stage_changed(
    uow: UnitOfWork, event: sales_events_pb2.OpportunityStageChanged, envelope: Envelope
) -> None:
    """A test drive booked or the opportunity lost: the lead follows."""
    status = FOLLOWED_STAGES.get(event.stage)
    if status is not None:
        await _follow(uow, event.lead_id, status, event.lost_reason, envelope.time)


@subscribe(sales_events_pb2.OrderDelivered)
async def on_order_delivered(
    uow: UnitOfWork, event: sales_events_pb2.OrderDelivered, envelope: Envelope
) -> None:
    """The car of the lead's order was handed over: the lead is WON."""
    await _follow(uow, event.order.lead_id, LeadStatus.WON, "", envelope.time)


async def _follow(
    uow: UnitOfWork, lead_id: str, status: LeadStatus, reason: str, when: dt.datetime
) -> None:
    found = await store.leads_by_ids(uow.conn, [lead_id], for_update=not uow.is_sqlite)
    lead = found.get(lead_id)
    if lead is None or not followup.can_transition(lead.status, status):
        return  # an erased or unknown lead, or a step it has passed: nothing to follow
    reason = (reason or "lost in sales") if status is LeadStatus.LOST else ""
    after = followup.transition(
        lead, status, lost_reason=reason, now=when, actor=BY_SALES, config=_config()
    )
    if after is lead:
        return
    await store.update_leads(uow.conn, [after])
    for change in changes(lead, after):
        uow.emit(change, subject=lead.id)


EVENTS = EventSpec(
    service="lead",
    outbox=store.tables.OUTBOX,
    inbox=store.tables.INBOX,
    subscriptions=subscriptions_in(
        on_member_registered,
        on_member_merged,
        on_member_erased,
        on_opportunity_stage_changed,
        on_order_delivered,
    ),
)

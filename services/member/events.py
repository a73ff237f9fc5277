"""Member's domain events: what it emits (built here from domain values, written by the unit
of work that made the change) and what it does with other services' events.

Emitted (`marque.member.v1`, subject = the member id): MemberRegistered, MemberMerged,
MemberErased, VehicleBound. Identities travel as contact digests (mesh/contact.py) only.
Consumed: lead's LeadStatusChanged: a lead WON with a member id records the dealer's lead
relation of that member (the relation comes from the lead, not from a hand call); lead's
LeadDataErased: lead's receipt of an erasure, so the erasure is visible as done per service.
Consumed from sales: SalesDataErased, sales' receipt of an erasure, like lead's;
OrderDelivered: the buyer becomes the car's registered owner and earns
the purchase's points (deliveries.py).

`EVENTS` is the wiring `mesh.service.Service` runs and `python -m mesh.events.replay member`
loads.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

from google.protobuf.timestamp_pb2 import Timestamp
from marque.lead.v1 import lead_events_pb2, lead_pb2
from marque.member.v1 import member_events_pb2
from marque.sales.v1 import sales_events_pb2

from mesh.convert import timestamp
from mesh.events.envelope import Envelope
from mesh.events.runtime import EventSpec
from mesh.events.subscriptions import subscribe, subscriptions_in
from mesh.unit_of_work import UnitOfWork
from services.member import deliveries, store
from services.member.domain.identities import IdentityKey, contact_digests
from services.member.domain.relations import DealerRelation, Relation, relation_holder


def _ts(when: dt.datetime) -> Timestamp:
    stamp = timestamp(when)
    assert stamp is not None
    return stamp


def registered(
    member_id: str, keys: Iterable[IdentityKey], now: dt.datetime, secret: bytes
) -> member_events_pb2.MemberRegistered:
    """A new member and how other services may recognise it."""
    return member_events_pb2.MemberRegistered(
        member_id=member_id, contact_digests=contact_digests(keys, secret), register_time=_ts(now)
    )


def merged(
    winner_id: str, loser_id: str, keys: Iterable[IdentityKey], now: dt.datetime, secret: bytes
) -> member_events_pb2.MemberMerged:
    """The loser is the winner now; the winner's contacts after the merge."""
    return member_events_pb2.MemberMerged(
        member_id=winner_id,
        merged_member_id=loser_id,
        contact_digests=contact_digests(keys, secret),
        merge_time=_ts(now),
    )


def erased(
    member_id: str, keys: Iterable[IdentityKey], now: dt.datetime, secret: bytes
) -> member_events_pb2.MemberErased:
    """The erasure every service carries out; the contacts held before it."""
    return member_events_pb2.MemberErased(
        member_id=member_id, contact_digests=contact_digests(keys, secret), erase_time=_ts(now)
    )


def vehicle_bound(member_id: str, vin: str, now: dt.datetime) -> member_events_pb2.VehicleBound:
    """The member is the VIN's registered owner now."""
    return member_events_pb2.VehicleBound(member_id=member_id, vin=vin, bind_time=_ts(now))


@subscribe(lead_events_pb2.LeadStatusChanged)
async def on_lead_status_changed(
    uow: UnitOfWork, event: lead_events_pb2.LeadStatusChanged, envelope: Envelope
) -> None:
    """A won lead of a known member: the dealer's lead relation, once."""
    if event.status != lead_pb2.LEAD_STATUS_WON or not event.member_id or not event.dealer_id:
        return
    found = await store.members.state_of(uow.conn, event.member_id)
    state, merged_into = found if found is not None else (None, "")
    holder = relation_holder(event.member_id, state, merged_into)
    if holder is None:
        return
    relation = DealerRelation.of(event.dealer_id, Relation.LEAD, "")
    if not await store.relations.exists(uow.conn, holder, relation):
        await store.relations.insert(uow.conn, holder, relation, envelope.time)


@subscribe(lead_events_pb2.LeadDataErased)
async def on_lead_data_erased(
    uow: UnitOfWork, event: lead_events_pb2.LeadDataErased, envelope: Envelope
) -> None:
    """Lead has erased the member's leads: its receipt (GetErasureStatus shows it)."""
    done = event.erase_time.ToDatetime(dt.UTC) if event.HasField("erase_time") else envelope.time
    await store.erasures.record(uow.conn, event.member_id, "lead", event.leads_erased, done)


@subscribe(sales_events_pb2.SalesDataErased)
async def on_sales_data_erased(
    uow: UnitOfWork, event: sales_events_pb2.SalesDataErased, envelope: Envelope
) -> None:
    """Sales has erased the member's data: its receipt (GetErasureStatus shows it)."""
    done = event.erase_time.ToDatetime(dt.UTC) if event.HasField("erase_time") else envelope.time
    await store.erasures.record(uow.conn, event.member_id, "sales", event.records_erased, done)


on_order_delivered = subscribe(sales_events_pb2.OrderDelivered)(deliveries.on_order_delivered)


EVENTS = EventSpec(
    service="member",
    outbox=store.tables.OUTBOX,
    inbox=store.tables.INBOX,
    subscriptions=subscriptions_in(
        on_lead_status_changed, on_lead_data_erased, on_order_delivered, on_sales_data_erased
    ),
)

"""The sales service's domain events: what it emits (built here from domain records,
written by the unit of work that made the change) and what it does with other services'.

Emitted (`marque.sales.v1`, `sales_events.proto`): OpportunityOpened and
OpportunityStageChanged (subject: the opportunity id; lead's status follows the stage),
OrderPlaced, OrderConfirmed, OrderAllocated, OrderInvoiced, OrderDelivered, OrderCancelled
(subject: the order id; member makes the buyer the owner on OrderDelivered, lead marks the
lead WON, the ERP adapter takes OrderConfirmed to SAP).
Consumed (`marque.lead.v1`): LeadCreated with a dealer and LeadAssigned open the dealer's
opportunity for the lead, once (the lead id is unique), or move it to the new dealer.
Consumed (`marque.member.v1`): MemberErased blanks the free text sales holds of the member
(follow-ups, test-drive feedback) and says so (SalesDataErased, subject: the member id), so
member shows the erasure done in sales.

`EVENTS` is the wiring `mesh.service.Service(events=EVENTS)` runs (app.py) and
`python -m mesh.events.replay sales` loads.
"""

from __future__ import annotations

import datetime as dt
import uuid

from google.protobuf.message import Message
from marque.lead.v1 import lead_events_pb2
from marque.member.v1 import member_events_pb2
from marque.sales.v1 import sales_events_pb2

from mesh.convert import money, timestamp
from mesh.events.envelope import Envelope
from mesh.events.runtime import EventSpec
from mesh.events.subscriptions import subscribe, subscriptions_in
from mesh.unit_of_work import UnitOfWork
from services.sales import dms_events, erp_events
from services.sales.domain import opportunity as rules
from services.sales.domain.opportunity import Opportunity, Stage
from services.sales.domain.orders import Order, OrderState
from services.sales.store import opportunities as store
from services.sales.store import testdrives as drives
from services.sales.store.tables import INBOX, OUTBOX


def _stage(stage: Stage) -> str:
    return f"STAGE_{stage.value}"


def opened(opp: Opportunity) -> sales_events_pb2.OpportunityOpened:
    """A dealer's new opportunity for a lead."""
    return sales_events_pb2.OpportunityOpened(
        opportunity_id=opp.id,
        lead_id=opp.lead_id,
        dealer_id=opp.dealer_id,
        open_time=timestamp(opp.create_time),
    )


def stage_changed(
    before: Opportunity, after: Opportunity
) -> sales_events_pb2.OpportunityStageChanged:
    """The opportunity's move (of stage, or to another dealer)."""
    return sales_events_pb2.OpportunityStageChanged(
        opportunity_id=after.id,
        lead_id=after.lead_id,
        dealer_id=after.dealer_id,
        stage=_stage(after.stage),
        previous_stage=_stage(before.stage),
        lost_reason=after.lost_reason,
        member_id=after.member_id,
        change_time=timestamp(after.update_time),
    )


def facts(order: Order, lead_id: str) -> sales_events_pb2.OrderFacts:
    """What every event of an order carries."""
    return sales_events_pb2.OrderFacts(
        order_id=order.id,
        opportunity_id=order.opportunity_id,
        lead_id=lead_id,
        dealer_id=order.dealer_id,
        member_id=order.member_id,
        model_code=order.model_code,
        trim_code=order.trim_code,
        option_codes=list(order.option_codes),
        invoice_price=money(order.invoice_price),
        state=f"ORDER_STATE_{order.state.value}",
        vin=order.vin,
    )


def order_event(order: Order, lead_id: str) -> Message:
    """The event of the state the order has just entered."""
    f, when = facts(order, lead_id), timestamp(order.update_time)
    match order.state:
        case OrderState.DEPOSIT_PENDING:
            return sales_events_pb2.OrderPlaced(
                order=f, deposit=money(order.deposit), place_time=when
            )
        case OrderState.CONFIRMED:
            return sales_events_pb2.OrderConfirmed(
                order=f, deposit=money(order.deposit_paid), confirm_time=when
            )
        case OrderState.ALLOCATED:
            return sales_events_pb2.OrderAllocated(order=f, allocate_time=when)
        case OrderState.INVOICED:
            return sales_events_pb2.OrderInvoiced(
                order=f, invoice_number=order.invoice_number, invoice_time=when
            )
        case OrderState.DELIVERED:
            return sales_events_pb2.OrderDelivered(
                order=f, delivery_time=timestamp(order.delivery_time)
            )
        case OrderState.CANCELLED:
            return sales_events_pb2.OrderCancelled(
                order=f, reason=order.cancel_reason, refund=money(order.refund), cancel_time=when
            )
    raise AssertionError(order.state)


async def open_or_move(
    uow: UnitOfWork,
    lead_id: str,
    dealer_id: str,
    model_interest: str,
    now: dt.datetime,
    *,
    move: bool = True,
) -> Opportunity:
    """The dealer's opportunity for the lead: opened once (a duplicated event finds it),
    moved when the lead went to another dealer (`move`: LeadAssigned; LeadCreated only
    opens, since its consumer may run after a later LeadAssigned's)."""
    found = await store.of_lead(uow.conn, lead_id)
    if found is None:
        opp = rules.open_for_lead(
            f"opp_{uuid.uuid4().hex[:24]}", lead_id, dealer_id, "", model_interest, now
        )
        await store.insert(uow.conn, opp)
        uow.emit(opened(opp), subject=opp.id)
        return opp
    if not move:
        return found
    moved = rules.reassign(found, dealer_id, now)
    if moved is not found:
        await store.update(uow.conn, moved)
        uow.emit(stage_changed(found, moved), subject=moved.id)
    return moved


@subscribe(lead_events_pb2.LeadCreated)
async def on_lead_created(
    uow: UnitOfWork, event: lead_events_pb2.LeadCreated, envelope: Envelope
) -> None:
    """A lead routed to a dealer at intake: the dealer's opportunity (once)."""
    if event.dealer_id:
        await open_or_move(
            uow, event.lead_id, event.dealer_id, event.brand, envelope.time, move=False
        )


@subscribe(lead_events_pb2.LeadAssigned)
async def on_lead_assigned(
    uow: UnitOfWork, event: lead_events_pb2.LeadAssigned, envelope: Envelope
) -> None:
    """A lead given to a dealer: its opportunity opened there, or moved there."""
    await open_or_move(uow, event.lead_id, event.dealer_id, "", envelope.time)


@subscribe(member_events_pb2.MemberErased)
async def on_member_erased(
    uow: UnitOfWork, event: member_events_pb2.MemberErased, envelope: Envelope
) -> None:
    """Erase the member's free text here, keep the facts, say it is done."""
    erased = await store.erase_notes_of_member(uow.conn, event.member_id)
    erased += await drives.erase_feedback_of_member(uow.conn, event.member_id)
    now = dt.datetime.now(dt.UTC)
    done = sales_events_pb2.SalesDataErased(
        member_id=event.member_id, records_erased=erased, erase_time=timestamp(now)
    )
    uow.emit(done, subject=event.member_id)


EVENTS = EventSpec(
    service="sales",
    outbox=OUTBOX,
    inbox=INBOX,
    subscriptions=subscriptions_in(
        on_lead_created, on_lead_assigned, on_member_erased, erp_events, dms_events
    ),
)

"""What sales does with the DMS adapter's events (`marque.dms.v1`): a dealer's retail
delivery report (RDR) is the delivery confirmation of its order. Listed in events.py's
`subscriptions_in(...)`.

The order is the RDR's Marque order id when it carries one (`sales_transaction_number`),
else the order the VIN is allocated to (the dealer's stock); it must be the reporting
dealer's, and the car handed over must be the allocated one.
- INVOICED: the RDR is the delivery: the order becomes DELIVERED at the RDR's time (the
  DMS's clock, kept between the invoice and now), with OrderDelivered (member makes the
  buyer the owner, lead marks the lead WON) and the opportunity at DELIVERED, as
  RecordDelivery does; the handover checklist stays as it was (the DMS reports the
  handover, not its items).
- DELIVERED: sales recorded the delivery itself; the RDR confirms it and changes nothing.
- any other state, another dealer's order, an unknown VIN: nothing changes (logged by
  event id only). A VIN that is not the allocated one is the order's refusal
  (FAILED_PRECONDITION VEHICLE_MISMATCH): the event becomes a dead letter for an operator,
  as any event sales cannot apply.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import replace

from marque.dms.v1 import dms_events_pb2

from mesh.convert import datetime_of
from mesh.events.envelope import Envelope
from mesh.events.subscriptions import subscribe
from mesh.unit_of_work import UnitOfWork
from services.sales.domain import opportunity as opportunity_rules
from services.sales.domain import orders as rules
from services.sales.domain.opportunity import Stage
from services.sales.domain.orders import OrderState
from services.sales.store import opportunities as opportunity_store
from services.sales.store import orders as store
from services.sales.store.orders import OrderRow

log = logging.getLogger(__name__)


async def _order_of(
    uow: UnitOfWork, event: dms_events_pb2.RetailDeliveryReported
) -> OrderRow | None:
    """The reporting dealer's order the RDR is about (locked), or None."""
    order_id = event.order_id
    if not order_id or (found := await store.get(uow.conn, order_id, lock=True)) is None:
        car = await store.stock(uow.conn, event.vin)
        if car is None or car[3] is None:
            return None
        found = await store.get(uow.conn, car[3], lock=True)
    if found is None or found.order.dealer_id != event.dealer_id:
        return None
    return found


async def _advance_opportunity(uow: UnitOfWork, opportunity_id: str, now: dt.datetime) -> None:
    """The opportunity at DELIVERED (never back), its change an event lead follows."""
    from services.sales import events  # events.py lists this module

    opp = await opportunity_store.get(uow.conn, opportunity_id, lock=True)
    if opp is None:
        return
    after = opportunity_rules.advance(opp, Stage.DELIVERED, now)
    if after != opp:
        await opportunity_store.update(uow.conn, after)
        if after.stage is not opp.stage:
            uow.emit(events.stage_changed(opp, after), subject=after.id)


@subscribe(dms_events_pb2.RetailDeliveryReported)
async def on_retail_delivery_reported(
    uow: UnitOfWork, event: dms_events_pb2.RetailDeliveryReported, envelope: Envelope
) -> None:
    """A dealer's DMS reports a car handed over: the delivery of its invoiced order."""
    from services.sales import events, metrics  # events.py lists this module

    row = await _order_of(uow, event)
    if row is None:
        log.info("RetailDeliveryReported %s: no order of the dealer for it", envelope.id)
        return
    if row.order.state is not OrderState.INVOICED:
        log.info(
            "RetailDeliveryReported %s: order in %s, nothing to do",
            envelope.id,
            row.order.state.value,
        )
        return
    now = dt.datetime.now(dt.UTC)
    # The DMS's clock (often to the second): kept within [the invoice, now] of ours.
    at = min(datetime_of(event.delivery_time), now)
    if row.order.invoice_time is not None:
        at = max(at, row.order.invoice_time)
    after = replace(row, order=rules.deliver(row.order, event.vin, at))
    await store.update(uow.conn, after)
    uow.emit(events.order_event(after.order, after.lead_id), subject=after.order.id)
    uow.after_commit(lambda: metrics.order_entered(OrderState.DELIVERED.value))
    await _advance_opportunity(uow, after.order.opportunity_id, now)

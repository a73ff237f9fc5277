"""The DMS adapter's events: the four inbound ones out, sales' OrderDelivered in.

Emitted (`marque.dms.v1`, subject "<dealer>/<DMS id>"), one per accepted inbound
document, written by intake.py in the transaction that records the document:
RepairOrderReceived (estimate lines), RepairStatusChanged (stage), RetailDeliveryReported
(sales delivers or confirms the order: services/sales/dms_events.py) and
ServiceAppointmentReceived. aftersales does not exist yet: its consumers come later.
Consumed (`marque.sales.v1`): OrderDelivered -> the RDR to the dealer's DMS, sent before
the unit of work (`prepare_deliveries`, engine.prepare) and recorded with the inbox row
(engine.deliver). While the DMS is down (or the breaker
refuses) the handler raises `mesh.errors.Unavailable`: the consumer naks the event with a
growing delay and never makes it a dead letter, so deliveries wait in the stream. A
dealer without an endpoint, or a DMS that refuses the RDR (4xx), is InvalidArgument: a
dead letter after MARQUE_EVENTS_MAX_DELIVER attempts, replayed with
`python -m mesh.events.replay dms` once fixed.

The handlers start before the lifespan has built the client, so app.py binds the engine
here (`bind`) and a handler that finds none yet raises Unavailable (retried).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from google.protobuf.message import Message
from marque.dms.v1 import dms_events_pb2
from marque.sales.v1 import sales_events_pb2

from mesh.convert import datetime_of, decimal_of, money, timestamp
from mesh.events import spans
from mesh.events.envelope import Envelope
from mesh.events.late import LateBound
from mesh.events.runtime import EventSpec
from mesh.events.subscriptions import subscribe, subscriptions_in
from mesh.unit_of_work import UnitOfWork
from services.adapters.dms.domain import errors
from services.adapters.dms.domain.model import (
    Amount,
    Appointment,
    DeliveryReport,
    InboundDocument,
    Parsed,
    RepairOrder,
    RepairStatus,
)
from services.adapters.dms.domain.outbound import DeliveredOrder
from services.adapters.dms.store.tables import INBOX, OUTBOX

if TYPE_CHECKING:
    from services.adapters.dms.engine import DmsEngine

ENGINE: LateBound[DmsEngine] = LateBound(errors.not_ready)
_engine = ENGINE.get


def bind(engine: DmsEngine | None) -> None:
    """The engine the handlers use (None: none, while the service stops)."""
    ENGINE.bind(engine)


def _money(amount: Amount | None) -> object:
    return None if amount is None else money(amount.value, amount.currency)


def _repair_order(doc: InboundDocument, ro: RepairOrder) -> dms_events_pb2.RepairOrderReceived:
    return dms_events_pb2.RepairOrderReceived(
        dealer_id=doc.dealer_id,
        repair_order_id=ro.repair_order_id,
        revision=doc.revision,
        vin=ro.vin,
        lines=[
            dms_events_pb2.EstimateLine(
                labor_operation_id=line.labor_operation_id,
                labor_operation_code=line.code,
                name=line.name,
                status=line.status,
                amount=_money(line.amount),  # type: ignore[arg-type]
            )
            for line in ro.lines
        ],
        total=_money(ro.total),  # type: ignore[arg-type]
        document_id=doc.document_id,
        receive_time=timestamp(doc.receive_time),
    )


def inbound_event(doc: InboundDocument, parsed: Parsed) -> Message:
    """The event of an accepted document (ids, codes, stages, VINs, amounts, times)."""
    d = parsed.document
    if isinstance(d, RepairOrder):
        return _repair_order(doc, d)
    if isinstance(d, RepairStatus):
        return dms_events_pb2.RepairStatusChanged(
            dealer_id=doc.dealer_id,
            repair_order_id=d.repair_order_id,
            status_event_id=d.status_event_id,
            stage=d.stage,
            status=d.status,
            occur_time=timestamp(d.occur_time),
            document_id=doc.document_id,
        )
    if isinstance(d, DeliveryReport):
        return dms_events_pb2.RetailDeliveryReported(
            dealer_id=doc.dealer_id,
            rdr_id=d.rdr_id,
            vin=d.vin,
            order_id=d.order_id,
            rdr_status=d.rdr_status,
            purchase_type=d.purchase_type,
            delivery_time=timestamp(d.delivery_time),
            document_id=doc.document_id,
        )
    assert isinstance(d, Appointment)
    return dms_events_pb2.ServiceAppointmentReceived(
        dealer_id=doc.dealer_id,
        appointment_id=d.appointment_id,
        revision=doc.revision,
        status=d.status,
        appointment_types=list(d.types),
        vin=d.vin,
        start_time=timestamp(d.start_time),
        end_time=timestamp(d.end_time),
        document_id=doc.document_id,
    )


def delivered_order(event: sales_events_pb2.OrderDelivered) -> DeliveredOrder:
    """The facts of sales' OrderDelivered the RDR needs."""
    facts = event.order
    return DeliveredOrder(
        order_id=facts.order_id,
        dealer_id=facts.dealer_id,
        vin=facts.vin,
        model_code=facts.model_code,
        trim_code=facts.trim_code,
        price=decimal_of(facts.invoice_price),
        currency=facts.invoice_price.currency_code or "CNY",
        delivery_time=datetime_of(event.delivery_time),
    )


async def prepare_deliveries(
    events: Sequence[sales_events_pb2.OrderDelivered], envelopes: Sequence[Envelope]
) -> None:
    """The batch's RDRs sent before (outside) the consumer's unit of work, each HTTP call in
    the trace of the event that caused it."""
    engine = await _engine()
    parents = [spans.remote_context(env.traceparent, env.tracestate) for env in envelopes]
    await engine.prepare([delivered_order(e) for e in events], parents)


@subscribe(sales_events_pb2.OrderDelivered, prepare=prepare_deliveries)
async def on_order_delivered(
    uow: UnitOfWork, event: sales_events_pb2.OrderDelivered, envelope: Envelope
) -> None:
    """A delivered order: its RDR (sent by `prepare_deliveries`) recorded, once."""
    engine = await _engine()
    await engine.deliver(uow, delivered_order(event))


EVENTS = EventSpec(
    service="dms",
    outbox=OUTBOX,
    inbox=INBOX,
    subscriptions=subscriptions_in(on_order_delivered),
)

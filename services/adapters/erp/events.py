"""The ERP adapter's events: sales' OrderConfirmed in, SalesOrderCreated out.

Consumed (`marque.sales.v1`): OrderConfirmed -> the SAP sales order, by deep insert with
the Marque order id in PurchaseOrderByCustomer. A batch handler with a `prepare`
(mesh/events/subscriptions.py): `prepare_orders` takes the consumer's batch to SAP before
the consumer's unit of work, up to MARQUE_ERP_ADAPTER_SAP_MAX_CONNECTIONS calls at once,
holding no transaction; `on_orders_confirmed` then records the outcomes with the inbox rows
(engine.py says how exactly-once holds across the two).
While SAP is down (or the breaker refuses) the handler raises
`mesh.errors.Unavailable`: the consumer naks the event with a growing delay and never
makes it a dead letter, so orders wait in the stream and reach SAP when it is back. An
order SAP can never take (a field too long) is InvalidArgument: a dead letter after
MARQUE_EVENTS_MAX_DELIVER attempts, replayed with `python -m mesh.events.replay erp`.
Emitted (`marque.erp.v1`, subject the order id): SalesOrderCreated, once per order.

The handlers start before the lifespan has built the SAP client, so app.py binds the engine
here (`bind`) and a handler that finds none yet raises Unavailable (retried).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from marque.erp.v1 import erp_events_pb2
from marque.sales.v1 import sales_events_pb2

from mesh.convert import decimal_of, money, timestamp
from mesh.events import spans
from mesh.events.envelope import Envelope
from mesh.events.late import LateBound
from mesh.events.runtime import EventSpec
from mesh.events.subscriptions import subscribe, subscriptions_in
from mesh.unit_of_work import UnitOfWork
from services.adapters.erp.domain import errors
from services.adapters.erp.domain.model import OrderRequest, SalesOrder
from services.adapters.erp.domain.orders import order_request
from services.adapters.erp.store.tables import INBOX, OUTBOX

if TYPE_CHECKING:
    from services.adapters.erp.engine import ErpEngine

ENGINE: LateBound[ErpEngine] = LateBound(errors.not_ready)
_engine = ENGINE.get


def bind(engine: ErpEngine | None) -> None:
    """The engine the handlers use (None: none, while the service stops)."""
    ENGINE.bind(engine)


def sales_order_created(order: SalesOrder) -> erp_events_pb2.SalesOrderCreated:
    """SAP's order of a Marque order, as sales learns of it."""
    return erp_events_pb2.SalesOrderCreated(
        order_id=order.order_id,
        sap_sales_order=order.sap_sales_order,
        net_amount=money(order.net_amount, order.currency or "CNY"),
        create_time=timestamp(order.create_time),
    )


def _request(engine: ErpEngine, event: sales_events_pb2.OrderConfirmed) -> OrderRequest:
    facts = event.order
    return order_request(
        engine.config,
        order_id=facts.order_id,
        dealer_id=facts.dealer_id,
        model_code=facts.model_code,
        trim_code=facts.trim_code,
        option_codes=list(facts.option_codes),
        price=decimal_of(facts.invoice_price),
        currency=facts.invoice_price.currency_code or "CNY",
    )


async def prepare_orders(
    events: Sequence[sales_events_pb2.OrderConfirmed], envelopes: Sequence[Envelope]
) -> None:
    """The batch's SAP calls, before (outside) the consumer's unit of work, each HTTP call
    in the trace of the event that caused it."""
    engine = await _engine()
    reqs = [_request(engine, e) for e in events]
    parents = [spans.remote_context(env.traceparent, env.tracestate) for env in envelopes]
    await engine.prepare(reqs, parents)


@subscribe(sales_events_pb2.OrderConfirmed, batch=True, prepare=prepare_orders)
async def on_orders_confirmed(
    uow: UnitOfWork,
    events: Sequence[sales_events_pb2.OrderConfirmed],
    envelopes: Sequence[Envelope],
) -> None:
    """Confirmed orders: their SAP sales orders (made by `prepare_orders`) recorded once
    each, and SalesOrderCreated."""
    engine = await _engine()
    await engine.record(uow, [e.order.order_id for e in events])


EVENTS = EventSpec(
    service="erp",
    outbox=OUTBOX,
    inbox=INBOX,
    subscriptions=subscriptions_in(on_orders_confirmed),
)

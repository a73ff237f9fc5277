"""The ERP adapter's events: sales' OrderConfirmed in, SalesOrderCreated out.

Consumed (`marque.sales.v1`): OrderConfirmed -> the SAP sales order, by deep insert with
the Marque order id in PurchaseOrderByCustomer (engine.take_to_sap), recorded with the
inbox row; a batch handler, so the consumer's batch goes to SAP concurrently (one HTTP
round trip at a time per order would cap the adapter at 1/latency orders a second).
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

import asyncio
from collections.abc import Sequence
from typing import TYPE_CHECKING

from marque.erp.v1 import erp_events_pb2
from marque.sales.v1 import sales_events_pb2

from mesh.convert import decimal_of, money, timestamp
from mesh.events.envelope import Envelope
from mesh.events.runtime import EventSpec
from mesh.events.subscriptions import subscribe, subscriptions_in
from mesh.unit_of_work import UnitOfWork
from services.adapters.erp.domain import errors
from services.adapters.erp.domain.model import OrderRequest, SalesOrder
from services.adapters.erp.domain.orders import order_request
from services.adapters.erp.store.tables import INBOX, OUTBOX

if TYPE_CHECKING:
    from services.adapters.erp.engine import ErpEngine

_bound: list[ErpEngine] = []
_WAIT_SECONDS = 5.0


def bind(engine: ErpEngine | None) -> None:
    """The engine the handlers use (None: none, while the service stops)."""
    _bound.clear()
    if engine is not None:
        _bound.append(engine)


async def _engine() -> ErpEngine:
    for _ in range(int(_WAIT_SECONDS / 0.05)):
        if _bound:
            return _bound[0]
        await asyncio.sleep(0.05)
    raise errors.not_ready()


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


@subscribe(sales_events_pb2.OrderConfirmed, batch=True)
async def on_orders_confirmed(
    uow: UnitOfWork,
    events: Sequence[sales_events_pb2.OrderConfirmed],
    envelopes: Sequence[Envelope],
) -> None:
    """Confirmed orders (the consumer's batch, taken to SAP concurrently): their SAP sales
    orders, once each, and SalesOrderCreated."""
    engine = await _engine()
    await engine.take_to_sap(uow, [_request(engine, e) for e in events])


EVENTS = EventSpec(
    service="erp",
    outbox=OUTBOX,
    inbox=INBOX,
    subscriptions=subscriptions_in(on_orders_confirmed),
)

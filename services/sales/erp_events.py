"""What sales does with the ERP adapter's events (`marque.erp.v1`): SalesOrderCreated puts
the SAP sales order number on the order, once (a redelivery, or an order that has one,
changes nothing). Listed in events.py's `subscriptions_in(...)`."""

from __future__ import annotations

import logging

from marque.erp.v1 import erp_events_pb2

from mesh.events.envelope import Envelope
from mesh.events.subscriptions import subscribe
from mesh.unit_of_work import UnitOfWork
from services.sales.store.sap_numbers import set_sap_sales_order

log = logging.getLogger(__name__)


@subscribe(erp_events_pb2.SalesOrderCreated)
async def on_sales_order_created(
    uow: UnitOfWork, event: erp_events_pb2.SalesOrderCreated, envelope: Envelope
) -> None:
    """SAP has the order: its number on the order."""
    if not await set_sap_sales_order(uow.conn, event.order_id, event.sap_sales_order):
        log.info("SalesOrderCreated %s: the order has its SAP number or is unknown", envelope.id)

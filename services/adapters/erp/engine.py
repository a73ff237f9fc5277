"""The ERP adapter's application layer: GetSalesOrder, and taking a confirmed order to SAP.

Access is decided once per call (`domain/visibility.py`). The SAP call of a confirmed
order runs inside the consumer's unit of work, so the SAP number, the inbox row and
SalesOrderCreated in the outbox commit together; if anything fails after SAP created the
order, the event is redelivered and the backend's look-up finds that order instead of
creating a second (sap/backend.py).
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable, Sequence

from mesh.db import Database
from mesh.errors import PermissionDenied
from mesh.identity import Caller
from mesh.unit_of_work import UnitOfWork
from services.adapters.erp import metrics
from services.adapters.erp.domain import errors, visibility
from services.adapters.erp.domain.config import ErpConfig
from services.adapters.erp.domain.model import OrderRequest, SalesOrder
from services.adapters.erp.sap.backend import Backend
from services.adapters.erp.store import orders

Clock = Callable[[], dt.datetime]
CREATED, FOUND = "CREATED", "FOUND"


def utc_now() -> dt.datetime:
    """The production clock."""
    return dt.datetime.now(dt.UTC)


class ErpEngine:
    """One method per job; the servicer and the event handler call it."""

    def __init__(
        self, db: Database, config: ErpConfig, backend: Backend, clock: Clock = utc_now
    ) -> None:
        self.db = db
        self.config = config
        self.backend = backend
        self.clock = clock

    async def get_sales_order(
        self, caller: Caller, *, order_id: str = "", sap_sales_order: str = ""
    ) -> SalesOrder:
        """SAP's current view of an order (status, net amount), by either key."""
        if not visibility.may_read(caller):
            raise PermissionDenied("sales orders are the OEM's")
        number = sap_sales_order
        if order_id:
            async with self.db.engine.connect() as conn:
                recorded = await orders.of_order(conn, order_id)
            if recorded is None:
                found = await self.backend.find(order_id)
                if found is None:
                    raise errors.sales_order_not_found(order_id)
                return found
            number = recorded.order.sap_sales_order
        order = await self.backend.read(number)
        if order is None:
            raise errors.sales_order_not_found(number)
        return order

    async def take_to_sap(self, uow: UnitOfWork, reqs: Sequence[OrderRequest]) -> list[SalesOrder]:
        """The SAP orders of confirmed Marque orders, created once each (up to
        `config.max_connections` at a time), recorded and announced (SalesOrderCreated) in
        `uow`; orders recorded before (a redelivery) are skipped. If one fails, this raises
        and nothing is recorded: the consumer runs the events again one by one, and the
        orders SAP did create are found by the backend's look-up, not created again."""
        from services.adapters.erp import events  # events.py imports this module

        known = await orders.recorded_among(uow.conn, [r.order_id for r in reqs])
        todo = list({r.order_id: r for r in reqs if r.order_id not in known}.values())
        gate = asyncio.Semaphore(self.config.max_connections)

        async def one(req: OrderRequest) -> tuple[SalesOrder, bool]:
            async with gate:
                return await self.backend.create_sales_order(req)

        results = await asyncio.gather(*(one(r) for r in todo), return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result
        done = [r for r in results if not isinstance(r, BaseException)]
        now = self.clock()
        for order, found in done:
            await orders.insert(uow.conn, order, FOUND if found else CREATED, now)
            uow.emit(events.sales_order_created(order), subject=order.order_id)

        def count() -> None:
            for _, found in done:
                metrics.record_order(found)

        uow.after_commit(count)
        return [order for order, _ in done]

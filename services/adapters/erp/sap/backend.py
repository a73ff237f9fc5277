"""What the engine asks of the ERP (`Backend`), and its SAP implementation.

SAP has no idempotency key, so `SapBackend.create_sales_order` keeps "never two SAP orders
for one Marque order" itself: it looks the order up by PurchaseOrderByCustomer before the
first create when an earlier attempt may have created it and then been lost (`look_first`:
the engine's claim says whether the order was tried before: a crash before our commit, a
timeout, an outage), and again after every unclear failure (a timeout, a broken
connection) before creating again. An order never tried goes straight to the create: one
round trip, not two. Only a failure that certainly did
nothing (SAP unreachable, a 5xx before the create, the breaker) is raised as it is.

Every call goes through the breaker (mesh/breaker.py): while SAP is down most calls are
refused locally, fast, as `Unavailable`, which the event consumer retries later without
ever dead-lettering (mesh/events/consumer.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Protocol, TypeVar

from mesh.breaker import AdaptiveBreaker
from services.adapters.erp import metrics
from services.adapters.erp.domain import errors, fields, odata
from services.adapters.erp.domain.model import OrderRequest, SalesOrder
from services.adapters.erp.sap.client import ODataClient

T = TypeVar("T")


class Backend(Protocol):
    """The ERP as the engine sees it."""

    async def create_sales_order(
        self, req: OrderRequest, *, look_first: bool = True
    ) -> tuple[SalesOrder, bool]:
        """The order's sales order, created unless it exists (looked up first when
        `look_first`); (order, found) where found says an earlier attempt had created it."""
        ...

    async def find(self, order_id: str) -> SalesOrder | None:
        """The sales order of a Marque order, if the ERP has one."""
        ...

    async def read(self, sap_sales_order: str) -> SalesOrder | None:
        """A sales order by its ERP number."""
        ...

    async def aclose(self) -> None:
        """Release connections."""
        ...


class SapBackend:
    """`Backend` over the OData client, with lookup-before-retry and the breaker."""

    def __init__(
        self,
        client: ODataClient,
        breaker: AdaptiveBreaker,
        *,
        attempts: int = 3,
        backoff_seconds: float = 0.2,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.client = client
        self.breaker = breaker
        self._attempts = attempts
        self._backoff = backoff_seconds
        self._sleep = sleep

    async def _call(self, fn: Callable[[], Awaitable[T]]) -> T:
        return await self.breaker.call(fn)

    async def find(self, order_id: str) -> SalesOrder | None:
        found = await self._call(lambda: self.client.find(order_id))
        if not found:
            return None
        # Two would be a double created before this adapter ran; the first one is kept.
        first = min(found, key=lambda d: str(d.get("SalesOrder", "")))
        return odata.sales_order(first)

    async def read(self, sap_sales_order: str) -> SalesOrder | None:
        d = await self._call(lambda: self.client.read(sap_sales_order))
        return None if d is None else odata.sales_order(d)

    async def create_sales_order(
        self, req: OrderRequest, *, look_first: bool = True
    ) -> tuple[SalesOrder, bool]:
        body = odata.payload(req)
        violations = fields.check_payload(body)
        if violations:
            raise errors.field_invalid(violations)
        if look_first:
            existing = await self.find(req.order_id)
            if existing is not None:
                return existing, True
        for attempt in range(1, self._attempts + 1):
            try:
                created = await self._call(lambda: self.client.create(body))
                return odata.sales_order(created), False
            except errors.SapTimeout:
                if attempt == self._attempts:
                    raise
            await self._sleep(self._backoff * 2 ** (attempt - 1))
            existing = await self.find(req.order_id)  # did the unclear attempt create it?
            if existing is not None:
                return existing, True
        raise AssertionError("unreachable")

    async def aclose(self) -> None:
        await self.client.aclose()


def record(result: tuple[SalesOrder, bool]) -> SalesOrder:
    """Count a created (or found) order; the order."""
    metrics.record_order(result[1])
    return result[0]

"""The ERP adapter's application layer: GetSalesOrder, and taking confirmed orders to SAP.

Access is decided once per call (`domain/visibility.py`).

A consumer batch of confirmed orders goes to SAP in two steps, so that no database
transaction is ever open across an HTTP call (50 ms and more: on PostgreSQL a held
connection, on SQLite the one write lock, which every other writer would wait for):
1. `prepare` (the subscription's prepare, before the consumer's unit of work): one short
   transaction claims the batch's orders (store/claims.py): recorded ones are skipped, one
   whose lease another delivery holds waits (Unavailable), the others are leased to this
   call. Then up to `config.max_connections` SAP calls at once, each in its event's trace:
   an order never tried goes straight to the create (one round trip); one tried before is
   looked up by PurchaseOrderByCustomer first (sap/backend.py). A second short transaction
   releases the leases of the calls that failed (their rows stay: SAP may have the order).
   The outcomes are kept for step 2.
2. `record` (the handler, in the consumer's unit of work with the inbox rows): each created
   or found order is recorded in sap_orders, its claim dropped, SalesOrderCreated emitted;
   a failed one raises its error, and the consumer runs the batch again one event at a
   time, so only that event is nak'd (the others' outcomes are still kept).
Exactly once rests on the inbox (an event's effect once), sap_orders' primary key (an order
recorded once), the claim (one caller of SAP per order at a time, and "tried before"
remembered across crashes) and the look-up before any create that might repeat one.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable, Sequence

from opentelemetry import context as otel_context
from opentelemetry.trace import SpanContext

from mesh.db import Database
from mesh.errors import PermissionDenied
from mesh.events import spans
from mesh.identity import Caller
from mesh.unit_of_work import UnitOfWork, transaction
from services.adapters.erp import metrics
from services.adapters.erp.domain import errors, visibility
from services.adapters.erp.domain.config import ErpConfig
from services.adapters.erp.domain.model import OrderRequest, SalesOrder
from services.adapters.erp.sap.backend import Backend
from services.adapters.erp.store import claims, orders

Clock = Callable[[], dt.datetime]
Outcome = tuple[SalesOrder, bool] | BaseException
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
        self._gate = asyncio.Semaphore(config.max_connections)
        # The last prepared batch's outcomes, by Marque order id (one consumer per
        # subscription handles one batch at a time: prepare, then its unit of work).
        self._outcomes: dict[str, Outcome] = {}

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

    # -- confirmed orders to SAP --------------------------------------------------------------

    async def prepare(
        self, reqs: Sequence[OrderRequest], parents: Sequence[SpanContext | None] = ()
    ) -> None:
        """Step 1 (module docstring): claim, call SAP concurrently, release what failed;
        `parents[i]` is the trace of `reqs[i]`'s event (its HTTP spans go there)."""
        wanted: dict[str, tuple[OrderRequest, SpanContext | None]] = {}
        for i, req in enumerate(reqs):
            wanted.setdefault(req.order_id, (req, parents[i] if i < len(parents) else None))
        now = self.clock()
        lease_until = now + dt.timedelta(seconds=self.config.lease_seconds)

        async def claim(uow: UnitOfWork) -> claims.Claims:
            return await claims.claim(uow.conn, wanted, now, lease_until)

        got = await transaction(self.db, claim)
        outcomes: dict[str, Outcome] = {i: errors.in_progress() for i in got.held}
        todo = sorted(got.fresh | got.retried)
        # Cancelled (the service stops), the leases are kept to their end: a create cut off
        # mid-flight may still be committed by SAP, so no one may look it up at once.
        results = await asyncio.gather(
            *(self._call(*wanted[i], look_first=i in got.retried) for i in todo),
            return_exceptions=True,
        )
        failed = []
        for order_id, result in zip(todo, results, strict=True):
            outcomes[order_id] = result
            if isinstance(result, BaseException):
                failed.append(order_id)
        if failed:
            await self._release(failed)
        self._outcomes = outcomes

    async def _call(
        self, req: OrderRequest, parent: SpanContext | None, *, look_first: bool
    ) -> tuple[SalesOrder, bool]:
        async with self._gate:
            token = otel_context.attach(spans.parent_of(parent)) if parent is not None else None
            try:
                return await self.backend.create_sales_order(req, look_first=look_first)
            finally:
                if token is not None:
                    otel_context.detach(token)

    async def _release(self, order_ids: Sequence[str]) -> None:
        async def release(uow: UnitOfWork) -> None:
            await claims.release(uow.conn, order_ids, self.clock())

        await transaction(self.db, release)

    async def record(self, uow: UnitOfWork, order_ids: Sequence[str]) -> list[SalesOrder]:
        """Step 2 (module docstring), in `uow`: the prepared orders recorded and announced
        (SalesOrderCreated); orders recorded before (a redelivery) are skipped; a failed
        or unprepared one raises (Unavailable waits, InvalidArgument becomes a dead letter
        in time)."""
        from services.adapters.erp import events  # events.py imports this module

        ids = list(dict.fromkeys(order_ids))
        known = await orders.recorded_among(uow.conn, ids)
        done: list[tuple[SalesOrder, bool]] = []
        for order_id in ids:
            if order_id in known:
                continue
            outcome = self._outcomes.get(order_id)
            if outcome is None:
                raise errors.not_prepared()
            if isinstance(outcome, BaseException):
                raise outcome
            done.append(outcome)
        now = self.clock()
        await orders.insert_many(uow.conn, [(o, FOUND if f else CREATED) for o, f in done], now)
        await claims.forget(uow.conn, [o.order_id for o, _ in done])
        for order, _ in done:
            uow.emit(events.sales_order_created(order), subject=order.order_id)

        def count() -> None:
            for _, found in done:
                metrics.record_order(found)

        uow.after_commit(count)
        return [order for order, _ in done]

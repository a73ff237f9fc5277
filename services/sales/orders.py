"""The sales engine's orders: PutStockVehicle, CreateOrder, PayDeposit, AllocateVehicle,
InvoiceOrder, RecordDelivery, CancelOrder, GetOrder, ListOrders.

CreateOrder and PayDeposit, the hot pair, are group-committed (order_writer.py: many calls
in one transaction, the same rules); every other transition is one transaction: the
order's row (locked, its etag checked), the domain's step (domain/orders.py, which refuses
an illegal one naming the current state), its event in the outbox, and the opportunity's
stage where it moves (ORDER, DELIVERED).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from decimal import Decimal

from mesh import vin as vins
from mesh.identity import Caller
from mesh.tracing import current_span_context
from mesh.unit_of_work import UnitOfWork
from services.sales import events, metrics
from services.sales.base import new_id
from services.sales.domain import orders as rules
from services.sales.domain import visibility as vis
from services.sales.domain.errors import (
    ORDER_NOT_FOUND,
    STOCK_VEHICLE_NOT_FOUND,
    VEHICLE_UNAVAILABLE,
    invalid,
    not_found,
    refused,
)
from services.sales.domain.opportunity import Stage
from services.sales.domain.orders import Order, OrderState
from services.sales.order_writer import NewOrder, Payment, Retried
from services.sales.quotes import Quotes
from services.sales.store import opportunities as opportunity_store
from services.sales.store import orders as store
from services.sales.store.orders import OrderRow

CREATE_ORDER = "CreateOrder"
Step = Callable[[UnitOfWork, OrderRow, dt.datetime], Awaitable[OrderRow]]


class Orders(Quotes):
    """Orders from quotes to delivery, and the stock they are allocated from."""

    async def put_stock_vehicle(
        self, vin: str, dealer_id: str, model_code: str, trim_code: str, *, caller: Caller
    ) -> tuple[str, str]:
        """PutStockVehicle: (vin, dealer) of a car added to the dealer's stock."""
        vin = vins.normalize("vehicle.vin", vin)
        dealer = vis.dealer_for(caller, dealer_id, "vehicle.dealer_id")

        async def work(uow: UnitOfWork) -> None:
            if not await store.put_stock(uow.conn, vin, dealer, model_code, trim_code):
                raise refused(VEHICLE_UNAVAILABLE, f"car {vin} is allocated or not the dealer's")

        await self.write(work)
        return vin, dealer

    async def create_order(
        self,
        quote_id: str,
        deposit: Decimal,
        member_id: str,
        *,
        request_id: str,
        caller: Caller,
    ) -> OrderRow:
        """CreateOrder: from a quote still valid, its prices locked; DEPOSIT_PENDING."""
        now, today = self.clock(), self.today()
        req = self.request(caller, request_id, CREATE_ORDER, quote_id, str(deposit), member_id)

        outcome = await self.order_writer.submit(
            NewOrder(quote_id, deposit, member_id, req, caller, new_id("ord"), now, today,
                     current_span_context())
        )  # fmt: skip
        if isinstance(outcome, Retried):
            return await self.get_order(outcome.order_id, caller=caller)
        return outcome

    async def _step(self, order_id: str, etag: str, caller: Caller, step: Step) -> OrderRow:
        now = self.clock()

        async def work(uow: UnitOfWork) -> OrderRow:
            row = await store.get(uow.conn, order_id, lock=True)
            if row is None or not vis.may_change(caller, row.order.dealer_id):
                raise not_found(ORDER_NOT_FOUND, "order", order_id)
            rules.check_etag(row.order, etag)
            after = await step(uow, row, now)
            await store.update(uow.conn, after)
            uow.emit(events.order_event(after.order, after.lead_id), subject=order_id)
            uow.after_commit(lambda: metrics.order_entered(after.order.state.value))
            return after

        return await self.write(work)  # the row as committed: no second read

    async def pay_deposit(
        self, order_id: str, paid: Decimal, etag: str, *, caller: Caller
    ) -> OrderRow:
        """PayDeposit: CONFIRMED (the ERP adapter takes it to SAP); group-committed."""
        payment = Payment(order_id, paid, etag, caller, self.clock(), current_span_context())
        outcome = await self.order_writer.submit(payment)
        assert isinstance(outcome, OrderRow)
        return outcome

    async def allocate_vehicle(
        self, order_id: str, vin: str, etag: str, *, caller: Caller
    ) -> OrderRow:
        """AllocateVehicle: a free car of the dealer's stock of the order's model and trim."""
        vin = vins.normalize("vin", vin)

        async def step(uow: UnitOfWork, row: OrderRow, now: dt.datetime) -> OrderRow:
            car = await store.stock(uow.conn, vin)
            if car is None or car[0] != row.order.dealer_id:
                raise not_found(STOCK_VEHICLE_NOT_FOUND, "car of the stock", vin)
            after = rules.allocate(row.order, vin, car[1], car[2], now)
            if not await store.take_stock(uow.conn, vin, order_id):
                raise refused(VEHICLE_UNAVAILABLE, f"car {vin} is allocated to another order")
            return replace(row, order=after)

        return await self._step(order_id, etag, caller, step)

    async def invoice_order(
        self, order_id: str, invoice_number: str, etag: str, *, caller: Caller
    ) -> OrderRow:
        """InvoiceOrder: INVOICED."""

        async def step(uow: UnitOfWork, row: OrderRow, now: dt.datetime) -> OrderRow:
            return replace(row, order=rules.invoice(row.order, invoice_number, now))

        return await self._step(order_id, etag, caller, step)

    async def record_delivery(
        self,
        order_id: str,
        vin: str,
        when: dt.datetime | None,
        checklist: Sequence[tuple[str, bool]],
        etag: str,
        *,
        caller: Caller,
    ) -> OrderRow:
        """RecordDelivery: DELIVERED, every checklist item done; the opportunity too."""
        vin = vins.normalize("vin", vin)
        for i, (_, done) in enumerate(checklist):
            if not done:
                raise invalid(f"checklist[{i}].done", "every item must be handed over")

        async def step(uow: UnitOfWork, row: OrderRow, now: dt.datetime) -> OrderRow:
            at = when or now
            if at > now:
                raise invalid("delivery_time", "must not be in the future")
            after = rules.deliver(row.order, vin, at)
            opp = await opportunity_store.get(uow.conn, row.order.opportunity_id, lock=True)
            if opp is not None:
                await self.advance(uow, opp, Stage.DELIVERED, now)
            return replace(row, order=after, checklist=tuple(checklist))

        return await self._step(order_id, etag, caller, step)

    async def cancel_order(
        self, order_id: str, reason: str, etag: str, *, caller: Caller
    ) -> OrderRow:
        """CancelOrder: before delivery, the deposit refunded by the rule of its state; an
        allocated car goes back to the stock."""

        async def step(uow: UnitOfWork, row: OrderRow, now: dt.datetime) -> OrderRow:
            after = rules.cancel(row.order, reason, now, policy=self.refunds)
            await store.free_stock(uow.conn, order_id)
            return replace(row, order=after)

        return await self._step(order_id, etag, caller, step)

    async def get_order(self, order_id: str, *, caller: Caller) -> OrderRow:
        """GetOrder: a dealer its own, a customer theirs."""
        async with self.db.engine.connect() as conn:
            row = await store.get(conn, order_id)
        if row is None or not vis.may_see(caller, row.order.dealer_id, row.order.member_id):
            raise not_found(ORDER_NOT_FOUND, "order", order_id)
        return row

    async def list_orders(
        self,
        dealer_id: str,
        state: OrderState | None,
        after: str | None,
        limit: int,
        *,
        caller: Caller,
    ) -> list[OrderRow]:
        """ListOrders: a dealer its own, a customer theirs, staff any dealer's or all."""
        scope = vis.list_scope(caller, dealer_id)
        if scope is None:
            return []
        dealer, member = scope
        async with self.db.engine.connect() as conn:
            return await store.page(
                conn, dealer_id=dealer, member_id=member, state=state, after=after, limit=limit
            )


__all__ = ["Order", "Orders"]

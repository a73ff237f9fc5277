"""CreateOrder and PayDeposit, group-committed: many calls, one transaction, one fsync.

One transaction per call paid, per call, a pool checkout, BEGIN, a dozen statements (each
several hand-overs to the SQLite thread), the outbox insert and a commit with its fsync,
and on SQLite every call queued for the one writer. Here the calls go to one writer task
per process and each batch is one transaction (mesh/batch_writer.py), which:
1. reads what the batch needs, a query per table (store/order_batch.py): the request ids
   seen, the quotes, the opportunities and the orders to pay (locked on PostgreSQL);
2. decides each call in arrival order on that in-memory state, with the same rules as a
   call alone (domain/orders.py, visibility, AIP-155 request ids: a retried id gets its
   first order, one reused for another request is REQUEST_ID_REUSED), so two calls on one
   opportunity or one request id in a batch see each other; a refused call changes nothing;
3. writes it back, one executemany per table, with each call's events (OrderPlaced,
   OpportunityStageChanged, OrderConfirmed, with the call's own trace context) in the
   outbox, and commits; only then is any caller answered: acknowledged = committed.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any

from opentelemetry.trace import SpanContext
from sqlalchemy.ext.asyncio import AsyncConnection

from mesh.batch_writer import BatchWriter
from mesh.errors import DomainError
from mesh.idempotency import Request
from mesh.identity import Caller
from services.sales import events, metrics
from services.sales.domain import opportunity as opportunity_rules
from services.sales.domain import orders as rules
from services.sales.domain import quoting
from services.sales.domain import visibility as vis
from services.sales.domain.errors import (
    OPPORTUNITY_NOT_FOUND,
    ORDER_NOT_FOUND,
    QUOTE_NOT_FOUND,
    invalid,
    not_found,
)
from services.sales.domain.opportunity import Opportunity, Stage
from services.sales.store import order_batch
from services.sales.store.orders import OrderRow
from services.sales.store.tables import OUTBOX

CREATE_ORDER = "CreateOrder"


@dataclass(frozen=True, slots=True)
class NewOrder:
    """A CreateOrder waiting for the writer; `order_id` is the id it would create."""

    quote_id: str
    deposit: Decimal
    member_id: str
    req: Request
    caller: Caller
    order_id: str
    now: dt.datetime
    today: dt.date
    context: SpanContext


@dataclass(frozen=True, slots=True)
class Payment:
    """A PayDeposit waiting for the writer."""

    order_id: str
    paid: Decimal
    etag: str
    caller: Caller
    now: dt.datetime
    context: SpanContext


@dataclass(frozen=True, slots=True)
class Retried:
    """The request id was seen: the first call's order (read after the commit)."""

    order_id: str


Item = NewOrder | Payment
Outcome = OrderRow | Retried


@dataclass(slots=True)
class _Batch:
    """A batch's state as its calls are decided, and what it will write."""

    claimed: order_batch.Claimed
    quotes: dict[str, Any]
    opps: dict[str, Opportunity]
    orders: dict[str, OrderRow]
    request_id_rows: list[dict[str, Any]]
    new_orders: list[OrderRow]
    changed_orders: dict[str, OrderRow]
    changed_opps: dict[str, Opportunity]
    outbox_rows: list[dict[str, Any]]
    entered: list[str]


class OrderWriter(BatchWriter[Item, Outcome, _Batch]):
    """The group-committed writer of CreateOrder and PayDeposit."""

    name = "sales-order-writer"

    def committed(self, state: _Batch) -> None:
        for entered in state.entered:
            metrics.order_entered(entered)
        if state.outbox_rows:
            OUTBOX.notify()

    async def decide(
        self, conn: AsyncConnection, items: Sequence[Item]
    ) -> tuple[_Batch, list[Outcome | BaseException]]:
        """Read what the batch needs, then decide each call in order."""
        new = [i for i in items if isinstance(i, NewOrder)]
        keys = {(i.req.scope, i.req.request_id) for i in new if i.req.request_id}
        claimed = await order_batch.claimed(conn, CREATE_ORDER, keys)
        quotes = await order_batch.quotes_by_id(conn, {i.quote_id for i in new})
        opp_ids = {q.opportunity_id for q in quotes.values()}
        pay_ids = {i.order_id for i in items if isinstance(i, Payment)}
        batch = _Batch(
            claimed=claimed,
            quotes=quotes,
            opps=await order_batch.opportunities_by_id(conn, opp_ids),
            orders=await order_batch.orders_by_id(conn, pay_ids),
            request_id_rows=[], new_orders=[], changed_orders={}, changed_opps={},
            outbox_rows=[], entered=[],
        )  # fmt: skip
        outcomes: list[Outcome | BaseException] = []
        for item in items:
            try:
                if isinstance(item, NewOrder):
                    outcomes.append(_create(batch, item))
                else:
                    outcomes.append(_pay(batch, item))
            except DomainError as e:
                outcomes.append(e)
        return batch, outcomes

    async def write(self, conn: AsyncConnection, batch: _Batch) -> None:
        await order_batch.write(
            conn,
            request_id_rows=batch.request_id_rows,
            new_orders=batch.new_orders,
            changed_orders=list(batch.changed_orders.values()),
            changed_opportunities=list(batch.changed_opps.values()),
        )
        await OUTBOX.write(conn, batch.outbox_rows)


def _create(batch: _Batch, item: NewOrder) -> Outcome:
    """One CreateOrder on the batch's state (as orders.py's unit of work would do it)."""
    req = item.req
    key = (req.scope, req.request_id)
    first = req.replayed_in(batch.claimed)
    if first is not None:
        return Retried(first)
    quote = batch.quotes.get(item.quote_id)
    if quote is None or not vis.may_change(item.caller, quote.dealer_id):
        raise not_found(QUOTE_NOT_FOUND, "quote", item.quote_id)
    quoting.require_valid(quote, item.today)
    opp = batch.opps.get(quote.opportunity_id)
    if opp is None or not vis.may_change(item.caller, opp.dealer_id):
        raise not_found(OPPORTUNITY_NOT_FOUND, "opportunity", quote.opportunity_id)
    buyer = item.member_id or quote.member_id
    if not buyer:
        raise invalid("member_id", "an order needs the customer's member id")
    order = rules.place(
        id_=item.order_id,
        quote_id=quote.id,
        opportunity_id=opp.id,
        dealer_id=opp.dealer_id,
        member_id=buyer,
        model_code=quote.priced.model_code,
        trim_code=quote.spec.trim_code,
        option_codes=quote.spec.option_codes,
        invoice_price=quote.priced.figures.invoice_price,
        deposit=item.deposit,
        now=item.now,
    )
    row = OrderRow(order, opp.lead_id, quote.priced)
    # Decided: from here on the call only adds to the batch.
    if req.request_id:
        batch.claimed[key] = (req.fingerprint, order.id)
        batch.request_id_rows.append(
            {"scope": req.scope, "method": CREATE_ORDER, "request_id": req.request_id,
             "fingerprint": req.fingerprint, "result": order.id, "create_time": item.now}
        )  # fmt: skip
    batch.new_orders.append(row)
    batch.orders[order.id] = row
    batch.outbox_rows.append(_event(events.order_event(order, row.lead_id), order.id, item))
    batch.entered.append(order.state.value)
    after = opportunity_rules.advance(opp, Stage.ORDER, item.now)
    if not after.member_id:
        after = opportunity_rules.with_member(after, buyer, item.now)
    if after != opp:
        batch.opps[opp.id] = batch.changed_opps[opp.id] = after
        if after.stage is not opp.stage:
            batch.outbox_rows.append(_event(events.stage_changed(opp, after), opp.id, item))
    return row


def _pay(batch: _Batch, item: Payment) -> Outcome:
    """One PayDeposit on the batch's state (orders.py's `_step` with `rules.pay_deposit`)."""
    row = batch.orders.get(item.order_id)
    if row is None or not vis.may_change(item.caller, row.order.dealer_id):
        raise not_found(ORDER_NOT_FOUND, "order", item.order_id)
    rules.check_etag(row.order, item.etag)
    after = replace(row, order=rules.pay_deposit(row.order, item.paid, item.now))
    if row.order.id not in {r.order.id for r in batch.new_orders}:
        batch.changed_orders[row.order.id] = after
    else:  # created in this batch: insert it as it is now
        batch.new_orders = [after if r.order.id == row.order.id else r for r in batch.new_orders]
    batch.orders[row.order.id] = after
    event = events.order_event(after.order, after.lead_id)
    batch.outbox_rows.append(_event(event, row.order.id, item))
    batch.entered.append(after.order.state.value)
    return after


def _event(event: Any, subject: str, item: Item) -> dict[str, Any]:
    """The outbox row of a call's event, with the call's trace context."""
    return OUTBOX.row(event, subject=subject, context=item.context)

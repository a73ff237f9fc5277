"""CreateOrder and PayDeposit sent at once, over a real server on both back ends: the calls
share the writer's batches (order_writer.py), and each still gets its own answer: a twin of
a request id gets the first order, a reused one REQUEST_ID_REUSED, another dealer's quote
NOT_FOUND, a stale etag ABORTED, while the others commit with exactly their events."""

from __future__ import annotations

import asyncio
from collections import Counter

import grpc
from marque.sales.v1 import sales_pb2
from marque.sales.v1 import sales_service_pb2 as pb

from services.sales.tests.harness import Harness, cny, dealer, fails, md, reason

D1, D2 = dealer("D1"), dealer("D2")
PLACED = "marque.sales.v1.OrderPlaced"
CONFIRMED = "marque.sales.v1.OrderConfirmed"


async def _quote(sales: Harness, lead: str) -> str:
    opp = await sales.open_opportunity(lead_id=lead)
    spec = sales_pb2.QuoteSpec(trim_code="M5-LR", option_codes=["PILOT"])
    req = pb.CreateQuoteRequest(opportunity_id=opp, member_id="m1", request_id=lead, quote=spec)
    return (await sales.stub.CreateQuote(req, metadata=md(D1))).quote.id


def _order(quote: str, request_id: str, deposit: str = "5000") -> pb.CreateOrderRequest:
    return pb.CreateOrderRequest(quote_id=quote, deposit=cny(deposit), request_id=request_id)


async def _outcome(call: object) -> object:
    try:
        return await call  # type: ignore[misc]
    except grpc.aio.AioRpcError as e:
        return e


async def test_calls_at_once_each_get_their_own_answer(sales: Harness) -> None:
    await sales.put_trim()
    quotes = [await _quote(sales, f"lead_{i}") for i in range(3)]
    asks = [_order(quotes[i % 3], f"o-{i}") for i in range(12)]
    asks += [_order(quotes[0], "o-0"), _order(quotes[1], "o-1")]  # twins of o-0 and o-1
    asks.append(_order(quotes[2], "o-2", deposit="6000"))  # o-2 reused for another ask
    calls = [sales.stub.CreateOrder(a, metadata=md(D1)) for a in asks]
    calls.append(sales.stub.CreateOrder(_order(quotes[0], "o-x"), metadata=md(D2)))
    got = await asyncio.gather(*(_outcome(c) for c in calls))

    by_request: dict[str, set[str]] = {}
    for ask, out in zip(asks, got[:-1], strict=True):
        if isinstance(out, pb.CreateOrderResponse):
            by_request.setdefault(ask.request_id, set()).add(out.order.id)
    assert all(len(ids) == 1 for ids in by_request.values()), by_request  # twins: one order
    assert sorted(by_request) == sorted(f"o-{i}" for i in range(12))
    reused = [o for o in got[:-1] if isinstance(o, grpc.aio.AioRpcError)]
    assert [(e.code(), reason(e)) for e in reused] == [
        (grpc.StatusCode.INVALID_ARGUMENT, "REQUEST_ID_REUSED")  # whichever of o-2 came second
    ]
    other = got[-1]
    assert isinstance(other, grpc.aio.AioRpcError) and reason(other) == "QUOTE_NOT_FOUND"

    orders = [next(iter(ids)) for ids in by_request.values()]
    placed = Counter(t for t, subject, _ in await sales.outbox() if subject in orders)
    assert placed == {PLACED: 12}

    fetched = [
        (await sales.stub.GetOrder(pb.GetOrderRequest(order_id=o), metadata=md(D1))).order
        for o in orders
    ]
    pays = [pb.PayDepositRequest(order_id=o.id, amount=cny("5000"), etag=o.etag) for o in fetched]
    stale = pb.PayDepositRequest(order_id=fetched[0].id, amount=cny("5000"), etag=fetched[0].etag)
    paid = await asyncio.gather(
        *(_outcome(sales.stub.PayDeposit(p, metadata=md(D1))) for p in [*pays, stale])
    )
    refused = [p for p in paid if isinstance(p, grpc.aio.AioRpcError)]
    assert [(e.code(), reason(e)) for e in refused] == [
        (grpc.StatusCode.ABORTED, "ETAG_MISMATCH")  # the second payment of the first order
    ]
    done = [p.order for p in paid if isinstance(p, pb.PayDepositResponse)]
    assert {o.state for o in done} == {sales_pb2.ORDER_STATE_CONFIRMED} and len(done) == 12
    events = Counter(t for t, subject, _ in await sales.outbox() if subject in orders)
    assert events == {PLACED: 12, CONFIRMED: 12}
    err = await fails(
        sales.stub.PayDeposit(pays[1], metadata=md(D2)), grpc.StatusCode.NOT_FOUND
    )  # another dealer's order
    assert reason(err) == "ORDER_NOT_FOUND"

"""The DMS adapter's application layer: the reads of DmsService, and taking a delivered
order's RDR to its dealer's DMS. (The inbound documents' path is intake.py.)

Access is decided once per call (domain/visibility.py): another dealer's document or
delivery is NOT_FOUND. The RDRs of a batch of delivered orders are sent before the
consumer's unit of work (`prepare`, outside any transaction: a DMS call never holds a
PostgreSQL connection or SQLite's write lock), concurrently, each in its event's trace; the
handler then records each delivery row with the inbox row (`deliver`). An order recorded
before (a redelivery) is not sent again; an unclear failure (a timeout) is sent again on the
next delivery of the event, which the DMS takes as the same RDR (its id is the order id), as
it does when two replicas both send one.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from collections.abc import Callable, Iterator, Sequence

from opentelemetry import context as otel_context
from opentelemetry.trace import SpanContext

from mesh import paging
from mesh.db import Database
from mesh.errors import InvalidArgument
from mesh.events import spans
from mesh.identity import Caller
from mesh.unit_of_work import UnitOfWork
from services.adapters.dms.domain import errors, outbound, visibility
from services.adapters.dms.domain.config import DmsConfig
from services.adapters.dms.domain.model import Delivery, InboundDocument, Kind
from services.adapters.dms.star.client import Answer, StarClient
from services.adapters.dms.store import deliveries, documents

Clock = Callable[[], dt.datetime]
# What `prepare` learnt of an order's RDR: the DMS's answer, or why it was not taken.
Sent = Answer | BaseException


def utc_now() -> dt.datetime:
    """The production clock."""
    return dt.datetime.now(dt.UTC)


def _cursor(doc: InboundDocument) -> str:
    return f"{doc.receive_time.isoformat()}|{doc.document_id}"


def _after(key: str) -> tuple[dt.datetime, str]:
    when, _, doc_id = key.partition("|")
    try:
        return dt.datetime.fromisoformat(when), doc_id
    except ValueError:
        raise InvalidArgument.for_field("page_token", "is not a token of this list") from None


class DmsEngine:
    """One method per job; the servicer and the event handler call it."""

    def __init__(
        self, db: Database, config: DmsConfig, client: StarClient, clock: Clock = utc_now
    ) -> None:
        self.db = db
        self.config = config
        self.client = client
        self.clock = clock
        # RDRs sent by `prepare` and not yet recorded, by order id (taken by `deliver`).
        self._sent: dict[str, Sent] = {}

    async def get_document(self, caller: Caller, document_id: str) -> InboundDocument:
        """GetInboundDocument: another dealer's is NOT_FOUND."""
        async with self.db.engine.connect() as conn:
            doc = await documents.get(conn, document_id)
        if doc is None or not visibility.may_see(caller, doc.dealer_id):
            raise errors.document_not_found(document_id)
        return doc

    async def list_documents(
        self, caller: Caller, *, page_size: int, page_token: str, dealer_id: str, kind: Kind | None
    ) -> tuple[list[InboundDocument], str]:
        """ListInboundDocuments, newest first; a dealer lists its own only."""
        dealer = visibility.dealer_filter(caller, dealer_id)
        if dealer is None:
            return [], ""
        size = paging.page_size(page_size)
        fhash = paging.filter_hash(dealer, kind.value if kind else "")
        key = paging.decode_token(page_token, fhash) if page_token else None
        async with self.db.engine.connect() as conn:
            rows = await documents.page(
                conn,
                dealer_id=dealer,
                kind=kind,
                after=_after(key) if key else None,
                limit=size + 1,
            )
        return paging.split_page(rows, size, _cursor, fhash)

    async def get_delivery(self, caller: Caller, order_id: str) -> Delivery:
        """GetDelivery: the RDR of the order as its dealer's DMS took it."""
        async with self.db.engine.connect() as conn:
            found = await deliveries.of_order(conn, order_id)
        if found is None or not visibility.may_see(caller, found.dealer_id):
            raise errors.delivery_not_found(order_id)
        return found

    async def prepare(
        self, orders: Sequence[outbound.DeliveredOrder], parents: Sequence[SpanContext | None]
    ) -> None:
        """A batch's RDRs to the DMSs before its unit of work, concurrently; `parents[i]` is
        the trace of `orders[i]`'s event. Orders already recorded are not sent."""
        wanted: dict[str, tuple[outbound.DeliveredOrder, SpanContext | None]] = {}
        for i, order in enumerate(orders):
            wanted.setdefault(order.order_id, (order, parents[i] if i < len(parents) else None))
        async with self.db.engine.connect() as conn:
            recorded = await deliveries.recorded_among(conn, list(wanted))
        todo = [oid for oid in wanted if oid not in recorded]
        results = await asyncio.gather(
            *(self._send(*wanted[oid]) for oid in todo), return_exceptions=True
        )
        # The last batch's only: the consumer takes one batch at a time, so what a batch
        # left (its events failed before their handler) is not kept beyond the next one.
        self._sent = dict(zip(todo, results, strict=True))

    async def _send(self, order: outbound.DeliveredOrder, parent: SpanContext | None) -> Answer:
        with _in_trace(parent):
            return await self.client.send_rdr(order.dealer_id, outbound.rdr(order), order.order_id)

    async def deliver(self, uow: UnitOfWork, order: outbound.DeliveredOrder) -> Delivery | None:
        """The order's RDR recorded, once; None when it was recorded before. Sent by
        `prepare` normally; sent here when prepare did not (a batch run again event by
        event, a handler called by the replay command)."""
        sent = self._sent.pop(order.order_id, None)
        if await deliveries.of_order(uow.conn, order.order_id) is not None:
            return None
        if sent is None:
            answer = await self._send(order, None)
        elif isinstance(sent, BaseException):
            raise sent
        else:
            answer = sent
        delivery = Delivery(
            order_id=order.order_id,
            dealer_id=order.dealer_id,
            kind=Kind.RETAIL_DELIVERY_REPORT,
            http_status=answer.http_status,
            dms_reference=answer.reference,
            deliver_time=self.clock(),
        )
        await deliveries.insert(uow.conn, delivery)
        return delivery


@contextlib.contextmanager
def _in_trace(parent: SpanContext | None) -> Iterator[None]:
    """The event's trace current while its HTTP call runs (its CLIENT span goes there)."""
    token = otel_context.attach(spans.parent_of(parent)) if parent is not None else None
    try:
        yield
    finally:
        if token is not None:
            otel_context.detach(token)

"""The DMS adapter's application layer: the reads of DmsService, and taking a delivered
order's RDR to its dealer's DMS. (The inbound documents' path is intake.py.)

Access is decided once per call (domain/visibility.py): another dealer's document or
delivery is NOT_FOUND. The RDR of a delivered order is sent inside the consumer's unit of
work, so the delivery row and the inbox row commit together; an order recorded before (a
redelivery) is not sent again; an unclear failure (a timeout) is sent again on the next
delivery of the event, which the DMS takes as the same RDR (its id is the order id).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from mesh import paging
from mesh.db import Database
from mesh.errors import InvalidArgument
from mesh.identity import Caller
from mesh.unit_of_work import UnitOfWork
from services.adapters.dms.domain import errors, outbound, visibility
from services.adapters.dms.domain.config import DmsConfig
from services.adapters.dms.domain.model import Delivery, InboundDocument, Kind
from services.adapters.dms.star.client import StarClient
from services.adapters.dms.store import deliveries, documents

Clock = Callable[[], dt.datetime]


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

    async def deliver(self, uow: UnitOfWork, order: outbound.DeliveredOrder) -> Delivery | None:
        """The order's RDR to its dealer's DMS, once; None when it was delivered before."""
        if await deliveries.of_order(uow.conn, order.order_id) is not None:
            return None
        answer = await self.client.send_rdr(order.dealer_id, outbound.rdr(order), order.order_id)
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

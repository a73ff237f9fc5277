"""DmsService over gRPC: proto in, engine call, proto out (transport only)."""

from __future__ import annotations

from typing import Any

from marque.dms.v1 import dms_pb2, dms_service_pb2, dms_service_pb2_grpc

from mesh.convert import timestamp
from mesh.identity import current_caller
from services.adapters.dms.domain.model import Delivery, InboundDocument, Kind
from services.adapters.dms.engine import DmsEngine


def kind_pb(kind: Kind) -> int:
    """The proto DocumentKind of a kind."""
    return int(dms_pb2.DocumentKind.Value(f"DOCUMENT_KIND_{kind.value}"))


def kind_of(number: int) -> Kind | None:
    """The kind of a proto DocumentKind (None for UNSPECIFIED: no filter)."""
    if number == 0:
        return None
    return Kind(dms_pb2.DocumentKind.Name(number).removeprefix("DOCUMENT_KIND_"))


def document_pb(doc: InboundDocument) -> dms_pb2.InboundDocument:
    """The proto of an inbound document."""
    return dms_pb2.InboundDocument(
        document_id=doc.document_id,
        dealer_id=doc.dealer_id,
        kind=kind_pb(doc.kind),  # type: ignore[arg-type]
        source_id=doc.source_id,
        revision=doc.revision,
        event_type=doc.event_type,
        event_id=doc.event_id,
        body_sha256=doc.body_sha256,
        receive_time=timestamp(doc.receive_time),
    )


def delivery_pb(delivery: Delivery) -> dms_pb2.Delivery:
    """The proto of a delivery."""
    return dms_pb2.Delivery(
        order_id=delivery.order_id,
        dealer_id=delivery.dealer_id,
        kind=kind_pb(delivery.kind),  # type: ignore[arg-type]
        state=dms_pb2.DELIVERY_STATE_SENT,
        http_status=delivery.http_status,
        dms_reference=delivery.dms_reference,
        deliver_time=timestamp(delivery.deliver_time),
    )


class DmsServicer(dms_service_pb2_grpc.DmsServiceServicer):
    """GetInboundDocument, ListInboundDocuments, GetDelivery."""

    def __init__(self, engine: DmsEngine) -> None:
        self.engine = engine

    async def GetInboundDocument(
        self, request: dms_service_pb2.GetInboundDocumentRequest, context: Any
    ) -> dms_service_pb2.GetInboundDocumentResponse:
        doc = await self.engine.get_document(current_caller(), request.document_id)
        return dms_service_pb2.GetInboundDocumentResponse(document=document_pb(doc))

    async def ListInboundDocuments(
        self, request: dms_service_pb2.ListInboundDocumentsRequest, context: Any
    ) -> dms_service_pb2.ListInboundDocumentsResponse:
        docs, token = await self.engine.list_documents(
            current_caller(),
            page_size=request.page_size,
            page_token=request.page_token,
            dealer_id=request.dealer_id,
            kind=kind_of(request.kind),
        )
        return dms_service_pb2.ListInboundDocumentsResponse(
            documents=[document_pb(d) for d in docs], next_page_token=token
        )

    async def GetDelivery(
        self, request: dms_service_pb2.GetDeliveryRequest, context: Any
    ) -> dms_service_pb2.GetDeliveryResponse:
        delivery = await self.engine.get_delivery(current_caller(), request.order_id)
        return dms_service_pb2.GetDeliveryResponse(delivery=delivery_pb(delivery))

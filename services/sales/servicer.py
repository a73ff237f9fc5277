"""SalesService over gRPC: proto in, engine call, proto out.

Transport only. Field shapes are checked by the mesh (protovalidate, the proto's
`buf.validate` rules) before a method runs; who may see what and which transaction does
what are decided in `engine.py`, the rules live in `domain/`, SQL in `store/`. Errors are
`mesh.errors` (reasons in `domain/errors.py`), which the mesh's chain maps to statuses:
nothing here builds a status or calls `context.abort`.
"""

from __future__ import annotations

from typing import Any

from marque.sales.v1 import (
    sales_pb2,
    sales_service_pb2,
    sales_service_pb2_grpc,
)

from mesh.convert import timestamp
from mesh.identity import current_caller
from services.sales.domain.model import Sales
from services.sales.engine import SalesEngine


def sales_pb(record: Sales) -> sales_pb2.Sales:
    """The proto of a sales record."""
    return sales_pb2.Sales(
        id=record.id,
        dealer_id=record.dealer_id,
        display_name=record.display_name,
        create_time=timestamp(record.create_time),
    )


class SalesServicer(sales_service_pb2_grpc.SalesServiceServicer):
    """marque.sales.v1.SalesService."""

    def __init__(self, engine: SalesEngine) -> None:
        self.engine = engine

    async def CreateSales(
        self, request: sales_service_pb2.CreateSalesRequest, context: Any
    ) -> sales_service_pb2.CreateSalesResponse:
        asked = request.sales
        record = await self.engine.create(
            asked.display_name,
            asked.dealer_id,
            request_id=request.request_id,
            caller=current_caller(),
        )
        reply = sales_pb(record)
        return sales_service_pb2.CreateSalesResponse(sales=reply)

    async def GetSales(
        self, request: sales_service_pb2.GetSalesRequest, context: Any
    ) -> sales_service_pb2.GetSalesResponse:
        record = await self.engine.get(request.sales_id, caller=current_caller())
        reply = sales_pb(record)
        return sales_service_pb2.GetSalesResponse(sales=reply)

"""ErpService over gRPC: proto in, engine call, proto out (transport only)."""

from __future__ import annotations

from typing import Any

from marque.erp.v1 import erp_service_pb2, erp_service_pb2_grpc

from mesh.convert import money, timestamp
from mesh.identity import current_caller
from services.adapters.erp.domain.model import SalesOrder
from services.adapters.erp.engine import ErpEngine


def sales_order_pb(order: SalesOrder) -> erp_service_pb2.SalesOrder:
    """The proto of a SAP sales order."""
    return erp_service_pb2.SalesOrder(
        sap_sales_order=order.sap_sales_order,
        order_id=order.order_id,
        status=f"SALES_ORDER_STATUS_{order.status.value}",
        net_amount=money(order.net_amount, order.currency or "CNY"),
        create_time=timestamp(order.create_time),
    )


class ErpServicer(erp_service_pb2_grpc.ErpServiceServicer):
    """GetSalesOrder."""

    def __init__(self, engine: ErpEngine) -> None:
        self.engine = engine

    async def GetSalesOrder(
        self, request: erp_service_pb2.GetSalesOrderRequest, context: Any
    ) -> erp_service_pb2.GetSalesOrderResponse:
        order = await self.engine.get_sales_order(
            current_caller(),
            order_id=request.order_id,
            sap_sales_order=request.sap_sales_order,
        )
        return erp_service_pb2.GetSalesOrderResponse(sales_order=sales_order_pb(order))

"""SalesService's test drives and orders over gRPC (mixed into servicer.SalesServicer)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from marque.sales.v1 import sales_pb2
from marque.sales.v1 import sales_service_pb2 as pb

from mesh.convert import datetime_of
from mesh.identity import current_caller
from mesh.paging import decode_token, filter_hash, page_size, split_page
from services.sales import convert_deals as deals
from services.sales.convert import amount
from services.sales.domain.testdrive import TestDriveCar
from services.sales.store.keyset import key_of

if TYPE_CHECKING:
    from services.sales.engine import SalesEngine


class DealsServicer:
    """Test drives and orders."""

    engine: SalesEngine

    # ------------------------------------------------------------------ test drives

    async def PutTestDriveCar(self, request: pb.PutTestDriveCarRequest, context: Any) -> Any:
        c = request.car
        car = await self.engine.put_test_drive_car(
            TestDriveCar(
                vin=c.vin, dealer_id=c.dealer_id, model_code=c.model_code, active=c.active
            ),
            caller=current_caller(),
        )
        return pb.PutTestDriveCarResponse(
            car=sales_pb2.TestDriveCar(
                vin=car.vin, dealer_id=car.dealer_id, model_code=car.model_code, active=car.active
            )
        )

    async def SetOpeningHours(self, request: pb.SetOpeningHoursRequest, context: Any) -> Any:
        hours = deals.hours_of(request)
        dealer, kept = await self.engine.set_opening_hours(
            request.dealer_id, hours, caller=current_caller()
        )
        return deals.hours_pb(dealer, kept)

    async def BookTestDrive(self, request: pb.BookTestDriveRequest, context: Any) -> Any:
        drive = await self.engine.book_test_drive(
            request.opportunity_id,
            request.vin.upper(),
            request.consultant_id,
            datetime_of(request.start_time),
            request_id=request.request_id,
            caller=current_caller(),
        )
        return pb.BookTestDriveResponse(test_drive=deals.test_drive_pb(drive))

    async def RescheduleTestDrive(
        self, request: pb.RescheduleTestDriveRequest, context: Any
    ) -> Any:
        drive = await self.engine.reschedule_test_drive(
            request.test_drive_id,
            datetime_of(request.start_time),
            request.etag,
            caller=current_caller(),
        )
        return pb.RescheduleTestDriveResponse(test_drive=deals.test_drive_pb(drive))

    async def CancelTestDrive(self, request: pb.CancelTestDriveRequest, context: Any) -> Any:
        drive = await self.engine.cancel_test_drive(
            request.test_drive_id, request.etag, caller=current_caller()
        )
        return pb.CancelTestDriveResponse(test_drive=deals.test_drive_pb(drive))

    async def CompleteTestDrive(self, request: pb.CompleteTestDriveRequest, context: Any) -> Any:
        drive = await self.engine.complete_test_drive(
            request.test_drive_id,
            request.feedback,
            request.rating,
            request.etag,
            caller=current_caller(),
        )
        return pb.CompleteTestDriveResponse(test_drive=deals.test_drive_pb(drive))

    async def GetTestDrive(self, request: pb.GetTestDriveRequest, context: Any) -> Any:
        drive = await self.engine.get_test_drive(request.test_drive_id, caller=current_caller())
        return pb.GetTestDriveResponse(test_drive=deals.test_drive_pb(drive))

    async def ListTestDrives(self, request: pb.ListTestDrivesRequest, context: Any) -> Any:
        drives = await self.engine.list_test_drives(
            request.dealer_id,
            datetime_of(request.start_time_from),
            datetime_of(request.start_time_to),
            deals.DRIVE_STATES.of(request.state),
            caller=current_caller(),
        )
        return pb.ListTestDrivesResponse(test_drives=[deals.test_drive_pb(d) for d in drives])

    # ------------------------------------------------------------------ orders

    async def PutStockVehicle(self, request: pb.PutStockVehicleRequest, context: Any) -> Any:
        v = request.vehicle
        vin, dealer = await self.engine.put_stock_vehicle(
            v.vin, v.dealer_id, v.model_code, v.trim_code, caller=current_caller()
        )
        return pb.PutStockVehicleResponse(
            vehicle=sales_pb2.StockVehicle(
                vin=vin, dealer_id=dealer, model_code=v.model_code, trim_code=v.trim_code
            )
        )

    async def CreateOrder(self, request: pb.CreateOrderRequest, context: Any) -> Any:
        row = await self.engine.create_order(
            request.quote_id,
            amount("deposit", request.deposit),
            request.member_id,
            request_id=request.request_id,
            caller=current_caller(),
        )
        return pb.CreateOrderResponse(order=deals.order_pb(row))

    async def PayDeposit(self, request: pb.PayDepositRequest, context: Any) -> Any:
        row = await self.engine.pay_deposit(
            request.order_id,
            amount("amount", request.amount),
            request.etag,
            caller=current_caller(),
        )
        return pb.PayDepositResponse(order=deals.order_pb(row))

    async def AllocateVehicle(self, request: pb.AllocateVehicleRequest, context: Any) -> Any:
        row = await self.engine.allocate_vehicle(
            request.order_id, request.vin, request.etag, caller=current_caller()
        )
        return pb.AllocateVehicleResponse(order=deals.order_pb(row))

    async def InvoiceOrder(self, request: pb.InvoiceOrderRequest, context: Any) -> Any:
        row = await self.engine.invoice_order(
            request.order_id, request.invoice_number, request.etag, caller=current_caller()
        )
        return pb.InvoiceOrderResponse(order=deals.order_pb(row))

    async def RecordDelivery(self, request: pb.RecordDeliveryRequest, context: Any) -> Any:
        when = datetime_of(request.delivery_time) if request.HasField("delivery_time") else None
        row = await self.engine.record_delivery(
            request.order_id,
            request.vin,
            when,
            [(item.item, item.done) for item in request.checklist],
            request.etag,
            caller=current_caller(),
        )
        return pb.RecordDeliveryResponse(order=deals.order_pb(row))

    async def CancelOrder(self, request: pb.CancelOrderRequest, context: Any) -> Any:
        row = await self.engine.cancel_order(
            request.order_id, request.reason, request.etag, caller=current_caller()
        )
        return pb.CancelOrderResponse(order=deals.order_pb(row))

    async def GetOrder(self, request: pb.GetOrderRequest, context: Any) -> Any:
        row = await self.engine.get_order(request.order_id, caller=current_caller())
        return pb.GetOrderResponse(order=deals.order_pb(row))

    async def ListOrders(self, request: pb.ListOrdersRequest, context: Any) -> Any:
        size = page_size(request.page_size)
        fhash = filter_hash("orders", request.dealer_id, request.state)
        after = decode_token(request.page_token, fhash)
        rows = await self.engine.list_orders(
            request.dealer_id,
            deals.ORDER_STATES.of(request.state),
            after,
            size + 1,
            caller=current_caller(),
        )
        page, token = split_page(
            rows, size, lambda r: key_of(r.order.create_time, r.order.id), fhash
        )
        return pb.ListOrdersResponse(
            orders=[deals.order_pb(r) for r in page], next_page_token=token
        )

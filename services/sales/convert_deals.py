"""Proto ⇄ domain for test drives, opening hours and orders."""

from __future__ import annotations

import datetime as dt

from marque.sales.v1 import sales_pb2
from marque.sales.v1 import sales_service_pb2 as pb

from mesh.convert import EnumMap, timestamp
from services.sales.convert import cny
from services.sales.convert_quotes import figures_pb
from services.sales.domain import orders as order_rules
from services.sales.domain import testdrive as drive_rules
from services.sales.domain.errors import invalid
from services.sales.domain.orders import OrderState
from services.sales.domain.testdrive import DriveState, OpeningHours, TestDrive
from services.sales.store.orders import OrderRow

DRIVE_STATES = EnumMap(DriveState, sales_pb2.TestDriveState, "TEST_DRIVE_STATE_")
ORDER_STATES = EnumMap(OrderState, sales_pb2.OrderState, "ORDER_STATE_")


def test_drive_pb(d: TestDrive) -> sales_pb2.TestDrive:
    """The message of a test drive."""
    return sales_pb2.TestDrive(
        id=d.id,
        opportunity_id=d.opportunity_id,
        dealer_id=d.dealer_id,
        vin=d.vin,
        consultant_id=d.consultant_id,
        start_time=timestamp(d.start),
        end_time=timestamp(d.end),
        state=DRIVE_STATES.to_proto(d.state),
        feedback=d.feedback,
        rating=d.rating,
        etag=drive_rules.etag(d),
    )


def _time(field: str, text: str) -> dt.time:
    try:
        return dt.time.fromisoformat(text)
    except ValueError:
        raise invalid(field, f"{text} is not a time of day") from None


def hours_of(request: pb.SetOpeningHoursRequest) -> OpeningHours:
    """A dealer's hours from SetOpeningHours (checked by the domain)."""
    days = [
        (d.weekday, _time(f"days[{i}].open", d.open), _time(f"days[{i}].close", d.close))
        for i, d in enumerate(request.days)
    ]
    return drive_rules.opening_hours(request.time_zone, days)


def hours_pb(dealer_id: str, hours: OpeningHours) -> pb.SetOpeningHoursResponse:
    """The reply of SetOpeningHours."""
    return pb.SetOpeningHoursResponse(
        dealer_id=dealer_id,
        time_zone=hours.time_zone,
        days=[
            pb.OpeningDay(weekday=i + 1, open=f"{h[0]:%H:%M}", close=f"{h[1]:%H:%M}")
            for i, h in enumerate(hours.days)
            if h is not None
        ],
    )


def order_pb(row: OrderRow) -> sales_pb2.Order:
    """The message of an order, its figures as locked."""
    o = row.order
    return sales_pb2.Order(
        id=o.id,
        quote_id=o.quote_id,
        opportunity_id=o.opportunity_id,
        lead_id=row.lead_id,
        dealer_id=o.dealer_id,
        member_id=o.member_id,
        model_code=o.model_code,
        trim_code=o.trim_code,
        option_codes=list(o.option_codes),
        figures=figures_pb(row.priced),
        deposit=cny(o.deposit),
        state=ORDER_STATES.to_proto(o.state),
        vin=o.vin,
        invoice_number=o.invoice_number,
        delivery_time=timestamp(o.delivery_time),
        sap_sales_order=o.sap_sales_order,
        cancel_reason=o.cancel_reason,
        refund=cny(o.refund),
        etag=order_rules.etag(o),
        create_time=timestamp(o.create_time),
        update_time=timestamp(o.update_time),
    )

"""The STAR documents the adapter sends to a dealer's DMS, built from Marque's facts.

- A delivered order -> a retail delivery report (RDR): the RDR id and the sales
  transaction number are the Marque order id, so the DMS keys it by the order (a resend
  after an unclear timeout updates, never duplicates) and an RDR the DMS echoes back is
  matched to the order; the car by VIN, model and trim; no buyer data (the dealer has its
  customer, Marque sends no name, phone or address).
- A service appointment booked in aftersales -> a STAR ServiceAppointment (aftersales
  emits no event yet: `appointment` is the contract its consumer will use).
Plain data in, plain JSON-ready dicts out.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal
from typing import Any


def _time(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True, slots=True)
class DeliveredOrder:
    """What sales' OrderDelivered says of an order, as far as the RDR needs."""

    order_id: str
    dealer_id: str
    vin: str
    model_code: str
    trim_code: str
    price: Decimal
    currency: str
    delivery_time: dt.datetime


def rdr(order: DeliveredOrder) -> dict[str, Any]:
    """The RDR of a delivered order."""
    return {
        "retail_delivery_report_id": order.order_id,
        "rdr_source": "MARQUE",
        "occurrence_date_time": _time(order.delivery_time),
        "sale_date": order.delivery_time.astimezone(dt.UTC).date().isoformat(),
        "oem_rdr_status_type": "TRANSMITTED",
        "purchase_type": "RETAIL",
        "sales_transaction_number": order.order_id,
        "identifiers": [{"identifier_type": "MARQUE_ORDER_ID", "value": order.order_id}],
        "vehicle": {
            "vin": order.vin,
            "model_code": order.model_code,
            "trim": order.trim_code,
            "condition": "NEW",
            "inventory_status_types": ["SOLD"],
            "vehicle_price_summaries": [
                {
                    "vehicle_price_name": "INVOICE_PRICE",
                    "price": {
                        "total_amount": f"{order.price:.2f}",
                        "currency_code": order.currency,
                    },
                }
            ],
        },
        "dealer": {"dealer_id": order.dealer_id},
    }


@dataclass(frozen=True, slots=True)
class BookedAppointment:
    """A workshop appointment booked in aftersales (its future event's facts)."""

    appointment_id: str
    dealer_id: str
    vin: str
    types: tuple[str, ...]
    start_time: dt.datetime
    end_time: dt.datetime
    status: str = "CONFIRMED"


def appointment(booked: BookedAppointment) -> dict[str, Any]:
    """The STAR ServiceAppointment of a booked appointment."""
    return {
        "service_appointment_key": booked.appointment_id,
        "appointment_status_type": booked.status,
        "appointment_source_type": "MOBILE_APP",
        "appointment_source_code": "MARQUE",
        "appointment_types": list(booked.types),
        "appointment_period": {
            "start_date_time": _time(booked.start_time),
            "complete_date_time": _time(booked.end_time),
        },
        "vehicle_asset": {"vehicle_reference": {"vin": booked.vin}},
        "dealer_references": [{"dealer_id": booked.dealer_id}],
    }

"""The ERP adapter's records: what Marque asks SAP to create, and what SAP answers."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum


class Status(StrEnum):
    """OverallSDProcessStatus, named as the proto's SalesOrderStatus without its prefix."""

    UNSPECIFIED = "UNSPECIFIED"
    OPEN = "OPEN"
    IN_PROCESS = "IN_PROCESS"
    COMPLETED = "COMPLETED"


# SAP's one-letter status codes (A not yet, B partially, C completely processed).
STATUS_OF_CODE = {"A": Status.OPEN, "B": Status.IN_PROCESS, "C": Status.COMPLETED}


@dataclass(frozen=True, slots=True)
class OrderLine:
    """One item of the deep insert: the car, or one of its options under it."""

    item: str  # SalesOrderItem: "10", "20", ...
    material: str
    text: str
    quantity: Decimal
    unit: str
    price: Decimal | None  # a PR00 condition when Marque sets the price, else SAP prices it
    higher_level_item: str = ""


@dataclass(frozen=True, slots=True)
class OrderRequest:
    """A SAP sales order to create for one Marque order (PurchaseOrderByCustomer)."""

    order_id: str
    sales_order_type: str
    sales_organization: str
    distribution_channel: str
    division: str
    sold_to_party: str
    currency: str
    lines: tuple[OrderLine, ...]


@dataclass(frozen=True, slots=True)
class SalesOrder:
    """A SAP sales order as the adapter reads it back."""

    sap_sales_order: str
    order_id: str
    status: Status
    net_amount: Decimal
    currency: str
    create_time: dt.datetime | None

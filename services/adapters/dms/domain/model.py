"""The DMS adapter's records: the STAR documents as the adapter reads them (only the
fields it uses, no customer data), what it keeps of an accepted one, and its deliveries."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum


class Kind(StrEnum):
    """A STAR document's kind (the proto's DocumentKind without its prefix)."""

    REPAIR_ORDER = "REPAIR_ORDER"
    REPAIR_STATUS_EVENT = "REPAIR_STATUS_EVENT"
    RETAIL_DELIVERY_REPORT = "RETAIL_DELIVERY_REPORT"
    SERVICE_APPOINTMENT = "SERVICE_APPOINTMENT"


@dataclass(frozen=True, slots=True)
class Amount:
    """A STAR money amount: a decimal string and its currency."""

    value: Decimal
    currency: str


@dataclass(frozen=True, slots=True)
class EstimateLine:
    """A labor operation of a repair order."""

    labor_operation_id: str
    code: str
    name: str
    status: str
    amount: Amount | None


@dataclass(frozen=True, slots=True)
class RepairOrder:
    """A repair order and its estimate lines."""

    repair_order_id: str
    vin: str
    lines: tuple[EstimateLine, ...]
    total: Amount | None


@dataclass(frozen=True, slots=True)
class RepairStatus:
    """A repair order's move to a workshop stage."""

    repair_order_id: str
    status_event_id: str
    stage: str
    status: str
    occur_time: dt.datetime


@dataclass(frozen=True, slots=True)
class DeliveryReport:
    """A retail delivery report (RDR): a car handed over to its buyer."""

    rdr_id: str
    vin: str
    order_id: str
    rdr_status: str
    purchase_type: str
    delivery_time: dt.datetime


@dataclass(frozen=True, slots=True)
class Appointment:
    """A service appointment."""

    appointment_id: str
    status: str
    types: tuple[str, ...]
    vin: str
    start_time: dt.datetime | None
    end_time: dt.datetime | None


Document = RepairOrder | RepairStatus | DeliveryReport | Appointment


@dataclass(frozen=True, slots=True)
class Parsed:
    """A valid document with its natural key: (kind, source id, revision) of its dealer."""

    kind: Kind
    source_id: str
    revision: str
    document: Document


@dataclass(frozen=True, slots=True)
class InboundDocument:
    """What the adapter keeps of an accepted document (never its body)."""

    document_id: str
    dealer_id: str
    kind: Kind
    source_id: str
    revision: str
    event_type: str
    event_id: str
    body_sha256: str
    receive_time: dt.datetime


@dataclass(frozen=True, slots=True)
class Delivery:
    """An RDR sent to a dealer's DMS and its answer."""

    order_id: str
    dealer_id: str
    kind: Kind
    http_status: int
    dms_reference: str
    deliver_time: dt.datetime

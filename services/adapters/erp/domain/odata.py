"""OData V2 as SAP Gateway speaks it, on plain data: `/Date(ms)/` times, decimals as
strings, the deep-insert body of a sales order, an order read back, and the error
envelope mapped to mesh errors (SAP's message and `errordetails` kept).
"""

from __future__ import annotations

import datetime as dt
import json
import re
from decimal import Decimal, InvalidOperation
from typing import Any

from mesh.errors import (
    AlreadyExists,
    DomainError,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    Unavailable,
)
from services.adapters.erp.domain import errors
from services.adapters.erp.domain.model import (
    STATUS_OF_CODE,
    OrderRequest,
    SalesOrder,
    Status,
)

_DATE = re.compile(r"^/Date\((-?\d+)([+-]\d{4})?\)/$")
# Kept short: ErrorInfo metadata travels in a header.
_DETAILS_LIMIT = 2000


def parse_date(value: str) -> dt.datetime:
    """`/Date(1700000000000)/` (or with an offset, `+0060` in minutes) as an aware UTC time."""
    m = _DATE.match(value.strip())
    if m is None:
        raise ValueError(f"not an OData V2 date: {value!r}")
    when = dt.datetime.fromtimestamp(int(m.group(1)) / 1000, tz=dt.UTC)
    return when


def format_date(when: dt.datetime) -> str:
    """The OData V2 form of an aware time, to the millisecond."""
    return f"/Date({int(when.timestamp() * 1000)})/"


def decimal_text(value: Decimal, scale: int = 3) -> str:
    """A decimal as Edm.Decimal travels in JSON: a string, fixed to `scale` places."""
    return f"{value.quantize(Decimal(1).scaleb(-scale)):f}"


def parse_decimal(value: object) -> Decimal:
    """An Edm.Decimal from JSON (SAP sends strings; a number is taken too)."""
    try:
        return Decimal(str(value))
    except InvalidOperation:
        raise ValueError(f"not a decimal: {value!r}") from None


def quoted(value: str) -> str:
    """A string literal of `$filter` (single quotes doubled)."""
    return "'" + value.replace("'", "''") + "'"


def payload(req: OrderRequest) -> dict[str, Any]:
    """The deep insert of `A_SalesOrder` with its `to_Item` (and their price conditions)."""
    items = []
    for line in req.lines:
        item: dict[str, Any] = {
            "SalesOrderItem": line.item,
            "Material": line.material,
            "SalesOrderItemText": line.text,
            "RequestedQuantity": decimal_text(line.quantity),
            "RequestedQuantityUnit": line.unit,
        }
        if line.higher_level_item:
            item["HigherLevelItem"] = line.higher_level_item
        if line.price is not None:
            item["to_PricingElement"] = {
                "results": [
                    {
                        "ConditionType": "PR00",
                        "ConditionRateValue": decimal_text(line.price, 2),
                        "ConditionCurrency": req.currency,
                    }
                ]
            }
        items.append(item)
    return {
        "SalesOrderType": req.sales_order_type,
        "SalesOrganization": req.sales_organization,
        "DistributionChannel": req.distribution_channel,
        "OrganizationDivision": req.division,
        "SoldToParty": req.sold_to_party,
        "PurchaseOrderByCustomer": req.order_id,
        "TransactionCurrency": req.currency,
        "to_Item": {"results": items},
    }


def sales_order(d: dict[str, Any]) -> SalesOrder:
    """An `A_SalesOrder` entity (the `d` object) as the adapter's record."""
    created = d.get("CreationDate")
    return SalesOrder(
        sap_sales_order=str(d["SalesOrder"]),
        order_id=str(d.get("PurchaseOrderByCustomer") or ""),
        status=STATUS_OF_CODE.get(str(d.get("OverallSDProcessStatus") or ""), Status.UNSPECIFIED),
        net_amount=parse_decimal(d.get("TotalNetAmount") or "0"),
        currency=str(d.get("TransactionCurrency") or ""),
        create_time=parse_date(created) if isinstance(created, str) and created else None,
    )


def results(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The entities of a collection answer (`{"d": {"results": [...]}}`, or V1's list)."""
    d = body.get("d")
    if isinstance(d, list):
        return d
    if isinstance(d, dict) and isinstance(d.get("results"), list):
        return list(d["results"])
    raise ValueError("not an OData collection")


def _error_class(status: int) -> tuple[type[DomainError], str]:
    if status == 404:
        return NotFound, errors.SALES_ORDER_NOT_FOUND
    if status in (401, 403):
        return Unavailable, errors.SAP_AUTH_FAILED
    if status == 409:
        return AlreadyExists, errors.SAP_REJECTED
    if status == 412:
        return FailedPrecondition, errors.SAP_REJECTED
    if status == 429 or status >= 500:
        return Unavailable, errors.SAP_UNAVAILABLE
    return InvalidArgument, errors.SAP_REJECTED


def envelope_error(status: int, body: object) -> DomainError:
    """SAP's error envelope (`{"error": {"code", "message": {"value"}, "innererror":
    {"errordetails": [...]}}}`) as the mesh error of its HTTP status, SAP's words kept."""
    cls, reason = _error_class(status)
    if not isinstance(body, dict) or not isinstance(body.get("error"), dict):
        meta = {"http_status": str(status)}
        return errors.sap_error(cls, reason, f"SAP answered HTTP {status}", meta)
    error = body["error"]
    message = error.get("message")
    text = str(message.get("value", "")) if isinstance(message, dict) else str(message or "")
    inner = error.get("innererror")
    details = inner.get("errordetails", []) if isinstance(inner, dict) else []
    metadata = {
        "http_status": str(status),
        "sap_code": str(error.get("code", "")),
        "sap_message": text,
    }
    if details:
        metadata["sap_errordetails"] = json.dumps(details, ensure_ascii=False)[:_DETAILS_LIMIT]
    return errors.sap_error(
        cls, reason, f"SAP: {text or 'error'} ({metadata['sap_code']})", metadata
    )

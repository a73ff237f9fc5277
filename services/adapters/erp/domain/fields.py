"""The limits of the fields the adapter sends, copied from SAP's `$metadata` of
API_SALES_ORDER_SRV (MaxLength of each Edm.String, Precision/Scale of each Edm.Decimal) so
an order that SAP would refuse is refused here, with the field named, before any call.
`services/adapters/erp/tests/test_fields.py` compares them with the shipped edmx.

SAP marks only the keys `Nullable="false"`; the fields a sales order cannot be created
without are SAP's business rules, so REQUIRED lists them by hand.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

from mesh.errors import FieldViolation

HEADER = "A_SalesOrderType"
ITEM = "A_SalesOrderItemType"
PRICE = "A_SalesOrderItemPrElementType"

MAX_LENGTH: dict[str, dict[str, int]] = {
    HEADER: {
        "SalesOrderType": 4,
        "SalesOrganization": 4,
        "DistributionChannel": 2,
        "OrganizationDivision": 2,
        "SoldToParty": 10,
        "PurchaseOrderByCustomer": 35,
        "TransactionCurrency": 5,
    },
    ITEM: {
        "SalesOrderItem": 6,
        "HigherLevelItem": 6,
        "SalesOrderItemText": 40,
        "Material": 40,
        "RequestedQuantityUnit": 3,
    },
    PRICE: {"ConditionType": 4, "ConditionCurrency": 5},
}
# (precision, scale) of the decimals sent.
DECIMALS: dict[str, dict[str, tuple[int, int]]] = {
    ITEM: {"RequestedQuantity": (15, 3)},
    PRICE: {"ConditionRateValue": (24, 9)},
}
REQUIRED: dict[str, tuple[str, ...]] = {
    HEADER: (
        "SalesOrderType",
        "SalesOrganization",
        "DistributionChannel",
        "OrganizationDivision",
        "SoldToParty",
        "PurchaseOrderByCustomer",
    ),
    ITEM: ("SalesOrderItem", "Material", "RequestedQuantity"),
    PRICE: ("ConditionType", "ConditionRateValue"),
}


def _decimal_fits(text: str, precision: int, scale: int) -> bool:
    try:
        value = Decimal(text)
    except InvalidOperation:
        return False
    _sign, digits, exponent = value.as_tuple()
    if not isinstance(exponent, int):
        return False
    fraction = max(0, -exponent)
    whole = max(0, len(digits) + exponent)
    return fraction <= scale and whole <= precision - scale


def check_entity(entity: str, values: Mapping[str, Any], path: str) -> list[FieldViolation]:
    """What in `values` (one entity of the payload) SAP would refuse, by field path."""
    found: list[FieldViolation] = []
    for name in REQUIRED.get(entity, ()):
        if values.get(name) in (None, ""):
            found.append(FieldViolation(f"{path}{name}", "is required by SAP"))
    for name, limit in MAX_LENGTH.get(entity, {}).items():
        value = values.get(name)
        if isinstance(value, str) and len(value) > limit:
            found.append(FieldViolation(f"{path}{name}", f"longer than SAP's {limit} characters"))
    for name, (precision, scale) in DECIMALS.get(entity, {}).items():
        value = values.get(name)
        if isinstance(value, str) and not _decimal_fits(value, precision, scale):
            found.append(
                FieldViolation(f"{path}{name}", f"not a decimal of SAP's ({precision},{scale})")
            )
    return found


def check_payload(payload: Mapping[str, Any]) -> list[FieldViolation]:
    """The deep insert's header, items and price conditions, checked against SAP's limits."""
    found = check_entity(HEADER, payload, "")
    items = payload.get("to_Item", {}).get("results", [])
    if not items:
        found.append(FieldViolation("to_Item", "a sales order needs at least one item"))
    for i, item in enumerate(items):
        found += check_entity(ITEM, item, f"to_Item[{i}].")
        for j, cond in enumerate(item.get("to_PricingElement", {}).get("results", [])):
            found += check_entity(PRICE, cond, f"to_Item[{i}].to_PricingElement[{j}].")
    return found

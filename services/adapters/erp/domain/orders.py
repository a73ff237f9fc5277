"""A confirmed Marque order as the SAP sales order to create: the car as item 10 priced at
the order's invoice price (condition PR00), each option as an item under it that SAP
prices (zero here: the invoice price is the car's whole price)."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

from services.adapters.erp.domain.config import ErpConfig
from services.adapters.erp.domain.fields import ITEM, MAX_LENGTH
from services.adapters.erp.domain.model import OrderLine, OrderRequest

# Descriptions are cut to fit; codes are not (a code SAP cannot hold is refused, named).
_TEXT = MAX_LENGTH[ITEM]["SalesOrderItemText"]


def order_request(
    config: ErpConfig,
    *,
    order_id: str,
    dealer_id: str,
    model_code: str,
    trim_code: str,
    option_codes: Sequence[str],
    price: Decimal,
    currency: str,
) -> OrderRequest:
    """The deep insert's content for one order (checked against SAP's limits when sent)."""
    car = OrderLine(
        item="10",
        material=model_code.upper(),
        text=f"{model_code} {trim_code}".strip()[:_TEXT],
        quantity=Decimal(1),
        unit=config.unit,
        price=price,
    )
    options = tuple(
        OrderLine(
            item=str(20 + 10 * i),
            material=code.upper(),
            text=code[:_TEXT],
            quantity=Decimal(1),
            unit=config.unit,
            price=Decimal(0),
            higher_level_item="10",
        )
        for i, code in enumerate(option_codes)
    )
    return OrderRequest(
        order_id=order_id,
        sales_order_type=config.sales_order_type,
        sales_organization=config.sales_organization,
        distribution_channel=config.distribution_channel,
        division=config.division,
        sold_to_party=config.sold_to.get(dealer_id, config.default_sold_to),
        currency=currency,
        lines=(car, *options),
    )

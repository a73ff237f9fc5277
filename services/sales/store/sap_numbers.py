"""An order's SAP sales order number, set once when the ERP adapter reports it."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncConnection

from services.sales.store.tables import orders


async def set_sap_sales_order(conn: AsyncConnection, order_id: str, number: str) -> bool:
    """Record `number` on the order unless it has one; True when the row changed. The
    version moves (a new etag: the order as clients see it changed); its state and
    update_time do not (SAP's answer is no transition)."""
    changed = await conn.execute(
        orders.update()
        .where(orders.c.id == order_id, orders.c.sap_sales_order == "")
        .values(sap_sales_order=number, version=orders.c.version + 1)
    )
    return bool(changed.rowcount)

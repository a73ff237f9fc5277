"""Reads and writes of orders and of the dealers' stock. An order row keeps, beside the
domain's Order, the lead it came from, its locked figures and the handover checklist."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from services.sales.domain.orders import Order, OrderState
from services.sales.domain.quoting import Priced
from services.sales.store import keyset
from services.sales.store.locking import for_update
from services.sales.store.money import cents, from_cents
from services.sales.store.quote_codec import priced_json, priced_of
from services.sales.store.tables import orders, stock_vehicles

_o = orders.c
_s = stock_vehicles.c


@dataclass(frozen=True, slots=True)
class OrderRow:
    """An order as stored: the domain's record and what travels with it."""

    order: Order
    lead_id: str
    priced: Priced
    checklist: tuple[tuple[str, bool], ...] = ()


def _values(row: OrderRow) -> dict[str, Any]:
    o = row.order
    return {
        "id": o.id,
        "quote_id": o.quote_id,
        "opportunity_id": o.opportunity_id,
        "lead_id": row.lead_id,
        "dealer_id": o.dealer_id,
        "member_id": o.member_id,
        "model_code": o.model_code,
        "trim_code": o.trim_code,
        "option_codes": json.dumps(list(o.option_codes)),
        "figures": priced_json(row.priced),
        "invoice_price_fen": cents(o.invoice_price),
        "deposit_fen": cents(o.deposit),
        "deposit_paid_fen": cents(o.deposit_paid),
        "state": o.state.value,
        "vin": o.vin,
        "invoice_number": o.invoice_number,
        "invoice_time": o.invoice_time,
        "delivery_time": o.delivery_time,
        "checklist": json.dumps([list(item) for item in row.checklist], ensure_ascii=False),
        "sap_sales_order": o.sap_sales_order,
        "cancel_reason": o.cancel_reason,
        "refund_fen": cents(o.refund),
        "version": o.version,
        "create_time": o.create_time,
        "update_time": o.update_time,
    }


def _record(row: Any) -> OrderRow:
    order = Order(
        id=row.id,
        dealer_id=row.dealer_id,
        member_id=row.member_id,
        opportunity_id=row.opportunity_id,
        quote_id=row.quote_id,
        model_code=row.model_code,
        trim_code=row.trim_code,
        option_codes=tuple(json.loads(row.option_codes)),
        invoice_price=from_cents(row.invoice_price_fen),
        deposit=from_cents(row.deposit_fen),
        deposit_paid=from_cents(row.deposit_paid_fen),
        state=OrderState(row.state),
        vin=row.vin,
        invoice_number=row.invoice_number,
        invoice_time=row.invoice_time,
        delivery_time=row.delivery_time,
        sap_sales_order=row.sap_sales_order,
        cancel_reason=row.cancel_reason,
        refund=from_cents(row.refund_fen),
        version=row.version,
        create_time=row.create_time,
        update_time=row.update_time,
    )
    checklist = tuple((str(item), bool(done)) for item, done in json.loads(row.checklist))
    return OrderRow(order, row.lead_id, priced_of(row.figures), checklist)


async def insert(conn: AsyncConnection, row: OrderRow) -> None:
    """A new order."""
    await conn.execute(orders.insert().values(**_values(row)))


async def update(conn: AsyncConnection, row: OrderRow) -> None:
    """Write a changed order back whole."""
    await conn.execute(orders.update().where(_o.id == row.order.id).values(**_values(row)))


async def get(conn: AsyncConnection, order_id: str, *, lock: bool = False) -> OrderRow | None:
    """The order with this id (locked on PostgreSQL when `lock`)."""
    query = sa.select(orders).where(_o.id == order_id)
    query = for_update(query, conn, lock=lock)
    found = (await conn.execute(query)).first()
    return None if found is None else _record(found)


async def page(
    conn: AsyncConnection,
    *,
    dealer_id: str,
    member_id: str,
    state: OrderState | None,
    after: str | None,
    limit: int,
) -> list[OrderRow]:
    """Orders newest first, of a dealer (ix_orders_dealer[_state]), of a member
    (ix_orders_member) or of all (ix_orders_create)."""
    where = [keyset.after(orders, after)]
    if dealer_id:
        where.append(_o.dealer_id == dealer_id)
    if member_id:
        where.append(_o.member_id == member_id)
    if state is not None:
        where.append(_o.state == state.value)
    query = sa.select(orders).where(*where).order_by(*keyset.newest_first(orders)).limit(limit)
    return [_record(found) for found in await conn.execute(query)]


async def put_stock(
    conn: AsyncConnection, vin: str, dealer_id: str, model_code: str, trim_code: str
) -> bool:
    """Add a car to a dealer's stock, or correct a free one; False when the VIN is
    allocated to an order (or another dealer's)."""
    found = (await conn.execute(sa.select(stock_vehicles).where(_s.vin == vin))).first()
    if found is not None and (found.order_id or found.dealer_id != dealer_id):
        return False
    await conn.execute(stock_vehicles.delete().where(_s.vin == vin))
    await conn.execute(
        stock_vehicles.insert().values(
            vin=vin, dealer_id=dealer_id, model_code=model_code, trim_code=trim_code
        )
    )
    return True


async def stock(conn: AsyncConnection, vin: str) -> tuple[str, str, str, str | None] | None:
    """(dealer, model, trim, order) of a car of the stock."""
    found = (await conn.execute(sa.select(stock_vehicles).where(_s.vin == vin))).first()
    if found is None:
        return None
    return found.dealer_id, found.model_code, found.trim_code, found.order_id


async def take_stock(conn: AsyncConnection, vin: str, order_id: str) -> bool:
    """Set a free car aside for the order; False when another order has it."""
    done = await conn.execute(
        stock_vehicles.update()
        .where(_s.vin == vin, _s.order_id.is_(None))
        .values(order_id=order_id)
    )
    return bool(done.rowcount)


async def free_stock(conn: AsyncConnection, order_id: str) -> None:
    """The cars an order held are free again (its cancellation)."""
    await conn.execute(stock_vehicles.update().where(_s.order_id == order_id).values(order_id=None))


# The batch writer's names for the row codec (store/order_batch.py).
values_of = _values
record_of = _record

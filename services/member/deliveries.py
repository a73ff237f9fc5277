"""What a delivered car (sales' OrderDelivered) makes of its buyer in member: the
registered owner of the VIN (VehicleBound) and the purchase's points.

Idempotent twice over: the inbox drops a redelivered event, and the points are booked under
the request id `delivery:<order id>` in the scope of the sales service, so a replayed event
(mesh.events.replay) earns nothing twice either. A buyer merged into another member is the
survivor; an erased or unknown buyer gets nothing. A VIN another member owns moves to the
buyer: the delivery is the record of the sale.
"""

from __future__ import annotations

import datetime as dt
import functools
import os
from decimal import Decimal

from marque.sales.v1 import sales_events_pb2

from mesh.convert import decimal_of
from mesh.events.envelope import Envelope
from mesh.idempotency import Request, fingerprint
from mesh.unit_of_work import UnitOfWork
from services.member import accounts, store
from services.member.domain import ledger
from services.member.domain import vehicles as cars
from services.member.domain.config import MemberConfig
from services.member.domain.relations import relation_holder

SALES_SCOPE = "service:sales"
REASON = "car purchase"
HUNDRED = Decimal(100)


@functools.cache
def _config() -> MemberConfig:
    """Member's rules as the service was configured (read once, like app.py does)."""
    return MemberConfig.from_env(os.environ)


@functools.cache
def points_per_100() -> int:
    """Points per whole 100 CNY of the invoice price (MARQUE_MEMBER_PURCHASE_POINTS_PER_100,
    default 1: a 200,000 CNY car earns 2,000 points)."""
    return int(os.environ.get("MARQUE_MEMBER_PURCHASE_POINTS_PER_100", "1"))


def purchase_points(invoice_price: Decimal, per_100: int) -> int:
    """The points of a purchase: per whole 100 CNY."""
    return int(invoice_price // HUNDRED) * per_100


async def _bind(
    uow: UnitOfWork, holder: str, event: sales_events_pb2.OrderDelivered, when: dt.datetime
) -> bool:
    from services.member import events  # events.py subscribes this module's handler

    o, vin = event.order, event.order.vin
    attrs = {
        "brand": "",
        "model": o.model_code,
        "purchase_date": when.date().isoformat(),
        "dealer_id": o.dealer_id,
    }
    known, owner = await store.vehicles.lock_owner(uow.conn, vin)
    if known and owner not in (None, holder):
        await store.vehicles.change_owner(uow.conn, vin, holder, when, cars.TRANSFER)
    else:
        binding = cars.bind(holder, known=known, owner_id=owner)
        if binding is cars.Binding.KEEP:
            return False
        if binding is cars.Binding.NEW:
            await store.vehicles.insert(uow.conn, vin, attrs, when)
        else:
            await store.vehicles.update(uow.conn, vin, attrs)
        await store.vehicles.change_owner(uow.conn, vin, holder, when, cars.BIND)
    uow.emit(events.vehicle_bound(holder, vin, when), subject=holder)
    return True


async def on_order_delivered(
    uow: UnitOfWork, event: sales_events_pb2.OrderDelivered, envelope: Envelope
) -> None:
    """The buyer owns the car and earns the purchase's points."""
    o = event.order
    if not o.member_id or not o.vin:
        return
    found = await store.members.state_of(uow.conn, o.member_id)
    state, merged_into = found if found is not None else (None, "")
    holder = relation_holder(o.member_id, state, merged_into)
    if holder is None:
        return
    when = (
        event.delivery_time.ToDatetime(dt.UTC) if event.HasField("delivery_time") else envelope.time
    )
    await _bind(uow, holder, event, when)
    points = purchase_points(decimal_of(o.invoice_price), points_per_100())
    if points <= 0:
        return
    config = _config()
    entry = ledger.earn(accounts.new_entry_id(), points, envelope.time, config.expiry_months)
    req = Request(SALES_SCOPE, f"delivery:{o.order_id}", fingerprint(o.order_id, points))
    await accounts.earn(
        uow, holder, entry, reason=REASON, source_ref=o.order_id, req=req, tier_rules=config.tiers
    )

"""Queries on cars and their ownership periods (one current owner per VIN: the open period,
uq_vehicle_ownerships_current)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from services.member.domain.model import VehicleRecord
from services.member.store.rows import vehicle_record
from services.member.store.tables import vehicle_ownerships, vehicles

_v, _vo = vehicles.c, vehicle_ownerships.c


async def lock_owner(conn: AsyncConnection, vin: str) -> tuple[bool, str | None]:
    """(whether the VIN is known, its current owner or None), the row locked until commit."""
    row = (
        await conn.execute(sa.select(_v.owner_id).where(_v.vin == vin).with_for_update())
    ).first()
    return (False, None) if row is None else (True, row.owner_id)


async def owner_of(conn: AsyncConnection, vin: str) -> str | None:
    """The VIN's current owner (None: unknown or released)."""
    return await conn.scalar(sa.select(_v.owner_id).where(_v.vin == vin))


async def owned_vins(conn: AsyncConnection, member_id: str) -> list[str]:
    """The VINs the member owns now (ix_vehicles_owner_id)."""
    return list((await conn.scalars(sa.select(_v.vin).where(_v.owner_id == member_id))).all())


async def insert(conn: AsyncConnection, vin: str, attrs: dict[str, str], now: dt.datetime) -> None:
    """A new VIN, owned by nobody yet."""
    await conn.execute(vehicles.insert().values(vin=vin, owner_id=None, update_time=now, **attrs))


async def update(conn: AsyncConnection, vin: str, attrs: dict[str, str]) -> None:
    """Set the car's details (brand, model, purchase date, selling dealer)."""
    await conn.execute(vehicles.update().where(_v.vin == vin).values(**attrs))


async def change_owner(
    conn: AsyncConnection, vin: str, owner: str | None, now: dt.datetime, reason: str
) -> None:
    """Close the VIN's open ownership period and open one for `owner` (None: release)."""
    await conn.execute(
        vehicle_ownerships.update()
        .where(_vo.vin == vin, _vo.end_time.is_(None))
        .values(end_time=now)
    )
    if owner is not None:
        await conn.execute(
            vehicle_ownerships.insert().values(
                vin=vin, member_id=owner, start_time=now, reason=reason
            )
        )
    await conn.execute(
        vehicles.update().where(_v.vin == vin).values(owner_id=owner, update_time=now)
    )


async def _with_history(conn: AsyncConnection, query: sa.Select[Any]) -> list[VehicleRecord]:
    cars = (await conn.execute(query)).all()
    if not cars:
        return []
    periods: dict[str, list[Any]] = {}
    history = sa.select(vehicle_ownerships).where(_vo.vin.in_([c.vin for c in cars]))
    for r in await conn.execute(history.order_by(_vo.vin, _vo.seq)):
        periods.setdefault(r.vin, []).append(r)
    return [vehicle_record(c, periods.get(c.vin, ())) for c in cars]


async def vehicle(conn: AsyncConnection, vin: str) -> VehicleRecord | None:
    """One car with its history."""
    cars = await _with_history(conn, sa.select(vehicles).where(_v.vin == vin))
    return cars[0] if cars else None


async def list_vehicles(
    conn: AsyncConnection, member_id: str, after_vin: str | None, limit: int
) -> list[VehicleRecord]:
    """Up to `limit` cars the member currently owns, by VIN, after `after_vin`."""
    query = sa.select(vehicles).where(_v.owner_id == member_id)
    if after_vin:
        query = query.where(_v.vin > after_vin)
    return await _with_history(conn, query.order_by(_v.vin).limit(limit))

"""Reads and writes of test-drive cars, dealers' opening hours, test drives and their slot
claims. A booking's claims (one row per quarter hour for its car and one for its
consultant) share a primary key with any overlapping booking's, so two bookings of one slot
cannot both commit, on either back end."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from services.sales.domain.testdrive import DriveState, TestDrive, TestDriveCar
from services.sales.store.locking import for_update
from services.sales.store.tables import (
    opening_hours,
    opportunities,
    slot_claims,
    test_drive_cars,
    test_drives,
)

_t = test_drives.c
_car = test_drive_cars.c
MAX_LISTED = 1000


def _row(d: TestDrive) -> dict[str, Any]:
    return {
        "id": d.id,
        "dealer_id": d.dealer_id,
        "opportunity_id": d.opportunity_id,
        "vin": d.vin,
        "consultant_id": d.consultant_id,
        "start_time": d.start,
        "end_time": d.end,
        "state": d.state.value,
        "feedback": d.feedback,
        "rating": d.rating,
        "version": d.version,
        "create_time": d.create_time,
        "update_time": d.update_time,
    }


def _record(row: Any) -> TestDrive:
    return TestDrive(
        id=row.id,
        dealer_id=row.dealer_id,
        opportunity_id=row.opportunity_id,
        vin=row.vin,
        consultant_id=row.consultant_id,
        start=row.start_time,
        end=row.end_time,
        state=DriveState(row.state),
        feedback=row.feedback,
        rating=row.rating,
        version=row.version,
        create_time=row.create_time,
        update_time=row.update_time,
    )


async def put_car(conn: AsyncConnection, car: TestDriveCar) -> None:
    """Add or replace a test-drive car."""
    await conn.execute(test_drive_cars.delete().where(_car.vin == car.vin))
    await conn.execute(
        test_drive_cars.insert().values(
            vin=car.vin, dealer_id=car.dealer_id, model_code=car.model_code, active=car.active
        )
    )


async def car(conn: AsyncConnection, vin: str) -> tuple[str, str, bool] | None:
    """(dealer, model, active) of a test-drive car."""
    row = (await conn.execute(sa.select(test_drive_cars).where(_car.vin == vin))).first()
    return None if row is None else (row.dealer_id, row.model_code, bool(row.active))


async def hours_of(conn: AsyncConnection, dealer_id: str) -> tuple[str, str] | None:
    """(time zone, days as JSON) of a dealer that set its hours."""
    row = (
        await conn.execute(sa.select(opening_hours).where(opening_hours.c.dealer_id == dealer_id))
    ).first()
    return None if row is None else (row.time_zone, row.days)


async def set_hours(conn: AsyncConnection, dealer_id: str, time_zone: str, days: str) -> None:
    """Replace a dealer's opening hours."""
    await conn.execute(opening_hours.delete().where(opening_hours.c.dealer_id == dealer_id))
    await conn.execute(
        opening_hours.insert().values(dealer_id=dealer_id, time_zone=time_zone, days=days)
    )


async def insert(conn: AsyncConnection, drive: TestDrive, slots: Sequence[str]) -> None:
    """A new booking and its slot claims (a claim taken already fails the insert)."""
    await conn.execute(test_drives.insert().values(**_row(drive)))
    await claim(conn, drive.id, slots)


async def claim(conn: AsyncConnection, drive_id: str, slots: Sequence[str]) -> None:
    """Claim the quarter hours for a booking."""
    if slots:
        await conn.execute(
            slot_claims.insert(), [{"slot": s, "test_drive_id": drive_id} for s in slots]
        )


async def release(conn: AsyncConnection, drive_id: str) -> None:
    """Free a booking's quarter hours (cancelled, completed or moved)."""
    await conn.execute(slot_claims.delete().where(slot_claims.c.test_drive_id == drive_id))


async def update(conn: AsyncConnection, drive: TestDrive) -> None:
    """Write a changed booking back whole."""
    await conn.execute(test_drives.update().where(_t.id == drive.id).values(**_row(drive)))


async def get(conn: AsyncConnection, drive_id: str, *, lock: bool = False) -> TestDrive | None:
    """The booking with this id (locked on PostgreSQL when `lock`)."""
    query = sa.select(test_drives).where(_t.id == drive_id)
    query = for_update(query, conn, lock=lock)
    row = (await conn.execute(query)).first()
    return None if row is None else _record(row)


async def holders(conn: AsyncConnection, slots: Sequence[str]) -> list[TestDrive]:
    """The bookings holding any of these quarter hours (for the refusal's reason)."""
    ids = sa.select(slot_claims.c.test_drive_id).where(slot_claims.c.slot.in_(list(slots)))
    rows = await conn.execute(sa.select(test_drives).where(_t.id.in_(ids)))
    return [_record(row) for row in rows]


async def in_window(
    conn: AsyncConnection,
    dealer_id: str,
    start: dt.datetime,
    end: dt.datetime,
    state: DriveState | None,
) -> list[TestDrive]:
    """A dealer's bookings starting in [start, end), earliest first
    (ix_test_drives_dealer_start), at most 1000."""
    where = [_t.dealer_id == dealer_id, _t.start_time >= start, _t.start_time < end]
    if state is not None:
        where.append(_t.state == state.value)
    query = sa.select(test_drives).where(*where).order_by(_t.start_time, _t.id).limit(MAX_LISTED)
    return [_record(row) for row in await conn.execute(query)]


async def erase_feedback_of_member(conn: AsyncConnection, member_id: str) -> int:
    """Blank the feedback of an erased member's test drives (the drives of the member's
    opportunities); the number blanked."""
    of_member = sa.select(opportunities.c.id).where(opportunities.c.member_id == member_id)
    done = await conn.execute(
        test_drives.update()
        .where(_t.opportunity_id.in_(of_member.scalar_subquery()), _t.feedback != "")
        .values(feedback="")
    )
    return int(done.rowcount or 0)


async def cars_by_vin(conn: AsyncConnection, vins: Sequence[str]) -> dict[str, tuple[str, bool]]:
    """(dealer, active) of these test-drive cars (a batch of bookings, booking_writer.py)."""
    if not vins:
        return {}
    query = sa.select(_car.vin, _car.dealer_id, _car.active).where(_car.vin.in_(sorted(vins)))
    return {r.vin: (r.dealer_id, bool(r.active)) for r in await conn.execute(query)}


async def hours_by_dealer(
    conn: AsyncConnection, dealers: Sequence[str]
) -> dict[str, tuple[str, str]]:
    """(time zone, days as JSON) of these dealers, of those that set their hours."""
    if not dealers:
        return {}
    h = opening_hours.c
    query = sa.select(h.dealer_id, h.time_zone, h.days).where(h.dealer_id.in_(sorted(dealers)))
    return {r.dealer_id: (r.time_zone, r.days) for r in await conn.execute(query)}


async def insert_many(
    conn: AsyncConnection, drives: Sequence[TestDrive], claims: Sequence[tuple[str, str]]
) -> None:
    """New bookings and their slot claims (slot, drive id), a statement per table (a claim
    taken already fails the insert)."""
    if drives:
        await conn.execute(test_drives.insert(), [_row(d) for d in drives])
    if claims:
        rows = [{"slot": slot, "test_drive_id": drive_id} for slot, drive_id in claims]
        await conn.execute(slot_claims.insert(), rows)

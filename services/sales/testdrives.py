"""The sales engine's test drives: PutTestDriveCar, SetOpeningHours, BookTestDrive,
RescheduleTestDrive, CancelTestDrive, CompleteTestDrive, GetTestDrive, ListTestDrives.

A booking holds its quarter hours in `slot_claims` (store/testdrives.py): of concurrent
bookings of one slot the first to commit wins, the other's insert fails on the key, its
transaction runs again, finds the winner and is refused (CAR_TAKEN, CONSULTANT_TAKEN).
Within one process the bookings of a slot queue at `slot_gate.py`, and those behind the
first are refused from what it found, without a transaction of their own.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncConnection

from mesh.idempotency import Request
from mesh.identity import Caller
from mesh.tracing import current_span_context
from mesh.unit_of_work import UnitOfWork
from services.sales.base import new_id
from services.sales.booking_writer import NewBooking, Refused, Retried
from services.sales.domain import testdrive as rules
from services.sales.domain import visibility as vis
from services.sales.domain.errors import (
    TEST_DRIVE_CAR_NOT_FOUND,
    TEST_DRIVE_NOT_FOUND,
    not_found,
)
from services.sales.domain.testdrive import DriveState, OpeningHours, TestDrive, TestDriveCar
from services.sales.opportunities import Opportunities
from services.sales.slot_gate import Hold, Known
from services.sales.store import testdrives as store
from services.sales.store.hours_codec import days_json, hours_of

BOOK = "BookTestDrive"


@dataclass(frozen=True, slots=True)
class Booking:
    """What a BookTestDrive asks, as its steps pass it on."""

    opp_id: str
    vin: str
    consultant_id: str
    start: dt.datetime
    req: Request
    now: dt.datetime


MAX_WINDOW = dt.timedelta(days=31)


def _known(drive: TestDrive, request: Request | None = None) -> Known:
    """What a booking hands on about a drive holding quarter hours."""
    keys = rules.slot_keys(drive.vin, drive.consultant_id, drive.start, drive.end)
    return Known(drive, frozenset(keys), request)


class TestDrives(Opportunities):
    """Test-drive cars, opening hours and bookings."""

    async def put_test_drive_car(self, car: TestDriveCar, *, caller: Caller) -> TestDriveCar:
        """PutTestDriveCar: a dealer its own cars; staff name the dealer."""
        dealer = vis.dealer_for(caller, car.dealer_id, "car.dealer_id")
        kept = rules.new_car(car.vin, dealer, car.model_code, car.active)

        async def work(uow: UnitOfWork) -> None:
            known = await store.car(uow.conn, kept.vin)
            if known is not None and not vis.may_change(caller, known[0]):
                raise not_found(TEST_DRIVE_CAR_NOT_FOUND, "test-drive car", kept.vin)
            await store.put_car(uow.conn, kept)

        await self.write(work)
        return kept

    async def set_opening_hours(
        self, dealer_id: str, hours: OpeningHours, *, caller: Caller
    ) -> tuple[str, OpeningHours]:
        """SetOpeningHours: the dealer's days and time zone."""
        dealer = vis.dealer_for(caller, dealer_id, "dealer_id")

        async def work(uow: UnitOfWork) -> None:
            await store.set_hours(uow.conn, dealer, hours.time_zone, days_json(hours))

        await self.write(work)
        return dealer, hours

    async def _hours(self, conn: AsyncConnection, dealer_id: str) -> OpeningHours:
        found = await store.hours_of(conn, dealer_id)
        if found is None:
            return rules.default_hours(self.config.default_time_zone)
        return hours_of(*found)

    async def _slot(
        self, conn: AsyncConnection, dealer_id: str, start: dt.datetime, now: dt.datetime
    ) -> tuple[dt.datetime, dt.datetime]:
        hours = await self._hours(conn, dealer_id)
        return rules.slot(start, self.config.test_drive_minutes, hours, now)

    async def _hold(self, uow: UnitOfWork, drive: TestDrive) -> None:
        """Refuse a taken car or consultant, then claim the drive's quarter hours."""
        keys = rules.slot_keys(drive.vin, drive.consultant_id, drive.start, drive.end)
        taken = [d for d in await store.holders(uow.conn, keys) if d.id != drive.id]
        rules.conflicts(drive.start, drive.end, drive.vin, drive.consultant_id, taken)
        await store.claim(uow.conn, drive.id, keys)

    async def book_test_drive(
        self,
        opp_id: str,
        vin: str,
        consultant_id: str,
        start: dt.datetime,
        *,
        request_id: str,
        caller: Caller,
    ) -> TestDrive:
        """BookTestDrive: one of the dealer's active cars, a free slot, a free consultant.
        One booking of these quarter hours at a time in this process (slot_gate.py): one
        that waited behind another is refused from what that one found, with no database
        work; the first in line reads and is refused on the read, or books."""
        now = self.clock()
        req = self.request(caller, request_id, BOOK, opp_id, vin, consultant_id, start)
        asked = Booking(opp_id, vin, consultant_id, start, req, now)
        keys = rules.asked_keys(vin, consultant_id, start, self.config.test_drive_minutes)
        async with self.gate.hold(keys) as turn:
            known = [
                k.drive
                for k in turn.holders()
                if k.request != req and vis.may_see(caller, k.drive.dealer_id)
            ]
            if known:  # taken for a booking that went before, in this process
                begin = start.astimezone(dt.UTC)
                end = begin + dt.timedelta(minutes=self.config.test_drive_minutes)
                rules.conflicts(begin, end, vin, consultant_id, known)
            return await self._first_in_line(asked, keys, caller, turn)

    async def _first_in_line(
        self, asked: Booking, keys: list[str], caller: Caller, turn: Hold
    ) -> TestDrive:
        """The booking, group-committed with the others reaching the database now
        (booking_writer.py checks it all: a retried request, the opportunity, the car, the
        hours, the holders); the holders it was refused for, or the drive it booked, are
        handed on to the bookings waiting behind it."""
        outcome = await self.booking_writer.submit(
            NewBooking(asked.opp_id, asked.vin, asked.consultant_id, asked.start, asked.req,
                       caller, new_id("td"), asked.now, tuple(keys), current_span_context())
        )  # fmt: skip
        if isinstance(outcome, Refused):
            turn.hand_on(*(_known(d) for d in outcome.taken))
            raise outcome.error
        if isinstance(outcome, Retried):
            outcome = await self.get_test_drive(outcome.drive_id, caller=caller)
        turn.hand_on(_known(outcome, asked.req))
        return outcome

    async def _change(
        self,
        drive_id: str,
        etag: str,
        caller: Caller,
        step: Callable[[UnitOfWork, TestDrive, dt.datetime], object],
    ) -> TestDrive:
        now = self.clock()

        async def work(uow: UnitOfWork) -> None:
            drive = await store.get(uow.conn, drive_id, lock=True)
            if drive is None or not vis.may_change(caller, drive.dealer_id):
                raise not_found(TEST_DRIVE_NOT_FOUND, "test drive", drive_id)
            rules.check_etag(drive, etag)
            after = await step(uow, drive, now)  # type: ignore[misc]
            await store.update(uow.conn, after)

        await self.write(work)
        return await self.get_test_drive(drive_id, caller=caller)

    async def reschedule_test_drive(
        self, drive_id: str, start: dt.datetime, etag: str, *, caller: Caller
    ) -> TestDrive:
        """RescheduleTestDrive: the same car and consultant, another free slot."""

        async def step(uow: UnitOfWork, drive: TestDrive, now: dt.datetime) -> TestDrive:
            begin, end = await self._slot(uow.conn, drive.dealer_id, start, now)
            after = rules.reschedule(drive, begin, end, now)
            await store.release(uow.conn, drive.id)
            await self._hold(uow, after)
            return after

        return await self._change(drive_id, etag, caller, step)

    async def cancel_test_drive(self, drive_id: str, etag: str, *, caller: Caller) -> TestDrive:
        """CancelTestDrive: the slot is free again."""

        async def step(uow: UnitOfWork, drive: TestDrive, now: dt.datetime) -> TestDrive:
            after = rules.cancel(drive, now)
            await store.release(uow.conn, drive.id)
            return after

        return await self._change(drive_id, etag, caller, step)

    async def complete_test_drive(
        self, drive_id: str, feedback: str, rating: int, etag: str, *, caller: Caller
    ) -> TestDrive:
        """CompleteTestDrive: driven, with the customer's feedback."""

        async def step(uow: UnitOfWork, drive: TestDrive, now: dt.datetime) -> TestDrive:
            after = rules.complete(drive, feedback, rating, now)
            await store.release(uow.conn, drive.id)  # finished early: the rest is free
            return after

        return await self._change(drive_id, etag, caller, step)

    async def get_test_drive(self, drive_id: str, *, caller: Caller) -> TestDrive:
        """GetTestDrive: another dealer's is NOT_FOUND."""
        async with self.db.engine.connect() as conn:
            drive = await store.get(conn, drive_id)
        if drive is None or not vis.may_see(caller, drive.dealer_id):
            raise not_found(TEST_DRIVE_NOT_FOUND, "test drive", drive_id)
        return drive

    async def list_test_drives(
        self,
        dealer_id: str,
        start: dt.datetime,
        end: dt.datetime,
        state: DriveState | None,
        *,
        caller: Caller,
    ) -> list[TestDrive]:
        """ListTestDrives: a dealer's, in a window of at most 31 days."""
        dealer = vis.dealer_for(caller, dealer_id, "dealer_id")
        rules.check_window(start, end, MAX_WINDOW)
        async with self.db.engine.connect() as conn:
            return await store.in_window(conn, dealer, start, end, state)

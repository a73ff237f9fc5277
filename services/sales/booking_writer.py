"""BookTestDrive, group-committed: the bookings that reach the database at once (the first
in line for each slot at the gate, slot_gate.py) share one transaction.

One transaction per booking cost each winner a dozen statements, several hand-overs to the
SQLite thread apiece, and on SQLite a place in the one writer's queue: ten winners at once
queued ~6 ms each behind each other. Here a batch (mesh/batch_writer.py) reads what all its
bookings need, a query per table: the request ids seen, the opportunities (locked on
PostgreSQL), the cars, the dealers' hours and the drives holding any of the quarter hours
asked; decides each booking in arrival order with the rules of a booking alone (a retried
request gets its drive, NOT_FOUND for another dealer's opportunity or car, the slot in the
dealer's hours, CAR_TAKEN / CONSULTANT_TAKEN against the holders and the bookings before it
in the batch); and writes the drives, their slot claims, the opportunities moved to
TEST_DRIVE with their events and the request ids, a statement per table. The slot claims'
key stays the guarantee across processes: a batch that loses a claim to another replica
fails on it, runs again from its reads and refuses that booking.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.trace import SpanContext
from sqlalchemy.ext.asyncio import AsyncConnection

from mesh.batch_writer import BatchWriter
from mesh.errors import DomainError
from mesh.idempotency import Request
from mesh.identity import Caller
from services.sales import events, metrics
from services.sales.domain import opportunity as opportunity_rules
from services.sales.domain import testdrive as rules
from services.sales.domain import visibility as vis
from services.sales.domain.errors import OPPORTUNITY_NOT_FOUND, TEST_DRIVE_CAR_NOT_FOUND, not_found
from services.sales.domain.opportunity import Opportunity, Stage
from services.sales.domain.testdrive import DriveState, TestDrive
from services.sales.store import order_batch
from services.sales.store import testdrives as store
from services.sales.store.hours_codec import hours_of
from services.sales.store.tables import OUTBOX

BOOK = "BookTestDrive"


@dataclass(frozen=True, slots=True)
class NewBooking:
    """A BookTestDrive waiting for the writer; `drive_id` is the id it would create and
    `keys` the quarter hours it asks (rules.asked_keys)."""

    opp_id: str
    vin: str
    consultant_id: str
    start: dt.datetime
    req: Request
    caller: Caller
    drive_id: str
    now: dt.datetime
    keys: tuple[str, ...]
    context: SpanContext


@dataclass(frozen=True, slots=True)
class Retried:
    """The request id was seen: the first call's drive (read after the commit)."""

    drive_id: str


@dataclass(frozen=True, slots=True)
class Refused:
    """The slot is taken: the refusal, and the drives holding it (for the gate)."""

    error: DomainError
    taken: tuple[TestDrive, ...]


Outcome = TestDrive | Retried | Refused


@dataclass(slots=True)
class _Batch:
    claimed: order_batch.Claimed
    opps: dict[str, Opportunity]
    cars: dict[str, tuple[str, bool]]
    hours: dict[str, tuple[str, str]]
    holders: list[TestDrive]
    request_id_rows: list[dict[str, Any]] = field(default_factory=list)
    drives: list[TestDrive] = field(default_factory=list)
    claims: list[tuple[str, str]] = field(default_factory=list)
    changed_opps: dict[str, Opportunity] = field(default_factory=dict)
    outbox_rows: list[dict[str, Any]] = field(default_factory=list)


class BookingWriter(BatchWriter[NewBooking, Outcome, _Batch]):
    """The group-committed writer of BookTestDrive."""

    name = "sales-booking-writer"

    def __init__(self, db: Any, minutes: int, default_time_zone: str) -> None:
        super().__init__(db)
        self.minutes = minutes
        self.default_zone = default_time_zone
        zoneinfo.ZoneInfo(default_time_zone)  # a bad zone fails at start, not per call

    async def decide(
        self, conn: AsyncConnection, items: Sequence[NewBooking]
    ) -> tuple[_Batch, list[Outcome | BaseException]]:
        """Read what the batch needs, then decide each booking in order."""
        keys = {(i.req.scope, i.req.request_id) for i in items if i.req.request_id}
        opps = await order_batch.opportunities_by_id(conn, {i.opp_id for i in items})
        batch = _Batch(
            claimed=await order_batch.claimed(conn, BOOK, keys),
            opps=opps,
            cars=await store.cars_by_vin(conn, sorted({i.vin for i in items})),
            hours=await store.hours_by_dealer(conn, sorted({o.dealer_id for o in opps.values()})),
            holders=await store.holders(conn, sorted({k for i in items for k in i.keys})),
        )
        outcomes: list[Outcome | BaseException] = []
        for item in items:
            try:
                outcomes.append(self._book(batch, item))
            except DomainError as e:
                outcomes.append(e)
        return batch, outcomes

    async def write(self, conn: AsyncConnection, batch: _Batch) -> None:
        await store.insert_many(conn, batch.drives, batch.claims)
        await order_batch.write(
            conn,
            request_id_rows=batch.request_id_rows,
            new_orders=(),
            changed_orders=(),
            changed_opportunities=list(batch.changed_opps.values()),
        )
        await OUTBOX.write(conn, batch.outbox_rows)

    def committed(self, state: _Batch) -> None:
        for _ in state.drives:
            metrics.TEST_DRIVES_BOOKED.inc()
        if state.outbox_rows:
            OUTBOX.notify()

    def _book(self, batch: _Batch, item: NewBooking) -> Outcome:
        """One booking on the batch's state (as a booking's own transaction would do it)."""
        req = item.req
        key = (req.scope, req.request_id)
        first = req.replayed_in(batch.claimed)
        if first is not None:
            return Retried(first)
        opp = batch.opps.get(item.opp_id)
        if opp is None or not vis.may_change(item.caller, opp.dealer_id):
            raise not_found(OPPORTUNITY_NOT_FOUND, "opportunity", item.opp_id)
        car = batch.cars.get(item.vin)
        if car is None or car[0] != opp.dealer_id or not car[1]:
            raise not_found(TEST_DRIVE_CAR_NOT_FOUND, "test-drive car", item.vin)
        found = batch.hours.get(opp.dealer_id)
        hours = rules.default_hours(self.default_zone) if found is None else hours_of(*found)
        begin, end = rules.slot(item.start, self.minutes, hours, item.now)
        drive = rules.book(id_=item.drive_id, dealer_id=opp.dealer_id, opportunity_id=opp.id,
                           vin=item.vin, consultant_id=item.consultant_id, start=begin, end=end,
                           now=item.now)  # fmt: skip
        taken = tuple(d for d in batch.holders if _clashes(d, drive))
        if taken:
            try:
                rules.conflicts(drive.start, drive.end, drive.vin, drive.consultant_id, taken)
            except DomainError as e:
                return Refused(e, taken)
        # Decided: from here on the booking only adds to the batch.
        batch.holders.append(drive)
        batch.drives.append(drive)
        slots = rules.slot_keys(drive.vin, drive.consultant_id, drive.start, drive.end)
        batch.claims += [(s, drive.id) for s in slots]
        if req.request_id:
            batch.claimed[key] = (req.fingerprint, drive.id)
            batch.request_id_rows.append(
                {"scope": req.scope, "method": BOOK, "request_id": req.request_id,
                 "fingerprint": req.fingerprint, "result": drive.id, "create_time": item.now}
            )  # fmt: skip
        after = opportunity_rules.advance(opp, Stage.TEST_DRIVE, item.now)
        if after != opp:
            batch.opps[opp.id] = batch.changed_opps[opp.id] = after
            if after.stage is not opp.stage:
                event = events.stage_changed(opp, after)
                batch.outbox_rows.append(OUTBOX.row(event, subject=opp.id, context=item.context))
        return drive


def _clashes(held: TestDrive, drive: TestDrive) -> bool:
    """Whether a booked drive holds the car or the consultant of `drive` at its time."""
    return (
        held.id != drive.id
        and held.state is DriveState.BOOKED
        and rules.overlap(held.start, held.end, drive.start, drive.end)
        and (held.vin == drive.vin or held.consultant_id == drive.consultant_id)
    )

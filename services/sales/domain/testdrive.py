"""Test drives: a dealer's cars and opening hours, slots, conflicts, and the booking's life
(BOOKED → COMPLETED, CANCELLED or NO_SHOW; a booked drive may move to another slot).

Times are absolute (aware datetimes, kept in UTC); a dealer's opening hours are wall-clock
times in its own time zone, so "09:00 in Shanghai" is 01:00 UTC and a daylight-saving
dealer keeps its local hours across the switch. A slot starts on a quarter hour and lies
within one local day's hours. Intervals are half-open [start, end): a drive ending at 10:00
and one starting at 10:00 do not overlap.

Concurrency is the store's: `slot_keys` names the quarter hours a booking holds for its car
and its consultant; the store inserts them under a UNIQUE key, so of two bookings that share
a quarter hour only one commits, on either back end, and the other is refused by `conflicts`
when it runs again.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, time, timedelta
from enum import StrEnum
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from mesh import vin as vins
from services.sales.domain import etags
from services.sales.domain.errors import (
    CAR_TAKEN,
    CONSULTANT_TAKEN,
    OUTSIDE_OPENING_HOURS,
    SLOT_IN_PAST,
    illegal_transition,
    invalid,
    refused,
)

DEFAULT_TIME_ZONE = "Asia/Shanghai"
SLOT_MINUTES = 60  # the default length of a drive (SalesConfig.test_drive_minutes)
GRANULARITY_MINUTES = 15  # slots start on a quarter hour; claims are quarter hours
FEEDBACK_MAX = 1000
RATING_MAX = 5
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
Hours = tuple[time, time] | None  # (open, close) local, or closed all day
NINE_TO_SIX: Hours = (time(9), time(18))


@lru_cache(maxsize=256)
def zone(name: str) -> ZoneInfo:
    """The IANA time zone `name` (ZoneInfoNotFoundError, a KeyError, if unknown)."""
    return ZoneInfo(name)


@dataclass(frozen=True, slots=True)
class OpeningHours:
    """A dealer's showroom hours: per weekday (0 = Monday ... 6 = Sunday) an (open, close)
    pair of local wall-clock times or None (closed), in the dealer's time zone."""

    time_zone: str = DEFAULT_TIME_ZONE
    days: tuple[Hours, ...] = field(default=(NINE_TO_SIX,) * 7)

    def __post_init__(self) -> None:
        # Invariants only (a request is checked by `opening_hours`, which names its fields).
        zone(self.time_zone)
        if len(self.days) != 7:
            raise ValueError(f"7 weekdays expected, got {len(self.days)}")
        for hours in self.days:
            if hours is not None and not hours[0] < hours[1]:
                raise ValueError(f"opening {hours[0]} must be before closing {hours[1]}")

    def on(self, weekday: int) -> Hours:
        """The hours of weekday 0 (Monday) ... 6 (Sunday)."""
        return self.days[weekday]


def default_hours(time_zone: str = DEFAULT_TIME_ZONE) -> OpeningHours:
    """Monday to Sunday 09:00-18:00: a dealer that set no hours."""
    return OpeningHours(time_zone=time_zone)


def opening_hours(time_zone: str, days: Sequence[tuple[int, time, time]]) -> OpeningHours:
    """The hours of a SetOpeningHours request: `days` are (ISO weekday 1-7, open, close),
    a weekday not listed is closed; an empty zone is Asia/Shanghai. INVALID_ARGUMENT names
    the field (`time_zone`, `days[2].close`)."""
    name = time_zone.strip() or DEFAULT_TIME_ZONE
    try:
        zone(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise invalid("time_zone", f"{name!r} is not an IANA time zone") from None
    week: list[Hours] = [None] * 7
    for i, (weekday, open_, close) in enumerate(days):
        if not 1 <= weekday <= 7:
            raise invalid(f"days[{i}].weekday", "must be 1 (Monday) to 7 (Sunday)")
        if week[weekday - 1] is not None:
            raise invalid(f"days[{i}].weekday", f"{WEEKDAYS[weekday - 1]} is listed twice")
        if not open_ < close:
            raise invalid(f"days[{i}].close", f"must be after the opening {open_:%H:%M}")
        week[weekday - 1] = (open_, close)
    return OpeningHours(time_zone=name, days=tuple(week))


@dataclass(frozen=True, slots=True, kw_only=True)
class TestDriveCar:
    """A car a dealer keeps for test drives (bookable while active)."""

    vin: str
    dealer_id: str
    model_code: str
    trim_code: str = ""
    active: bool


def new_car(
    vin: str, dealer_id: str, model_code: str, active: bool, trim_code: str = ""
) -> TestDriveCar:
    """A test-drive car from a request: the VIN checked (field `car.vin`), codes trimmed."""
    model = model_code.strip()
    if not model:
        raise invalid("car.model_code", "must not be blank")
    return TestDriveCar(
        vin=vins.normalize("car.vin", vin),
        dealer_id=dealer_id,
        model_code=model,
        trim_code=trim_code.strip(),
        active=active,
    )


class DriveState(StrEnum):
    """Where a test drive stands; all but BOOKED are final."""

    BOOKED = "BOOKED"
    COMPLETED = "COMPLETED"
    CANCELLED = "CANCELLED"
    NO_SHOW = "NO_SHOW"


@dataclass(frozen=True, slots=True)
class TestDrive:
    """One booked drive of one car with one consultant, [start, end) in UTC."""

    id: str
    dealer_id: str
    opportunity_id: str
    vin: str
    consultant_id: str
    start: datetime
    end: datetime
    state: DriveState
    feedback: str
    rating: int  # 1-5, 0 = none given
    version: int
    create_time: datetime
    update_time: datetime


def etag(drive: TestDrive) -> str:
    """The drive's etag (it changes with every change)."""
    return etags.of(drive.id, drive.version)


def check_etag(drive: TestDrive, etag_: str) -> None:
    """ABORTED unless `etag_` is the drive's (an empty one is unconditional)."""
    etags.check("test drive", drive.id, drive.version, etag_)


def _utc(field_: str, at: datetime) -> datetime:
    if at.utcoffset() is None:
        raise invalid(field_, "must carry a time zone")
    return at.astimezone(UTC)


def slot(
    start: datetime, minutes: int, hours: OpeningHours, now: datetime
) -> tuple[datetime, datetime]:
    """[start, end) in UTC of a drive of `minutes` asked to start at `start`: on a quarter
    hour, in the future (SLOT_IN_PAST) and within the opening hours of that local day in the
    dealer's time zone (OUTSIDE_OPENING_HOURS, naming the local hours)."""
    if minutes <= 0 or minutes % GRANULARITY_MINUTES:
        raise ValueError(f"a drive lasts a positive multiple of {GRANULARITY_MINUTES} minutes")
    begin = _utc("start_time", start)
    if begin.minute % GRANULARITY_MINUTES or begin.second or begin.microsecond:
        raise invalid("start_time", f"must be on a quarter hour (:00, :15, :30, :45), got {start}")
    end = begin + timedelta(minutes=minutes)
    if begin <= now:
        raise refused(SLOT_IN_PAST, f"{begin:%Y-%m-%d %H:%M} UTC is not in the future")
    tz = zone(hours.time_zone)
    local = begin.astimezone(tz)
    day, name = local.date(), WEEKDAYS[local.weekday()]
    today = hours.on(local.weekday())
    where = {"time_zone": hours.time_zone, "local_start": f"{local:%Y-%m-%dT%H:%M}"}
    if today is None:
        raise refused(
            OUTSIDE_OPENING_HOURS,
            f"the dealer is closed on {name}s ({day}, {hours.time_zone})",
            **where,
        )
    opens = datetime.combine(day, today[0], tzinfo=tz)
    closes = datetime.combine(day, today[1], tzinfo=tz)
    if not opens <= begin < end <= closes:
        raise refused(
            OUTSIDE_OPENING_HOURS,
            f"{local:%H:%M}-{end.astimezone(tz):%H:%M} is outside the opening hours of "
            f"{name} {day}: {today[0]:%H:%M}-{today[1]:%H:%M} {hours.time_zone}",
            **where,
            opens=f"{today[0]:%H:%M}",
            closes=f"{today[1]:%H:%M}",
        )
    return begin, end


def overlap(a_start: datetime, a_end: datetime, b_start: datetime, b_end: datetime) -> bool:
    """Whether half-open [a_start, a_end) and [b_start, b_end) share an instant."""
    return a_start < b_end and b_start < a_end


def conflicts(
    candidate_start: datetime,
    candidate_end: datetime,
    vin: str,
    consultant_id: str,
    existing: Iterable[TestDrive],
) -> None:
    """Refuse the candidate if a BOOKED drive overlapping it has the same car (CAR_TAKEN,
    checked first) or the same consultant (CONSULTANT_TAKEN)."""
    booked = [
        d
        for d in existing
        if d.state is DriveState.BOOKED and overlap(candidate_start, candidate_end, d.start, d.end)
    ]
    for d in booked:
        if d.vin == vin:
            raise refused(CAR_TAKEN, f"car {vin} is booked {_span(d)}", vin=vin, **_times(d))
    for d in booked:
        if consultant_id and d.consultant_id == consultant_id:
            raise refused(
                CONSULTANT_TAKEN,
                f"consultant {consultant_id} has a test drive {_span(d)}",
                consultant_id=consultant_id,
                **_times(d),
            )


def _span(d: TestDrive) -> str:
    return f"{d.start.astimezone(UTC):%Y-%m-%d %H:%M}-{d.end.astimezone(UTC):%H:%M} UTC"


def _times(d: TestDrive) -> dict[str, str]:
    return {"start_time": d.start.isoformat(), "end_time": d.end.isoformat()}


def slot_keys(
    vin: str,
    consultant_id: str,
    start: datetime,
    end: datetime,
    granularity_minutes: int = GRANULARITY_MINUTES,
) -> list[str]:
    """The cells a booking of [start, end) holds, sorted: `car|<vin>|2026-12-03T02:15` and
    `consultant|<id>|...` for each `granularity_minutes` cell (UTC, minute precision).

    Two bookings share a key exactly when they overlap and have the car or the consultant
    in common, so a UNIQUE key over the cells leaves one winner. Exact only for aligned
    intervals, hence ValueError for others (`slot` only makes aligned ones). No consultant
    (empty id) holds no consultant cells. Sorted, so concurrent inserts take the keys in
    one order (fewer deadlocks on PostgreSQL)."""
    if granularity_minutes <= 0 or 1440 % granularity_minutes:
        raise ValueError("the granularity must divide a day")
    cell = timedelta(minutes=granularity_minutes)
    begin, finish = _utc("start_time", start), _utc("end_time", end)
    epoch = datetime(2000, 1, 1, tzinfo=UTC)
    if (begin - epoch) % cell or (finish - epoch) % cell:
        raise ValueError(f"[{start}, {end}) is not aligned on {granularity_minutes} minutes")
    cells: list[str] = []
    at = begin
    while at < finish:
        cells.append(f"{at:%Y-%m-%dT%H:%M}")
        at += cell
    owners = [f"car|{vin}"] + ([f"consultant|{consultant_id}"] if consultant_id else [])
    return sorted(f"{owner}|{c}" for owner in owners for c in cells)


def asked_keys(vin: str, consultant_id: str, start: datetime, minutes: int) -> list[str]:
    """The keys a booking asked at `start` would hold (`slot` makes [start, start +
    minutes)), known before the dealer's hours are read; [] when `start` is no aware quarter
    hour (then `slot` refuses it)."""
    if start.utcoffset() is None or minutes <= 0 or minutes % GRANULARITY_MINUTES:
        return []
    begin = start.astimezone(UTC)
    if begin.minute % GRANULARITY_MINUTES or begin.second or begin.microsecond:
        return []
    return slot_keys(vin, consultant_id, begin, begin + timedelta(minutes=minutes))


def check_window(start: datetime, end: datetime, max_window: timedelta) -> None:
    """A listing's window [start, end): both aware, start before end, at most `max_window`
    long (INVALID_ARGUMENT on `start_time_to`)."""
    begin, finish = _utc("start_time_from", start), _utc("start_time_to", end)
    if not begin < finish:
        raise invalid("start_time_to", "must be after start_time_from")
    if finish - begin > max_window:
        raise invalid("start_time_to", f"the window is at most {max_window.days} days")


def book(
    *,
    id_: str,
    dealer_id: str,
    opportunity_id: str,
    vin: str,
    consultant_id: str,
    start: datetime,
    end: datetime,
    now: datetime,
) -> TestDrive:
    """A new BOOKED drive of a slot `slot` made (conflicts are the caller's, with the store)."""
    if not consultant_id.strip():
        raise invalid("consultant_id", "a test drive needs a consultant")
    if not start < end:
        raise ValueError("a drive ends after it starts")
    return TestDrive(
        id=id_,
        dealer_id=dealer_id,
        opportunity_id=opportunity_id,
        vin=vins.normalize("vin", vin),
        consultant_id=consultant_id.strip(),
        start=start.astimezone(UTC),
        end=end.astimezone(UTC),
        state=DriveState.BOOKED,
        feedback="",
        rating=0,
        version=1,
        create_time=now,
        update_time=now,
    )


def _step(drive: TestDrive, step: str, now: datetime, **changes: Any) -> TestDrive:
    """A step only a BOOKED drive takes; one version on, stamped `now`."""
    if drive.state is not DriveState.BOOKED:
        raise illegal_transition("test drive", drive.state.value, step)
    return replace(drive, **changes, version=drive.version + 1, update_time=now)


def reschedule(
    drive: TestDrive, new_start: datetime, new_end: datetime, now: datetime
) -> TestDrive:
    """The same car and consultant at another slot (`slot` made it; the caller checks the
    conflicts of the new one, this drive excluded)."""
    if not new_start < new_end:
        raise ValueError("a drive ends after it starts")
    return _step(
        drive, "reschedule", now, start=new_start.astimezone(UTC), end=new_end.astimezone(UTC)
    )


def cancel(drive: TestDrive, now: datetime) -> TestDrive:
    """Called off before it took place; its slot is free again."""
    return _step(drive, "cancel", now, state=DriveState.CANCELLED)


def complete(drive: TestDrive, feedback: str, rating: int, now: datetime) -> TestDrive:
    """Driven, with the customer's feedback and rating (1-5; 0 = none given)."""
    text = feedback.strip()
    if len(text) > FEEDBACK_MAX:
        raise invalid("feedback", f"must be at most {FEEDBACK_MAX} characters")
    if not 0 <= rating <= RATING_MAX:
        raise invalid("rating", f"must be 0 (none) to {RATING_MAX}")
    return _step(drive, "complete", now, state=DriveState.COMPLETED, feedback=text, rating=rating)


def no_show(drive: TestDrive, now: datetime) -> TestDrive:
    """The customer did not come: only once the slot has begun."""
    if drive.state is DriveState.BOOKED and now < drive.start:
        raise illegal_transition("test drive", drive.state.value, "no-show before the start")
    return _step(drive, "no-show", now, state=DriveState.NO_SHOW)

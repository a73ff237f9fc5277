"""Test-drive rules on plain data: slots in the dealer's time zone, opening hours, conflicts,
the booking's life and the slot keys the store makes unique."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mesh.errors import FailedPrecondition, InvalidArgument
from services.sales.domain import testdrive as td
from services.sales.domain.testdrive import DriveState, OpeningHours

SH = ZoneInfo("Asia/Shanghai")
NOW = datetime(2026, 12, 1, 0, 0, tzinfo=UTC)  # Tuesday 08:00 in Shanghai
VIN = "LZ91AE3A4J3LSA560"
VIN2 = "137ZA903X1E412677"
HOURS = td.default_hours()


def at(day: int, hour: int, minute: int = 0, tz: ZoneInfo = SH) -> datetime:
    return datetime(2026, 12, day, hour, minute, tzinfo=tz)


def drive(start: datetime, minutes: int = 60, **kw: object) -> td.TestDrive:
    args: dict[str, object] = {
        "id_": "td1",
        "dealer_id": "D1",
        "opportunity_id": "opp1",
        "vin": VIN,
        "consultant_id": "u7",
        "start": start,
        "end": start + timedelta(minutes=minutes),
        "now": NOW,
    }
    args.update(kw)
    return td.book(**args)  # type: ignore[arg-type]


def _reason(reason: str) -> pytest.RaisesExc[FailedPrecondition]:
    return pytest.raises(FailedPrecondition, check=lambda e: e.reason == reason)


# Slots and opening hours


def test_nine_in_shanghai_is_one_utc() -> None:
    begin, end = td.slot(at(3, 9), 60, HOURS, NOW)
    assert begin == datetime(2026, 12, 3, 1, 0, tzinfo=UTC) and begin.tzinfo is UTC
    assert end == datetime(2026, 12, 3, 2, 0, tzinfo=UTC)


def test_the_asked_zone_does_not_matter_only_the_instant() -> None:
    utc_start = datetime(2026, 12, 3, 1, 0, tzinfo=UTC)
    assert td.slot(utc_start, 60, HOURS, NOW) == td.slot(at(3, 9), 60, HOURS, NOW)


@pytest.mark.parametrize(
    ("start", "minutes"),
    [(at(3, 9), 60), (at(3, 17), 60), (at(3, 17, 45), 15), (at(3, 9), 540)],
)
def test_boundaries_inside(start: datetime, minutes: int) -> None:
    assert td.slot(start, minutes, HOURS, NOW)[0] == start


@pytest.mark.parametrize(
    ("start", "minutes"),
    [(at(3, 8, 45), 60), (at(3, 17, 15), 60), (at(3, 18), 15), (at(3, 9), 555)],
)
def test_boundaries_outside_name_the_local_hours(start: datetime, minutes: int) -> None:
    with _reason("OUTSIDE_OPENING_HOURS") as caught:
        td.slot(start, minutes, HOURS, NOW)
    assert "09:00-18:00 Asia/Shanghai" in caught.value.message
    assert caught.value.metadata["opens"] == "09:00"


def test_closed_day() -> None:
    hours = replace(HOURS, days=(*HOURS.days[:6], None))  # closed on Sundays
    with _reason("OUTSIDE_OPENING_HOURS") as caught:
        td.slot(at(6, 10), 60, hours, NOW)  # 2026-12-06 is a Sunday
    assert "closed on Sundays" in caught.value.message
    assert td.slot(at(5, 10), 60, hours, NOW)  # Saturday is open


def test_local_day_not_utc_day() -> None:
    # Monday 01:00 Shanghai is Sunday 17:00 UTC: Monday's hours apply, not Sunday's (closed).
    hours = td.opening_hours("Asia/Shanghai", [(1, time(0, 30), time(12))])
    start = datetime(2026, 12, 6, 17, 0, tzinfo=UTC)
    assert td.slot(start, 60, hours, NOW)[0] == start


def test_another_time_zone_and_daylight_saving() -> None:
    hours = td.opening_hours("Europe/Berlin", [(d, time(9), time(18)) for d in range(1, 8)])
    winter = datetime(2026, 12, 3, 8, 0, tzinfo=UTC)  # 09:00 CET
    summer = datetime(2026, 7, 2, 7, 0, tzinfo=UTC)  # 09:00 CEST
    now = datetime(2026, 6, 1, tzinfo=UTC)
    assert td.slot(winter, 60, hours, now)[0] == winter
    assert td.slot(summer, 60, hours, now)[0] == summer
    with _reason("OUTSIDE_OPENING_HOURS"):
        td.slot(summer - timedelta(minutes=15), 60, hours, now)


@pytest.mark.parametrize("start", [at(3, 9, 10), at(3, 9, 0) + timedelta(seconds=30)])
def test_quarter_hours_only(start: datetime) -> None:
    with pytest.raises(InvalidArgument, match="quarter hour"):
        td.slot(start, 60, HOURS, NOW)


def test_naive_start_is_invalid() -> None:
    with pytest.raises(InvalidArgument, match="time zone"):
        td.slot(datetime(2026, 12, 3, 9), 60, HOURS, NOW)


@pytest.mark.parametrize("start", [NOW, NOW - timedelta(days=1)])
def test_past_slot(start: datetime) -> None:
    with _reason("SLOT_IN_PAST"):
        td.slot(start, 60, td.OpeningHours(days=((time(0), time(23)),) * 7), NOW)


def test_slot_length_is_a_multiple_of_a_quarter() -> None:
    with pytest.raises(ValueError):
        td.slot(at(3, 9), 50, HOURS, NOW)


def test_opening_hours_from_a_request() -> None:
    hours = td.opening_hours("", [(1, time(9), time(17)), (6, time(10), time(16))])
    assert hours.time_zone == "Asia/Shanghai"
    assert hours.on(0) == (time(9), time(17)) and hours.on(5) == (time(10), time(16))
    assert hours.on(1) is None and hours.on(6) is None


@pytest.mark.parametrize(
    ("zone", "days", "field"),
    [
        ("Mars/Olympus", [], "time_zone"),
        ("", [(8, time(9), time(10))], "days[0].weekday"),
        ("", [(1, time(9), time(10)), (1, time(11), time(12))], "days[1].weekday"),
        ("", [(2, time(18), time(9))], "days[0].close"),
        ("", [(2, time(9), time(9))], "days[0].close"),
    ],
)
def test_bad_opening_hours(zone: str, days: list[tuple[int, time, time]], field: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        td.opening_hours(zone, days)
    assert caught.value.field_violations[0].field == field


def test_opening_hours_invariants() -> None:
    assert OpeningHours().days == ((time(9), time(18)),) * 7
    with pytest.raises(ValueError):
        OpeningHours(days=((time(9), time(18)),) * 6)
    with pytest.raises(KeyError):
        OpeningHours(time_zone="Nowhere/Land")


# Conflicts


def test_half_open_intervals_do_not_touch() -> None:
    nine = drive(at(3, 9))
    td.conflicts(at(3, 10), at(3, 11), VIN, "u7", [nine])
    td.conflicts(at(3, 8), at(3, 9), VIN, "u7", [nine])


def test_car_taken_before_consultant() -> None:
    nine = drive(at(3, 9))
    with _reason("CAR_TAKEN") as caught:
        td.conflicts(at(3, 9, 30), at(3, 10, 30), VIN, "u7", [nine])
    assert caught.value.metadata["vin"] == VIN
    with _reason("CONSULTANT_TAKEN") as other_car:
        td.conflicts(at(3, 9, 30), at(3, 10, 30), VIN2, "u7", [nine])
    assert other_car.value.metadata["consultant_id"] == "u7"
    td.conflicts(at(3, 9, 30), at(3, 10, 30), VIN2, "u8", [nine])


def test_only_booked_drives_conflict() -> None:
    nine = drive(at(3, 9))
    for gone in (td.cancel(nine, NOW), td.complete(nine, "", 0, NOW)):
        td.conflicts(at(3, 9), at(3, 10), VIN, "u7", [gone])


# The booking's life


def test_book() -> None:
    d = drive(at(3, 9), vin=VIN.lower(), consultant_id=" u7 ")
    assert (d.state, d.version, d.vin, d.consultant_id, d.rating) == (
        DriveState.BOOKED,
        1,
        VIN,
        "u7",
        0,
    )
    assert d.start.tzinfo is UTC and d.start == at(3, 9)


def test_book_needs_a_consultant_and_a_vin() -> None:
    with pytest.raises(InvalidArgument):
        drive(at(3, 9), consultant_id="  ")
    with pytest.raises(InvalidArgument):
        drive(at(3, 9), vin="1HGCM82633A123456")


def test_reschedule_cancel_complete() -> None:
    d = drive(at(3, 9))
    moved = td.reschedule(d, at(4, 14), at(4, 15), NOW + timedelta(minutes=1))
    assert (moved.start, moved.end, moved.version, moved.state) == (
        at(4, 14),
        at(4, 15),
        2,
        DriveState.BOOKED,
    )
    done = td.complete(moved, "  smooth ride ", 5, NOW)
    assert (done.state, done.feedback, done.rating, done.version) == (
        DriveState.COMPLETED,
        "smooth ride",
        5,
        3,
    )
    assert td.cancel(d, NOW).state is DriveState.CANCELLED


@pytest.mark.parametrize("rating", [-1, 6])
def test_rating_range(rating: int) -> None:
    with pytest.raises(InvalidArgument):
        td.complete(drive(at(3, 9)), "", rating, NOW)


STEPS = {
    "reschedule": lambda d: td.reschedule(d, at(4, 9), at(4, 10), NOW),
    "cancel": lambda d: td.cancel(d, NOW),
    "complete": lambda d: td.complete(d, "", 0, NOW),
    "no-show": lambda d: td.no_show(d, at(3, 9, 5)),
}


@pytest.mark.parametrize("state", [s for s in DriveState if s is not DriveState.BOOKED])
@pytest.mark.parametrize("step", sorted(STEPS))
def test_final_states_refuse_every_step(state: DriveState, step: str) -> None:
    final = replace(drive(at(3, 9)), state=state)
    with _reason("ILLEGAL_TRANSITION") as caught:
        STEPS[step](final)
    assert caught.value.metadata == {"current_state": state.value, "step": step}


def test_no_show_only_once_started() -> None:
    d = drive(at(3, 9))
    with _reason("ILLEGAL_TRANSITION"):
        td.no_show(d, at(3, 8, 59))
    assert td.no_show(d, at(3, 9)).state is DriveState.NO_SHOW


def test_etag() -> None:
    d = drive(at(3, 9))
    td.check_etag(d, "")
    td.check_etag(d, td.etag(d))
    moved = td.cancel(d, NOW)
    assert td.etag(moved) != td.etag(d)
    with pytest.raises(Exception, match="changed since it was read") as caught:
        td.check_etag(moved, td.etag(d))
    assert getattr(caught.value, "reason", "") == "ETAG_MISMATCH"


def test_new_car_and_window() -> None:
    car = td.new_car(VIN.lower(), "D1", " M5 ", True)
    assert (car.vin, car.model_code, car.trim_code, car.active) == (VIN, "M5", "", True)
    with pytest.raises(InvalidArgument):
        td.new_car(VIN, "D1", " ", True)
    td.check_window(NOW, NOW + timedelta(days=31), timedelta(days=31))
    for end in (NOW, NOW + timedelta(days=32)):
        with pytest.raises(InvalidArgument):
            td.check_window(NOW, end, timedelta(days=31))


# Slot keys


def test_slot_keys_exact() -> None:
    keys = td.slot_keys(VIN, "u7", at(3, 10, 15), at(3, 11, 0))
    assert keys == [
        f"car|{VIN}|2026-12-03T02:15",
        f"car|{VIN}|2026-12-03T02:30",
        f"car|{VIN}|2026-12-03T02:45",
        "consultant|u7|2026-12-03T02:15",
        "consultant|u7|2026-12-03T02:30",
        "consultant|u7|2026-12-03T02:45",
    ]
    assert all(len(k) <= 120 for k in td.slot_keys(VIN, "u" * 64, at(3, 9), at(3, 18)))


def test_slot_keys_other_granularity_and_no_consultant() -> None:
    assert td.slot_keys(VIN, "", at(3, 9), at(3, 11), granularity_minutes=60) == [
        f"car|{VIN}|2026-12-03T01:00",
        f"car|{VIN}|2026-12-03T02:00",
    ]


@pytest.mark.parametrize(
    ("start", "end", "granularity"),
    [(at(3, 9, 5), at(3, 10), 15), (at(3, 9), at(3, 9, 50), 15), (at(3, 9), at(3, 10), 7)],
)
def test_slot_keys_refuse_unaligned(start: datetime, end: datetime, granularity: int) -> None:
    with pytest.raises(ValueError):
        td.slot_keys(VIN, "u7", start, end, granularity)


quarters = st.integers(min_value=0, max_value=4 * 24 * 3)  # three days of quarter hours
lengths = st.integers(min_value=1, max_value=16)


def _interval(q: int, n: int) -> tuple[datetime, datetime]:
    start = NOW + timedelta(minutes=15 * q)
    return start, start + timedelta(minutes=15 * n)


@given(quarters, lengths, quarters, lengths, st.booleans(), st.booleans())
def test_slot_keys_clash_iff_overlap_and_shared(
    qa: int, na: int, qb: int, nb: int, same_car: bool, same_consultant: bool
) -> None:
    a, b = _interval(qa, na), _interval(qb, nb)
    keys_a = set(td.slot_keys(VIN, "u7", *a))
    keys_b = set(td.slot_keys(VIN if same_car else VIN2, "u7" if same_consultant else "u8", *b))
    shares = td.overlap(*a, *b) and (same_car or same_consultant)
    assert bool(keys_a & keys_b) is shares
    assert len(keys_a) == 2 * na  # one cell per quarter hour, for the car and the consultant

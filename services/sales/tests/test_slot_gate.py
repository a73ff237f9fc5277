"""The booking gate on plain asyncio: one holder of a quarter hour at a time, and what a
holder learnt handed on to the bookings that waited behind it (never to later ones)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from services.sales.domain import testdrive as td
from services.sales.slot_gate import Known, SlotGate

VIN1, VIN2 = "LZ91AE3A4J3LSA560", "137ZA903X1E412677"
START = datetime(2026, 12, 3, 2, 0, tzinfo=UTC)
NOW = datetime(2026, 12, 1, tzinfo=UTC)


def _known(vin: str, consultant: str) -> Known:
    end = START + timedelta(hours=1)
    drive = td.book(id_="td1", dealer_id="D1", opportunity_id="o1", vin=vin,
                    consultant_id=consultant, start=START, end=end, now=NOW)  # fmt: skip
    return Known(drive, frozenset(td.slot_keys(vin, consultant, START, end)), "req-1")


def _keys(vin: str, consultant: str) -> list[str]:
    return td.asked_keys(vin, consultant, START, 60)


async def test_bookings_that_waited_learn_what_the_first_found() -> None:
    gate, order, seen = SlotGate(), list[str](), dict[str, list[Known]]()
    release = asyncio.Event()

    async def first() -> None:
        async with gate.hold(_keys(VIN1, "c1")) as turn:
            order.append("first")
            assert turn.holders() == []
            await release.wait()
            turn.hand_on(_known(VIN1, "c1"))

    async def behind(name: str, consultant: str) -> None:
        async with gate.hold(_keys(VIN1, consultant)) as turn:
            order.append(name)
            seen[name] = turn.holders()

    tasks = [asyncio.create_task(first())]
    await asyncio.sleep(0)
    tasks += [asyncio.create_task(behind(f"b{i}", f"c{i + 2}")) for i in range(3)]
    await asyncio.sleep(0.01)
    assert order == ["first"]  # the others wait for the holder of the car's hour
    release.set()
    await asyncio.gather(*tasks)
    assert order[0] == "first" and sorted(order[1:]) == ["b0", "b1", "b2"]
    assert all([k.drive.vin for k in v] == [VIN1] for v in seen.values()), seen
    async with gate.hold(_keys(VIN1, "c9")) as later:  # the wave has passed: nothing kept
        assert later.holders() == []


async def test_other_quarter_hours_neither_wait_nor_learn() -> None:
    gate = SlotGate()
    release = asyncio.Event()

    async def first() -> None:
        async with gate.hold(_keys(VIN1, "c1")) as turn:
            await release.wait()
            turn.hand_on(_known(VIN1, "c1"))

    task = asyncio.create_task(first())
    await asyncio.sleep(0)
    async with gate.hold(_keys(VIN2, "c2")) as other:  # another car and consultant
        assert other.holders() == []
    release.set()
    await task


def test_a_start_off_the_quarter_hour_holds_nothing() -> None:
    assert td.asked_keys(VIN1, "c1", START + timedelta(minutes=7), 60) == []
    assert td.asked_keys(VIN1, "c1", START.replace(tzinfo=None), 60) == []
    assert td.asked_keys(VIN1, "", START, 30) == td.slot_keys(
        VIN1, "", START, START + timedelta(minutes=30)
    )

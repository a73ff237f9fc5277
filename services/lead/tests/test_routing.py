"""Routing invariants (property-based) and the order of preference."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mesh.errors import FailedPrecondition, NotFound
from services.lead.domain.demo_dealers import DEMO_DEALERS, demo_dealers
from services.lead.domain.model import Dealer, RoutingDecision
from services.lead.domain.routing import area_key, eligible, manual, route, walk_in

BRANDS = ["Marque", "Lumen", "Other"]
PLACES = [("Shanghai", "Shanghai"), ("Guangzhou", "Guangdong"), ("Shenzhen", "Guangdong")]


@st.composite
def dealers(draw: st.DrawFn) -> list[Dealer]:
    count = draw(st.integers(0, 12))
    out = []
    for i in range(count):
        city, province = draw(st.sampled_from(PLACES))
        out.append(
            Dealer(
                id=f"D{i:02d}",
                name=f"Dealer {i}",
                brands=tuple(draw(st.sets(st.sampled_from(BRANDS), min_size=1))),
                province=province,
                city=city,
                daily_capacity=draw(st.integers(0, 5)),
                active=draw(st.booleans()),
            )
        )
    return out


Situation = tuple[list[Dealer], dict[str, int], str, str, str, str | None]


@st.composite
def situations(draw: st.DrawFn) -> Situation:
    network = draw(dealers())
    loads = {d.id: draw(st.integers(0, 6)) for d in network}
    brand = draw(st.sampled_from(BRANDS))
    city, province = draw(st.sampled_from([*PLACES, ("Chengdu", "Sichuan"), ("", "")]))
    ids = [d.id for d in network] + ["D99"]
    preferred = draw(st.one_of(st.none(), st.sampled_from(ids)))
    return network, loads, brand, city, province, preferred


def decide(s: Situation) -> RoutingDecision:
    network, loads, brand, city, province, preferred = s
    return route(
        brand=brand,
        city=city,
        province=province,
        preferred_dealer_id=preferred,
        dealers=network,
        assigned_today=loads,
    )


@settings(deadline=None)
@given(situations())
def test_never_over_capacity_never_inactive_never_the_wrong_brand(s: Situation) -> None:
    network, loads, brand, *_ = s
    decision = decide(s)
    if decision.dealer_id is not None:
        chosen = next(d for d in network if d.id == decision.dealer_id)
        assert chosen.active
        assert chosen.sells(brand)
        assert loads.get(chosen.id, 0) < chosen.daily_capacity
    assert decision.reason


@settings(deadline=None)
@given(situations(), st.randoms(use_true_random=False))
def test_deterministic_whatever_the_order_of_dealers(s: Situation, rnd: random.Random) -> None:
    network, loads, brand, city, province, preferred = s
    shuffled = list(network)
    rnd.shuffle(shuffled)
    assert decide(s) == decide((shuffled, loads, brand, city, province, preferred))


@settings(deadline=None)
@given(situations())
def test_preferred_then_city_then_province_then_pool(s: Situation) -> None:
    network, loads, brand, city, province, preferred = s
    decision = decide(s)
    ok = [d for d in network if eligible(d, brand, loads)]
    by_id = {d.id: d for d in ok}
    if preferred in by_id:
        assert decision.dealer_id == preferred
        return
    in_city = [d for d in ok if city and d.city == city]
    in_province = [d for d in ok if province and d.province == province]
    if in_city:
        assert decision.dealer_id in {d.id for d in in_city}
        assert decision.reason.startswith(("city", "preferred"))
    elif in_province:
        assert decision.dealer_id in {d.id for d in in_province}
    else:
        assert decision.dealer_id is None
        assert "OEM pool" in decision.reason


@settings(deadline=None)
@given(dealers(), st.integers(1, 60))
def test_repeated_routing_fills_dealers_evenly_and_stops_at_capacity(
    network: list[Dealer], leads: int
) -> None:
    loads: dict[str, int] = {}
    for _ in range(leads):
        decision = route(
            brand="Marque",
            city="Shenzhen",
            province="Guangdong",
            preferred_dealer_id=None,
            dealers=network,
            assigned_today=loads,
        )
        if decision.dealer_id is None:
            break
        loads[decision.dealer_id] = loads.get(decision.dealer_id, 0) + 1
    capacity = {d.id: d.daily_capacity for d in network}
    assert all(n <= capacity[i] for i, n in loads.items())
    assert sum(loads.values()) <= sum(
        d.daily_capacity for d in network if d.active and d.sells("Marque")
    )


def shenzhen(i: int, capacity: int = 10) -> Dealer:
    return Dealer(f"D{i}", f"SZ {i}", ("Marque",), "Guangdong", "Shenzhen", capacity)


def test_equal_capacities_take_turns_in_id_order() -> None:
    network = [shenzhen(3), shenzhen(1), shenzhen(2)]
    loads: dict[str, int] = {}
    order = []
    for _ in range(6):
        decision = route(
            brand="Marque",
            city="Shenzhen",
            province="",
            preferred_dealer_id=None,
            dealers=network,
            assigned_today=loads,
        )
        assert decision.dealer_id is not None
        order.append(decision.dealer_id)
        loads[decision.dealer_id] = loads.get(decision.dealer_id, 0) + 1
    assert order == ["D1", "D2", "D3", "D1", "D2", "D3"]


def test_unequal_capacities_fill_at_the_same_pace() -> None:
    network = [shenzhen(1, 2), shenzhen(2, 4)]
    loads: dict[str, int] = {}
    for _ in range(6):
        decision = route(
            brand="Marque",
            city="Shenzhen",
            province="",
            preferred_dealer_id=None,
            dealers=network,
            assigned_today=loads,
        )
        assert decision.dealer_id is not None
        loads[decision.dealer_id] = loads.get(decision.dealer_id, 0) + 1
    assert loads == {"D1": 2, "D2": 4}


def demo(**kw: object) -> str | None:
    args: dict[str, object] = {
        "brand": "Marque",
        "city": "",
        "province": "",
        "preferred_dealer_id": None,
        "dealers": demo_dealers(),
        "assigned_today": {},
    }
    args.update(kw)
    return route(**args).dealer_id  # type: ignore[arg-type]


def test_demo_network_routes_by_city_province_and_brand() -> None:
    assert demo(city="上海市") == "D-SH-01"
    assert demo(city="Shanghai", brand="Lumen", assigned_today={"D-SH-01": 1}) == "D-SH-02"
    assert demo(city="Dongguan", province="广东省") == "D-GZ-01"
    assert demo(city="Shenzhen", brand="lumen") == "D-SZ-01"
    assert demo(city="Chengdu", province="Sichuan") == "D-CD-01"  # D-CD-02 is inactive
    assert demo(city="Chengdu", brand="Lumen") is None
    assert demo(city="Chengdu", province="Sichuan", assigned_today={"D-CD-01": 25}) is None


def test_preferred_dealer_wins_only_when_eligible_and_the_reason_says_why() -> None:
    assert demo(city="Beijing", preferred_dealer_id="D-SH-01") == "D-SH-01"
    decision = route(
        brand="Marque",
        city="Beijing",
        province="",
        preferred_dealer_id="D-CD-02",
        dealers=demo_dealers(),
        assigned_today={},
    )
    assert decision.dealer_id == "D-BJ-01"
    assert decision.reason.startswith("preferred dealer D-CD-02 inactive; city Beijing")
    assert demo(city="Shanghai", preferred_dealer_id="D-SH-02") == "D-SH-01"  # no Marque
    full = {"D-GZ-01": 30}
    assert demo(city="Shenzhen", preferred_dealer_id="D-GZ-01", assigned_today=full) == "D-SZ-01"


def test_manual_assignment_and_walk_in() -> None:
    by_id = {d.id: d for d in DEMO_DEALERS}
    ok = manual(by_id["D-SZ-01"], "D-SZ-01", "Lumen", " customer   moved ")
    assert ok.dealer_id == "D-SZ-01" and ok.reason == "assigned by hand: customer moved"
    with pytest.raises(NotFound):
        manual(None, "D-XX", "Marque", "x")
    with pytest.raises(FailedPrecondition):
        manual(by_id["D-CD-02"], "D-CD-02", "Marque", "x")
    with pytest.raises(FailedPrecondition):
        manual(by_id["D-GZ-01"], "D-GZ-01", "Lumen", "x")
    assert walk_in("D-BJ-02").dealer_id == "D-BJ-02"


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("上海", "Shanghai"),
        ("广东省", "Guangdong"),
        ("Xi'an", "西安市"),
        (" shenzhen  city", "深圳"),
    ],
)
def test_area_keys_meet(a: str, b: str) -> None:
    assert area_key(a) == area_key(b)


def test_demo_network_shape() -> None:
    assert len(DEMO_DEALERS) == 8
    assert len({d.id for d in DEMO_DEALERS}) == 8
    assert {d.province for d in DEMO_DEALERS} == {"Beijing", "Shanghai", "Guangdong", "Sichuan"}

"""Routing: which dealer gets a new lead, deterministically.

Order: the customer's preferred dealer (if active, selling the brand and below its daily
capacity); else the eligible dealers in the customer's city; else in the province; else
the OEM pool (dealer None), where OEM staff assign by hand (`AssignLead`).

Balancing is weighted round-robin without stored cursor state: among the eligible dealers
of an area the one with the lowest share of its capacity used today wins, ties broken by
fewer leads and then the lowest id. With equal capacities this visits the dealers in id
order, one lead each, exactly like a round-robin cursor; with unequal capacities each
dealer fills at the same pace. The only state is today's count per dealer, which the store
keeps anyway to enforce capacity, so the same inputs always give the same dealer and a
replay reproduces every decision. A dealer at capacity, inactive, or not selling the brand
is never chosen.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from fractions import Fraction
from functools import lru_cache

from mesh.errors import FailedPrecondition, NotFound
from services.lead.domain import errors
from services.lead.domain.model import Dealer, RoutingDecision, fold

# Common Chinese names of the places the platform serves, folded to pinyin, so "上海市"
# and "Shanghai" meet. Anything else is compared as written (trimmed, case-folded).
_ALIASES = {
    "北京": "beijing",
    "上海": "shanghai",
    "天津": "tianjin",
    "重庆": "chongqing",
    "广州": "guangzhou",
    "深圳": "shenzhen",
    "成都": "chengdu",
    "杭州": "hangzhou",
    "南京": "nanjing",
    "武汉": "wuhan",
    "西安": "xian",
    "苏州": "suzhou",
    "广东": "guangdong",
    "四川": "sichuan",
    "浙江": "zhejiang",
    "江苏": "jiangsu",
    "湖北": "hubei",
    "陕西": "shaanxi",
}
_SUFFIX = re.compile(r"(市|省|特别行政区|自治区|\s+(city|province|shi|sheng))$")


@lru_cache(maxsize=4096)
def area_key(name: str) -> str:
    """Comparison key of a city or province: folded, administrative suffix dropped,
    common Chinese names mapped to pinyin, apostrophes and spaces removed."""
    key = _SUFFIX.sub("", fold(name))
    key = _ALIASES.get(key, key)
    return re.sub(r"[\s'\u2019-]", "", key)


def has_capacity(dealer: Dealer, assigned_today: Mapping[str, int]) -> bool:
    """True if the dealer can take one more routed lead today."""
    return assigned_today.get(dealer.id, 0) < dealer.daily_capacity


def eligible(dealer: Dealer, brand: str, assigned_today: Mapping[str, int]) -> bool:
    """Active, selling the brand and below today's capacity."""
    return dealer.active and dealer.sells(brand) and has_capacity(dealer, assigned_today)


def _why_not(dealer: Dealer | None, brand: str, assigned_today: Mapping[str, int]) -> str:
    if dealer is None:
        return "unknown"
    if not dealer.active:
        return "inactive"
    if not dealer.sells(brand):
        return f"does not sell {brand}"
    return "at daily capacity"


def _balanced(dealers: list[Dealer], assigned_today: Mapping[str, int]) -> Dealer:
    """Lowest used share of capacity, then fewest leads, then lowest id."""

    def key(d: Dealer) -> tuple[Fraction, int, str]:
        load = assigned_today.get(d.id, 0)
        return Fraction(load, d.daily_capacity), load, d.id

    return min(dealers, key=key)


def route(
    *,
    brand: str,
    city: str,
    province: str,
    preferred_dealer_id: str | None,
    dealers: Iterable[Dealer],
    assigned_today: Mapping[str, int],
) -> RoutingDecision:
    """The dealer for a new lead, or the OEM pool, with the reason.

    `dealers` must include at least every dealer selling the brand (more is fine, order
    does not matter); `assigned_today` counts today's routed leads per dealer id (missing
    means 0).
    """
    by_id = {d.id: d for d in dealers}
    note = ""
    if preferred_dealer_id:
        preferred = by_id.get(preferred_dealer_id)
        if preferred is not None and eligible(preferred, brand, assigned_today):
            return RoutingDecision(preferred.id, f"preferred dealer {preferred.id}")
        why = _why_not(preferred, brand, assigned_today)
        note = f"preferred dealer {preferred_dealer_id} {why}; "
    pool = sorted(
        (d for d in by_id.values() if eligible(d, brand, assigned_today)), key=lambda d: d.id
    )
    for level, wanted, attr in (("city", city, "city"), ("province", province, "province")):
        if not wanted.strip():
            continue
        key = area_key(wanted)
        here = [d for d in pool if area_key(getattr(d, attr)) == key]
        if here:
            chosen = _balanced(here, assigned_today)
            load = assigned_today.get(chosen.id, 0)
            return RoutingDecision(
                chosen.id,
                f"{note}{level} {wanted.strip()}: {chosen.id} balanced among {len(here)} "
                f"dealer{'s' if len(here) != 1 else ''} ({load}/{chosen.daily_capacity} today)",
            )
    where = "/".join(p.strip() for p in (city, province) if p.strip()) or "unknown area"
    return RoutingDecision(
        None, f"{note}OEM pool: no active {brand} dealer with capacity in {where}"
    )


def manual(dealer: Dealer | None, dealer_id: str, brand: str, reason: str) -> RoutingDecision:
    """An OEM's hand assignment (AssignLead): the dealer must exist (NotFound), be active
    and sell the brand (FailedPrecondition); daily capacity does not bind a person's
    decision."""
    if dealer is None:
        raise NotFound(f"dealer {dealer_id} not found", reason=errors.DEALER_NOT_FOUND)
    if not dealer.active:
        raise FailedPrecondition(f"dealer {dealer.id} is inactive", reason=errors.DEALER_INACTIVE)
    if not dealer.sells(brand):
        raise FailedPrecondition(
            f"dealer {dealer.id} does not sell {brand}", reason=errors.DEALER_BRAND_MISMATCH
        )
    return RoutingDecision(dealer.id, f"assigned by hand: {' '.join(reason.split())}")


def walk_in(dealer_id: str) -> RoutingDecision:
    """A walk-in lead recorded by a dealer stays with that dealer, capacity or not: the
    customer is standing in its showroom."""
    return RoutingDecision(dealer_id, f"walk-in at dealer {dealer_id}")

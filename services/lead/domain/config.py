"""Lead rules configuration: every threshold, weight and window in one dataclass.

OEMs differ in grade windows and follow-up intervals (see ../shared/data/README.md), so
none of these are constants in the rules. Defaults follow issue 3; `from_env` reads the
few knobs operators actually turn, each as `MARQUE_LEAD_<NAME>`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import TypeVar

from services.lead.domain.model import Channel, Grade

K = TypeVar("K")

_DEFAULT_CHANNEL_QUALITY = {
    Channel.DEALER_WALK_IN: 25,
    Channel.BRAND_SITE: 20,
    Channel.CALL_CENTER: 20,
    Channel.AUTOHOME: 18,
    Channel.YICHE: 16,
    Channel.ADF: 12,
    Channel.TENCENT_ADS: 10,
    Channel.BULK_IMPORT: 5,
}
_DEFAULT_GRADE_POINTS = {Grade.H: 25, Grade.A: 20, Grade.B: 15, Grade.C: 8, Grade.N: 0}
_DEFAULT_FOLLOW_UP_DAYS = {Grade.H: 2, Grade.A: 7, Grade.B: 14, Grade.C: 30, Grade.N: 30}


def _frozen(mapping: Mapping[K, int]) -> Mapping[K, int]:
    """A read-only copy, so a shared default cannot be changed by one user."""
    return MappingProxyType(dict(mapping))


@dataclass(frozen=True, slots=True)
class LeadConfig:
    """Thresholds and weights of cleansing, dedup, rating, routing and follow-up."""

    # Cleansing: region for numbers without a country code; ADF (a North American
    # standard) uses the address's country, else `adf_default_region`.
    default_region: str = "CN"
    adf_default_region: str = "US"
    # A Chinese mobile's home area (号码归属地, libphonenumber's geocoder) fills in city and
    # province when the customer gave neither, so the lead can still route by region. Off
    # by default: the geocoder data costs about 100 MB per process, loaded on first use.
    infer_area_from_mobile: bool = False
    # Dedup: same contact + brand within this many days of the last touch merges.
    dedup_window_days: int = 30
    # Rating: a time frame of at most N days gets the grade (H <= 7 < A <= 15 ...); beyond
    # `grade_c_days` or unknown is N.
    grade_h_days: int = 7
    grade_a_days: int = 15
    grade_b_days: int = 30
    grade_c_days: int = 90
    # Score weights (sum of maxima is 100 with the defaults).
    channel_quality: Mapping[Channel, int] = field(
        default_factory=lambda: _frozen(_DEFAULT_CHANNEL_QUALITY)
    )
    grade_points: Mapping[Grade, int] = field(
        default_factory=lambda: _frozen(_DEFAULT_GRADE_POINTS)
    )
    completeness_points: int = 20
    touchpoint_points: int = 5
    touchpoint_max_points: int = 10
    test_drive_points: int = 10
    recency_points: int = 10
    recency_full_hours: int = 24
    recency_half_days: int = 7
    # Follow-up: days from assignment (or last status change) to the deadline, by grade.
    follow_up_days: Mapping[Grade, int] = field(
        default_factory=lambda: _frozen(_DEFAULT_FOLLOW_UP_DAYS)
    )

    def __post_init__(self) -> None:
        days = (self.grade_h_days, self.grade_a_days, self.grade_b_days, self.grade_c_days)
        if list(days) != sorted(days) or days[0] < 0:
            raise ValueError(f"grade thresholds must ascend from 0: {days}")
        if self.dedup_window_days < 0:
            raise ValueError("dedup_window_days must be >= 0")
        if set(self.follow_up_days) != set(Grade):
            raise ValueError("follow_up_days needs a value for every grade")

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> LeadConfig:
        """Defaults overridden by MARQUE_LEAD_DEDUP_WINDOW_DAYS, MARQUE_LEAD_DEFAULT_REGION,
        MARQUE_LEAD_ADF_DEFAULT_REGION, MARQUE_LEAD_INFER_AREA_FROM_MOBILE (0/1),
        MARQUE_LEAD_GRADE_DAYS ("7,15,30,90"),
        MARQUE_LEAD_FOLLOW_UP_DAYS ("H=2,A=7,B=14,C=30,N=30", partial allowed) and
        MARQUE_LEAD_CHANNEL_QUALITY ("AUTOHOME=18,YICHE=16", partial allowed)."""
        config = cls()
        changes: dict[str, object] = {}

        def get(name: str) -> str | None:
            value = env.get(f"MARQUE_LEAD_{name}", "").strip()
            return value or None

        if (value := get("DEDUP_WINDOW_DAYS")) is not None:
            changes["dedup_window_days"] = int(value)
        if (value := get("DEFAULT_REGION")) is not None:
            changes["default_region"] = value.upper()
        if (value := get("ADF_DEFAULT_REGION")) is not None:
            changes["adf_default_region"] = value.upper()
        if (value := get("INFER_AREA_FROM_MOBILE")) is not None:
            changes["infer_area_from_mobile"] = value.lower() not in ("0", "false", "no", "off")
        if (value := get("GRADE_DAYS")) is not None:
            h, a, b, c = (int(part) for part in value.split(","))
            changes.update(grade_h_days=h, grade_a_days=a, grade_b_days=b, grade_c_days=c)
        if (value := get("FOLLOW_UP_DAYS")) is not None:
            follow = dict(config.follow_up_days)
            follow.update({Grade(k.upper()): v for k, v in _pairs(value).items()})
            changes["follow_up_days"] = _frozen(follow)
        if (value := get("CHANNEL_QUALITY")) is not None:
            quality = dict(config.channel_quality)
            quality.update({Channel(k.upper()): v for k, v in _pairs(value).items()})
            changes["channel_quality"] = _frozen(quality)
        return replace(config, **changes)  # type: ignore[arg-type]


def _pairs(text: str) -> dict[str, int]:
    """Parse "K=1,L=2" into {"K": 1, "L": 2}."""
    out: dict[str, int] = {}
    for part in text.split(","):
        if part.strip():
            key, _, value = part.partition("=")
            out[key.strip()] = int(value)
    return out

"""The lead domain's data: plain frozen dataclasses and string enums.

The servicer decodes protos into these and the store maps them to rows; the rules in the
sibling modules (cleansing, adf, dedup, rating, routing, followup, intake) take and return
them. Enum values are the proto enum names without their prefix (`Channel.AUTOHOME` is
`CHANNEL_AUTOHOME`), so mapping is `pb.Channel.Value("CHANNEL_" + c.value)` and back
`Channel(pb.Channel.Name(n).removeprefix("CHANNEL_"))`. Changes are made with
`dataclasses.replace`, never in place, so a rejected operation leaves nothing half-changed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from functools import lru_cache

from mesh.errors import DomainError


class Channel(StrEnum):
    """Where a lead came from (proto `Channel`, prefix `CHANNEL_`)."""

    BRAND_SITE = "BRAND_SITE"
    AUTOHOME = "AUTOHOME"
    YICHE = "YICHE"
    TENCENT_ADS = "TENCENT_ADS"
    DEALER_WALK_IN = "DEALER_WALK_IN"
    CALL_CENTER = "CALL_CENTER"
    ADF = "ADF"
    BULK_IMPORT = "BULK_IMPORT"


class LeadStatus(StrEnum):
    """Follow-up state (proto `LeadStatus`, prefix `LEAD_STATUS_`)."""

    NEW = "NEW"
    CONTACTED = "CONTACTED"
    TEST_DRIVE_BOOKED = "TEST_DRIVE_BOOKED"
    WON = "WON"
    LOST = "LOST"

    @property
    def is_open(self) -> bool:
        """True until the lead is WON or LOST."""
        return self not in (LeadStatus.WON, LeadStatus.LOST)


# Which status may follow which (see followup.py for the why). Moving to the same status is
# a no-op, not a transition, and is not listed.
ALLOWED_TRANSITIONS: dict[LeadStatus, frozenset[LeadStatus]] = {
    LeadStatus.NEW: frozenset(
        {LeadStatus.CONTACTED, LeadStatus.TEST_DRIVE_BOOKED, LeadStatus.WON, LeadStatus.LOST}
    ),
    LeadStatus.CONTACTED: frozenset(
        {LeadStatus.TEST_DRIVE_BOOKED, LeadStatus.WON, LeadStatus.LOST}
    ),
    LeadStatus.TEST_DRIVE_BOOKED: frozenset({LeadStatus.WON, LeadStatus.LOST}),
    LeadStatus.WON: frozenset(),
    LeadStatus.LOST: frozenset(),
}


class Grade(StrEnum):
    """Lead grade (proto `LeadGrade`, prefix `LEAD_GRADE_`)."""

    H = "H"
    A = "A"
    B = "B"
    C = "C"
    N = "N"


class TimeFrame(StrEnum):
    """Purchase time frame (proto `PurchaseTimeFrame`, prefix `PURCHASE_TIME_FRAME_`).

    The proto's UNSPECIFIED decodes to UNKNOWN.
    """

    WITHIN_7_DAYS = "WITHIN_7_DAYS"
    WITHIN_15_DAYS = "WITHIN_15_DAYS"
    WITHIN_30_DAYS = "WITHIN_30_DAYS"
    WITHIN_90_DAYS = "WITHIN_90_DAYS"
    LATER = "LATER"
    UNKNOWN = "UNKNOWN"

    @property
    def days(self) -> int | None:
        """Upper bound in days; None when unknown. LATER counts as 365."""
        return _TIME_FRAME_DAYS[self]

    @classmethod
    def from_days(cls, days: int | None) -> TimeFrame:
        """The narrowest bucket that contains `days` (None or negative: UNKNOWN)."""
        if days is None or days < 0:
            return cls.UNKNOWN
        for frame in (cls.WITHIN_7_DAYS, cls.WITHIN_15_DAYS, cls.WITHIN_30_DAYS):
            if days <= _TIME_FRAME_DAYS[frame]:  # type: ignore[operator]
                return frame
        return cls.WITHIN_90_DAYS if days <= 90 else cls.LATER


_TIME_FRAME_DAYS: dict[TimeFrame, int | None] = {
    TimeFrame.WITHIN_7_DAYS: 7,
    TimeFrame.WITHIN_15_DAYS: 15,
    TimeFrame.WITHIN_30_DAYS: 30,
    TimeFrame.WITHIN_90_DAYS: 90,
    TimeFrame.LATER: 365,
    TimeFrame.UNKNOWN: None,
}


class SubmitOutcome(StrEnum):
    """What became of a submission (proto `SubmitOutcome`, prefix `SUBMIT_OUTCOME_`)."""

    CREATED = "CREATED"
    MERGED = "MERGED"
    DUPLICATE = "DUPLICATE"
    # A dealer's walk-in of a customer whose open lead another dealer follows: recorded as
    # a touchpoint of that lead, nothing else of it changes (see intake.record_visit).
    OTHER_DEALER = "OTHER_DEALER"


@lru_cache(maxsize=4096)
def fold(text: str) -> str:
    """Comparison key for brands and names of places: trimmed, case-folded."""
    return " ".join(text.split()).casefold()


@dataclass(frozen=True, slots=True)
class Consents:
    """What the customer agreed to (PIPL), recorded as given."""

    contact: bool = False
    marketing: bool = False
    share_with_dealer: bool = False


@dataclass(frozen=True, slots=True)
class LeadInput:
    """Everything one submission carries, decoded from the proto or an ADF document and
    not yet cleansed. Strings are as received; empty means absent.

    `field_prefix` is where the lead sits in the request ("lead." for SubmitLeadRequest
    and ImportLeadsRequest rows); ADF leads use "raw_adf" and report every problem on that
    one field, since the caller cannot point inside a document by field path.
    """

    channel: Channel
    name: str = ""
    mobile: str = ""
    email: str = ""
    city: str = ""
    province: str = ""
    brand: str = ""
    series: str = ""
    model: str = ""
    trim: str = ""
    model_year: int = 0
    time_frame: TimeFrame = TimeFrame.UNKNOWN
    preferred_dealer_id: str = ""
    consents: Consents = Consents()
    test_drive_requested: bool = False
    channel_lead_id: str = ""
    request_id: str = ""
    # Further phone numbers (ADF), tried in order when `mobile` is not usable.
    alt_phones: tuple[str, ...] = ()
    # Region for numbers without a country code; None means the configured default.
    phone_region: str | None = None
    # When the channel says the enquiry was made (ADF requestdate); None means on arrival.
    request_time: datetime | None = None
    # ADF prospect status="resend": informational, the channel lead id decides.
    resend: bool = False
    from_adf: bool = False
    field_prefix: str = "lead."

    def path(self, field_path: str) -> str:
        """The request field path of `field_path` ("customer.mobile") for error details."""
        if self.from_adf:
            return self.field_prefix
        return self.field_prefix + field_path


@dataclass(frozen=True, slots=True)
class CleanLead:
    """A submission after cleansing: every field normalised and checked.

    At least one of `mobile_e164` and `email` is set (only ADF leads may lack a mobile).
    """

    channel: Channel
    name: str
    mobile_e164: str | None
    email: str | None
    city: str
    province: str
    brand: str
    series: str
    model: str
    trim: str
    time_frame: TimeFrame
    preferred_dealer_id: str | None
    consents: Consents
    test_drive_requested: bool
    channel_lead_id: str
    request_id: str
    request_time: datetime | None = None
    model_year: int = 0
    # Cleansing notes worth keeping (e.g. "email dropped: not an address"), never PII.
    notes: tuple[str, ...] = ()

    @property
    def contact_key(self) -> str:
        """The dedup identity of the person: the E.164 mobile, else "email:<address>"."""
        if self.mobile_e164:
            return self.mobile_e164
        return f"email:{self.email}"

    @property
    def brand_key(self) -> str:
        """The brand as compared for dedup and routing."""
        return fold(self.brand)


@dataclass(frozen=True, slots=True)
class Rating:
    """Grade, score 0-100 and the reasons for both, in the order they were applied."""

    grade: Grade
    score: int
    reasons: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Dealer:
    """A dealer that can receive leads."""

    id: str
    name: str
    brands: tuple[str, ...]
    province: str
    city: str
    daily_capacity: int
    active: bool = True
    create_time: datetime | None = None

    def sells(self, brand: str) -> bool:
        """Whether the dealer sells `brand` (case-insensitive)."""
        key = fold(brand)
        return any(fold(b) == key for b in self.brands)


@dataclass(frozen=True, slots=True)
class RoutingDecision:
    """Where a lead goes: a dealer id, or None for the OEM pool, and why."""

    dealer_id: str | None
    reason: str


@dataclass(frozen=True, slots=True)
class Touchpoint:
    """One arrival of a lead. `payload_ref` names the stored raw payload, never holds it.

    `dealer_id` is the dealer a walk-in happened at ("" for other channels): walk-ins are
    counted for that dealer even when the lead is another's, and it scopes the dealer's
    own channel lead ids (two dealers' "WALKIN-0001" are two leads).
    """

    channel: Channel
    time: datetime
    channel_lead_id: str = ""
    request_id: str = ""
    payload_ref: str = ""
    dealer_id: str = ""


@dataclass(frozen=True, slots=True)
class Lead:
    """The lead aggregate: one prospective buyer of one brand.

    `last_touch_time` is the arrival of the latest touchpoint; the dedup window counts
    from it. `contact_key` and `brand_key` are what the store indexes for dedup lookups.
    """

    id: str
    status: LeadStatus
    rating: Rating
    name: str
    mobile_e164: str | None
    email: str | None
    city: str
    province: str
    brand: str
    series: str
    model: str
    trim: str
    time_frame: TimeFrame
    test_drive_requested: bool
    channel: Channel
    channel_lead_id: str
    consents: Consents
    preferred_dealer_id: str | None
    dealer_id: str | None
    routing_reason: str
    touchpoints: tuple[Touchpoint, ...]
    follow_up_due: datetime | None
    lost_reason: str
    create_time: datetime
    update_time: datetime
    last_touch_time: datetime
    create_actor: str = ""
    update_actor: str = ""
    # Optimistic-concurrency version for the store; bumped by every domain change.
    version: int = 1
    model_year: int = 0
    # How other services name the lead's person (mesh/contact.py), None once erased; and
    # the member it is, once member said so (MemberRegistered, MemberMerged).
    contact_digest: str | None = None
    member_id: str = ""

    @property
    def grade(self) -> Grade:
        """The rating's grade."""
        return self.rating.grade

    @property
    def score(self) -> int:
        """The rating's score."""
        return self.rating.score

    @property
    def contact_key(self) -> str:
        """Same as `CleanLead.contact_key`."""
        if self.mobile_e164:
            return self.mobile_e164
        return f"email:{self.email}"

    @property
    def brand_key(self) -> str:
        """Same as `CleanLead.brand_key`."""
        return fold(self.brand)


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why one import row was refused: the field path (empty: the whole row) and reason."""

    field: str
    reason: str


def rejections_of(error: DomainError) -> list[Rejection]:
    """The rejections a domain error stands for: one per field violation, else one."""
    if error.field_violations:
        return [Rejection(v.field, v.description) for v in error.field_violations]
    return [Rejection("", error.message)]


def payload_ref(payload: bytes) -> str:
    """A stable reference to a raw payload ("sha256:<hex>"), stored instead of the payload
    so personal data is not copied into every touchpoint."""
    return "sha256:" + hashlib.sha256(payload).hexdigest()


def unique(items: Sequence[str]) -> tuple[str, ...]:
    """Items without repeats, first occurrence kept, order preserved."""
    return tuple(dict.fromkeys(items))

"""Plain records the store hands to the servicer (no SQLAlchemy rows leak out)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from services.member.domain.identities import IdentityKey
from services.member.domain.ledger import EntryKind
from services.member.domain.rules import MemberState


@dataclass(frozen=True, slots=True)
class IdentityRecord:
    """A live identity of a member."""

    key: IdentityKey
    link_time: datetime


@dataclass(frozen=True, slots=True)
class MemberRecord:
    """A member as stored, with its identities and current qualifying points."""

    id: str
    state: MemberState
    merged_into: str
    display_name: str
    city: str
    preferred_dealer_id: str
    balance: int
    tier: str
    qualifying_points: int
    identities: tuple[IdentityRecord, ...]
    create_time: datetime
    create_actor: str
    update_time: datetime
    update_actor: str
    erase_time: datetime | None = None


@dataclass(frozen=True, slots=True)
class TransactionRecord:
    """A booked ledger entry; `seq` is its position in the ledger (the page key)."""

    seq: int
    id: str
    member_id: str
    kind: EntryKind
    points: int
    balance_after: int
    reason: str
    source_ref: str
    actor: str
    create_time: datetime
    expire_time: datetime | None


@dataclass(frozen=True, slots=True)
class TierChangeRecord:
    """A recorded tier change."""

    seq: int
    member_id: str
    from_tier: str
    to_tier: str
    reason: str
    change_time: datetime


@dataclass(frozen=True, slots=True)
class OwnershipRecord:
    """One ownership period of a VIN."""

    member_id: str
    start_time: datetime
    end_time: datetime | None
    reason: str


@dataclass(frozen=True, slots=True)
class VehicleRecord:
    """A car with its current owner (empty if released) and ownership history."""

    vin: str
    owner_id: str
    brand: str
    model: str
    purchase_date: str
    dealer_id: str
    history: tuple[OwnershipRecord, ...] = field(default=())


@dataclass(frozen=True, slots=True)
class Write:
    """Who writes, with which client request id (AIP-155), and when.

    `scope` is the caller's stable reference ("service:sales"): request ids are unique per
    caller, so two callers can never collide. `fingerprint` is a hash of the request, so a
    request id reused for a different request is refused instead of silently answered.
    """

    scope: str
    request_id: str
    fingerprint: str
    now: datetime

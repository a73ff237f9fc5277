"""Plain records: what the store reads (no SQLAlchemy rows leak out), the rules decide on
and the replies carry."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from services.member.domain.identities import IdentityKey
from services.member.domain.ledger import EntryKind
from services.member.domain.qualifying import QualifyingCache
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
class MemberRow:
    """A member's row as stored: what the rules decide on (under the row lock for a write)."""

    id: str
    state: MemberState
    merged_into: str
    display_name: str
    city: str
    preferred_dealer_id: str
    balance: int
    tier: str
    next_expiry: datetime | None
    cache: QualifyingCache
    create_time: datetime
    create_actor: str
    update_time: datetime
    update_actor: str
    erase_time: datetime | None

    @property
    def active(self) -> bool:
        """Only an active member changes."""
        return self.state is MemberState.ACTIVE

    def record(
        self, identities: tuple[IdentityRecord, ...], qualifying: int, tier: str | None = None
    ) -> MemberRecord:
        """The member as replies carry it, with its live identities, its qualifying points
        at the time of the call and (if given) the tier a review just decided."""
        return MemberRecord(
            id=self.id,
            state=self.state,
            merged_into=self.merged_into,
            display_name=self.display_name,
            city=self.city,
            preferred_dealer_id=self.preferred_dealer_id,
            balance=self.balance,
            tier=self.tier if tier is None else tier,
            qualifying_points=qualifying,
            identities=identities,
            create_time=self.create_time,
            create_actor=self.create_actor,
            update_time=self.update_time,
            update_actor=self.update_actor,
            erase_time=self.erase_time,
        )


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

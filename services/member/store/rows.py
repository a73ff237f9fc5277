"""Rows to domain records and back: the queries' shared mapping (no SQLAlchemy row leaves the
store)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from sqlalchemy.engine import Row

from services.member.domain import consent
from services.member.domain.consent import ConsentEvent
from services.member.domain.identities import IdentityKey, IdentityType
from services.member.domain.ledger import Entry, EntryKind
from services.member.domain.model import (
    IdentityRecord,
    MemberRow,
    OwnershipRecord,
    TierChangeRecord,
    TransactionRecord,
    VehicleRecord,
)
from services.member.domain.qualifying import QualifyingCache
from services.member.domain.relations import DealerRelation, Relation
from services.member.domain.rules import MemberState


def member_row(row: Row[Any]) -> MemberRow:
    """A `members` row."""
    return MemberRow(
        id=row.id,
        state=MemberState(row.state),
        merged_into=row.merged_into,
        display_name=row.display_name,
        city=row.city,
        preferred_dealer_id=row.preferred_dealer_id,
        balance=row.balance,
        tier=row.tier,
        next_expiry=row.next_expiry,
        cache=QualifyingCache(int(row.qualifying), row.qualifying_asof, row.qualifying_until),
        create_time=row.create_time,
        create_actor=row.create_actor,
        update_time=row.update_time,
        update_actor=row.update_actor,
        erase_time=row.erase_time,
    )


def identity_records(rows: Sequence[Row[Any]]) -> tuple[IdentityRecord, ...]:
    """`identities` rows (live ones)."""
    return tuple(
        IdentityRecord(IdentityKey(IdentityType(i.type), i.value, i.app_id), i.link_time)
        for i in rows
    )


def txn_record(row: Row[Any]) -> TransactionRecord:
    """A `point_transactions` row as replies carry it."""
    return TransactionRecord(
        seq=row.seq,
        id=row.id,
        member_id=row.member_id,
        kind=EntryKind(row.kind),
        points=row.points,
        balance_after=row.balance_after,
        reason=row.reason,
        source_ref=row.source_ref,
        actor=row.actor,
        create_time=row.create_time,
        expire_time=row.expire_time,
    )


def entry(row: Row[Any]) -> Entry:
    """A `point_transactions` row as the ledger rules replay it."""
    return Entry(
        row.id,
        EntryKind(row.kind),
        row.points,
        row.create_time,
        expire_at=row.expire_time,
        earned_at=row.earned_time,
        lot_id=row.lot_id,
    )


def entry_values(
    member_id: str, e: Entry, *, balance_after: int, reason: str, source_ref: str, actor: str
) -> dict[str, Any]:
    """The `point_transactions` row of a ledger entry."""
    return {
        "id": e.id,
        "member_id": member_id,
        "kind": e.kind.value,
        "points": e.points,
        "balance_after": balance_after,
        "reason": reason,
        "source_ref": source_ref,
        "actor": actor,
        "create_time": e.at,
        "expire_time": e.expire_at,
        "earned_time": e.earned_at,
        "lot_id": e.lot_id,
    }


def tier_change_record(row: Row[Any]) -> TierChangeRecord:
    """A `tier_changes` row."""
    return TierChangeRecord(
        row.seq, row.member_id, row.from_tier, row.to_tier, row.reason, row.change_time
    )


def vehicle_record(row: Row[Any], history: Sequence[Row[Any]]) -> VehicleRecord:
    """A `vehicles` row with its `vehicle_ownerships` rows in order."""
    return VehicleRecord(
        vin=row.vin,
        owner_id=row.owner_id or "",
        brand=row.brand,
        model=row.model,
        purchase_date=row.purchase_date,
        dealer_id=row.dealer_id,
        history=tuple(
            OwnershipRecord(h.member_id, h.start_time, h.end_time, h.reason) for h in history
        ),
    )


def dealer_relation(row: Row[Any]) -> DealerRelation:
    """A `dealer_relations` row (without its member)."""
    return DealerRelation(row.dealer_id, Relation(row.relation), row.vin)


def consent_event(row: Row[Any]) -> ConsentEvent:
    """A `consent_events` row."""
    return ConsentEvent(
        member_id=row.member_id,
        purpose=consent.Purpose(row.purpose),
        channel=consent.Channel(row.channel),
        action=consent.Action(row.action),
        occur_time=row.occur_time,
        source=row.source,
        actor=row.actor,
        seq=row.seq,
    )


def consent_values(e: ConsentEvent, record_time: dt.datetime) -> dict[str, Any]:
    """The `consent_events` row of a decision recorded at `record_time`."""
    return {
        "member_id": e.member_id,
        "purpose": e.purpose.value,
        "channel": e.channel.value,
        "action": e.action.value,
        "occur_time": e.occur_time,
        "source": e.source,
        "actor": e.actor,
        "record_time": record_time,
    }

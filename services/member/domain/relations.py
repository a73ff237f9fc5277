"""Which dealers a member relates to: a dealer that serviced the member's car, or holds a
lead of the member. A dealer sees the members it relates to (visibility.py); a car it sold
relates them too, through the car's own `dealer_id`."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from mesh.errors import FailedPrecondition
from services.member.domain.errors import VIN_NOT_OWNED_BY_MEMBER, invalid
from services.member.domain.rules import MemberState


class Relation(StrEnum):
    """Why a dealer relates to a member; values are stored."""

    SERVICE = "service"
    LEAD = "lead"


@dataclass(frozen=True, slots=True)
class DealerRelation:
    """One recorded relation of a member (`vin` "" for a lead without a car)."""

    dealer_id: str
    relation: Relation
    vin: str = ""

    @classmethod
    def of(cls, dealer_id: str, relation: Relation, vin: str) -> DealerRelation:
        """A relation to record; a service relation names the serviced car."""
        if relation is Relation.SERVICE and not vin:
            raise invalid("vin", "a service relation names the serviced car")
        return cls(dealer_id, relation, vin)

    def check_owner(self, member_id: str, owner_id: str | None) -> None:
        """A relation through a car needs the member to own the car now (`owner_id`)."""
        if self.vin and owner_id != member_id:
            raise FailedPrecondition(
                "the member does not own that VIN", reason=VIN_NOT_OWNED_BY_MEMBER
            )


def missing(
    theirs: Iterable[DealerRelation], ours: Iterable[DealerRelation]
) -> list[DealerRelation]:
    """The relations of `theirs` that `ours` lacks, in their order (a merge copies them)."""
    have = set(ours)
    return [r for r in theirs if r not in have]


def relation_holder(member_id: str, state: MemberState | None, merged_into: str) -> str | None:
    """Who gets a relation another service reports about `member_id` (a won lead): the
    member itself, or the member it was merged into (merges point straight at the
    survivor); nobody when it was erased or is unknown."""
    if state is MemberState.ACTIVE:
        return member_id
    if state is MemberState.MERGED and merged_into:
        return merged_into
    return None

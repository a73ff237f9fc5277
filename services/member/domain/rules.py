"""Member-level rules: the life-cycle of a member and which members may be changed.

Only an active member changes; a merged one names the member to go to instead, an erased
one is gone. Who may see a member is in `visibility.py`.
"""

from __future__ import annotations

from enum import StrEnum

from mesh.errors import FailedPrecondition
from services.member.domain.errors import MEMBER_ERASED, MEMBER_MERGED, SAME_MEMBER


class MemberState(StrEnum):
    """Life-cycle of a member row; values are stored."""

    ACTIVE = "active"
    MERGED = "merged"
    ERASED = "erased"


def require_active(member_id: str, state: MemberState, merged_into: str | None) -> None:
    """Changes go to active members only; a merged one names where to go instead."""
    if state is MemberState.MERGED:
        raise FailedPrecondition(
            f"member {member_id} was merged into {merged_into}", reason=MEMBER_MERGED
        )
    if state is MemberState.ERASED:
        raise FailedPrecondition(f"member {member_id} is erased", reason=MEMBER_ERASED)


def check_merge(winner_id: str, loser_id: str) -> None:
    """A member cannot be merged into itself."""
    if winner_id == loser_id:
        raise FailedPrecondition("cannot merge a member into itself", reason=SAME_MEMBER)

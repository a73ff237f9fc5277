"""Member-level rules: who may be changed, how merges go, what a caller may see.

Access is decided on plain values (caller kind and scope ids, plus whether a dealer has a
relation to the member), so the same rules are unit-tested without a server:
- customer: only their own member; anything else is reported as not found, so a customer
  cannot probe which member ids exist (NOT_FOUND rather than PERMISSION_DENIED);
- dealer: members related to the dealer (current owner of a car it sold or serviced, or
  linked to one of its leads), with identities reduced to the mobile; others not found;
- oem and service: everything.
"""

from __future__ import annotations

from enum import StrEnum

from services.member.domain.errors import RuleViolation


class MemberState(StrEnum):
    """Life-cycle of a member row; values are stored."""

    ACTIVE = "active"
    MERGED = "merged"
    ERASED = "erased"


class View(StrEnum):
    """How much of a member a caller may see."""

    NONE = "none"
    MOBILE_ONLY = "mobile_only"
    FULL = "full"


def require_active(member_id: str, state: MemberState, merged_into: str | None) -> None:
    """Changes go to active members only; a merged one names where to go instead."""
    if state is MemberState.MERGED:
        raise RuleViolation(
            f"member {member_id} was merged into {merged_into}", reason="MEMBER_MERGED"
        )
    if state is MemberState.ERASED:
        raise RuleViolation(f"member {member_id} is erased", reason="MEMBER_ERASED")


def check_merge(winner_id: str, loser_id: str) -> None:
    """A member cannot be merged into itself."""
    if winner_id == loser_id:
        raise RuleViolation("cannot merge a member into itself", reason="SAME_MEMBER")


def view_for(
    kind: str,
    member_id: str,
    *,
    caller_member_id: str | None = None,
    dealer_related: bool = False,
) -> View:
    """What a caller of `kind` ("oem", "service", "dealer", "customer") may see of a member."""
    if kind in ("oem", "service"):
        return View.FULL
    if kind == "customer":
        return View.FULL if caller_member_id == member_id else View.NONE
    if kind == "dealer":
        return View.MOBILE_ONLY if dealer_related else View.NONE
    return View.NONE

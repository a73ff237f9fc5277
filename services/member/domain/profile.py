"""A member's profile: the fields a member (or staff, or a service) may change, and how a
merge combines two profiles."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from services.member.domain.errors import invalid
from services.member.domain.model import MemberRow

UPDATABLE = ("display_name", "city", "preferred_dealer_id")
_LIMITS = {"display_name": 100, "city": 100, "preferred_dealer_id": 32}


def changes(paths: Sequence[str], values: Mapping[str, str]) -> dict[str, str]:
    """UpdateMember's changes: the fields of the update mask (an empty mask: every field
    given a value), trimmed; another field or a value too long is INVALID_ARGUMENT."""
    wanted = list(paths) or [f for f in UPDATABLE if values.get(f)]
    unknown = sorted(set(wanted) - set(UPDATABLE))
    if unknown:
        raise invalid("update_mask", f"cannot update {unknown}; updatable: {list(UPDATABLE)}")
    out = {p: str(values.get(p, "")).strip() for p in wanted}
    for name, value in out.items():
        limit = _LIMITS[name]
        if len(value) > limit:
            raise invalid(f"member.{name}", f"at most {limit} characters")
    return out


def merged(winner: MemberRow, loser: MemberRow) -> dict[str, str]:
    """The winner's profile after a merge: its own values, the loser's where it had none."""
    return {
        "display_name": winner.display_name or loser.display_name,
        "city": winner.city or loser.city,
        "preferred_dealer_id": winner.preferred_dealer_id or loser.preferred_dealer_id,
    }

"""Who owns a car: one current owner per VIN, every change kept as an ownership period.

Binding claims a VIN nobody owns (or that is new); a VIN another member owns is refused
(the owner changes only by a transfer, which OEM staff or a dealer system asks for).
Merges move the loser's cars to the winner; erasure releases the member's cars (the VIN
stays known, with its history under the member's pseudonymous id).
"""

from __future__ import annotations

from enum import StrEnum

from mesh.errors import FailedPrecondition
from services.member.domain.errors import VIN_OWNED_BY_OTHER_MEMBER, vehicle_not_found


class Binding(StrEnum):
    """What a BindVehicle does to the VIN."""

    NEW = "new"  # an unknown VIN: recorded, owned by the member
    CLAIM = "claim"  # a known VIN nobody owns: its details updated, owned by the member
    KEEP = "keep"  # the member owns it already: nothing changes


# Why an ownership period began or ended; values are stored.
BIND, TRANSFER, MERGE, ERASURE = "bind", "transfer", "merge", "erasure"


def bind(member_id: str, *, known: bool, owner_id: str | None) -> Binding:
    """The member binds a VIN (`known`: the VIN is recorded; `owner_id`: its owner, None
    when released)."""
    if not known:
        return Binding.NEW
    if owner_id is None:
        return Binding.CLAIM
    if owner_id != member_id:
        raise FailedPrecondition(
            "the VIN has another current owner; use TransferVehicle",
            reason=VIN_OWNED_BY_OTHER_MEMBER,
        )
    return Binding.KEEP


def transfer(vin: str, to_member: str, *, known: bool, owner_id: str | None) -> bool:
    """Whether a transfer to `to_member` changes the owner (False: it owns the car already);
    an unknown VIN is NOT_FOUND."""
    if not known:
        raise vehicle_not_found(vin)
    return owner_id != to_member

"""What of a member a caller may be told (DESIGN.md §8: a reply never carries what the caller
could not read with GetMember).

Access is decided on plain values (the caller, and whether a dealer has a relation to the
member), so the same rules are unit-tested without a server:
- customer: only their own member (or the member theirs was merged into: the token still
  names the old id); anything else is reported as not found, so a customer cannot probe
  which member ids exist (NOT_FOUND rather than PERMISSION_DENIED);
- dealer: members related to the dealer (current owner of a car it sold or serviced, or
  linked to one of its leads), with identities reduced to the mobile; others not found;
  a dealer looks members up by mobile only;
- oem and service: everything.
Replies are cut to the view here (`member_shown`, `transaction_shown`, `vehicle_shown`), so
the servicer encodes what it is given and decides nothing.
"""

from __future__ import annotations

from dataclasses import replace
from enum import StrEnum

from mesh.errors import PermissionDenied
from mesh.identity import Caller, Kind
from services.member.domain.errors import DEALER_MOBILE_ONLY, IDENTITY_LINK_NEEDS_VERIFICATION
from services.member.domain.identities import IdentityType, visible_to_dealer
from services.member.domain.ledger import EntryKind
from services.member.domain.model import MemberRecord, TransactionRecord, VehicleRecord

# What customers and dealers read in place of a merge entry's reason (which names both
# members and carries the staff's note), and the cause of a merge's tier change.
MERGE_NOTE = "member records merged"
_MERGE_KINDS = (EntryKind.MERGE_IN, EntryKind.MERGE_OUT)
_STAFF = (Kind.OEM, Kind.SERVICE)


class View(StrEnum):
    """How much of a member a caller may see."""

    NONE = "none"
    MOBILE_ONLY = "mobile_only"
    FULL = "full"


def view_for(
    caller: Caller, member_id: str, *, dealer_related: bool = False, own_merged_into: str = ""
) -> View:
    """What `caller` may see of `member_id`. `dealer_related`: the caller is a dealer with a
    relation to the member; `own_merged_into`: where the customer's own member was merged."""
    if caller.kind in _STAFF:
        return View.FULL
    if caller.kind is Kind.CUSTOMER:
        merged_here = bool(own_merged_into) and own_merged_into == member_id
        own = caller.member_id == member_id or merged_here
        return View.FULL if own else View.NONE
    if caller.kind is Kind.DEALER:
        return View.MOBILE_ONLY if dealer_related else View.NONE
    return View.NONE


def must_be_seen(caller: Caller) -> bool:
    """Whether an answer about a member needs the caller to see it (customers, dealers);
    staff and services are told "no consent" of a member that does not exist."""
    return caller.kind in (Kind.CUSTOMER, Kind.DEALER)


def check_lookup(caller: Caller, identity_type: IdentityType, what: str) -> None:
    """A dealer finds members by mobile only (`what`: "search members", ...)."""
    if caller.kind is Kind.DEALER and identity_type is not IdentityType.MOBILE:
        raise PermissionDenied(f"dealers may {what} by mobile only", reason=DEALER_MOBILE_ONLY)


def check_may_link(caller: Caller) -> None:
    """Whatever the identity, success or "another member's" would tell a customer which
    mobiles are registered, and nothing proves the customer holds it: the channel that
    verified the identity links it."""
    if caller.kind is Kind.CUSTOMER:
        raise PermissionDenied(
            "a customer cannot link an identity; the channel that verified it links it",
            reason=IDENTITY_LINK_NEEDS_VERIFICATION,
        )


def may_erase(caller: Caller, member_id: str) -> bool:
    """A customer erases their own member only (OEM staff any, by the access policy)."""
    return caller.kind is not Kind.CUSTOMER or caller.member_id == member_id


def member_shown(record: MemberRecord, view: View) -> MemberRecord:
    """The member as `view` may see it: dealers get the mobile and no other identity."""
    if view is View.FULL:
        return record
    return replace(
        record, identities=tuple(i for i in record.identities if visible_to_dealer(i.key))
    )


def transaction_shown(t: TransactionRecord, caller: Caller) -> TransactionRecord:
    """A ledger entry as the caller may see it: a merge entry's reason names both members
    and carries the staff's note, for OEM staff and services only."""
    if t.kind in _MERGE_KINDS and caller.kind not in _STAFF:
        return replace(t, reason=MERGE_NOTE)
    return t


def vehicle_shown(v: VehicleRecord, caller: Caller, viewer_member: str) -> VehicleRecord:
    """A car with its history; other people's member ids only for OEM staff and services."""
    if caller.kind in _STAFF:
        return v

    def who(member_id: str) -> str:
        return member_id if member_id == viewer_member else ""

    return replace(
        v,
        owner_id=who(v.owner_id),
        history=tuple(replace(h, member_id=who(h.member_id)) for h in v.history),
    )

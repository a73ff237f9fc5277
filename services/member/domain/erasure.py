"""Erasure on request (PIPL art. 47): personal data becomes irreversible tombstones.

A tombstone is "erased-" plus 128 random bits. It is not derived from the erased value
(no hash of a mobile: 11-digit numbers are trivially brute-forced), so nothing can lead
back to the person, and it is unique, so the identity index never collides. What
accounting and the vehicle's life need stays: ledger amounts (the remaining balance is
forfeited by a ledger entry, so balance = ledger sum still holds), VIN ownership history
under the member's pseudonymous id, consent history as proof. Erasing twice changes
nothing. Request ids stay (a retry must still not apply twice), their fingerprints are
replaced by `erased_fingerprint`.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from services.member.domain.tiers import TierChangeDecision

TOMBSTONE_PREFIX = "erased-"
# The reason of the forfeit entry and of the tier change erasure books.
REASON = "member erased"
# The profile of an erased member (and of the members merged into it: the same person).
BLANK_PROFILE = {"display_name": "", "city": "", "preferred_dealer_id": ""}


def tombstone(token_hex: Callable[[int], str] = secrets.token_hex) -> str:
    """A fresh random tombstone value."""
    return TOMBSTONE_PREFIX + token_hex(16)


def is_tombstone(value: str) -> bool:
    """True for a value that erasure wrote."""
    return value.startswith(TOMBSTONE_PREFIX)


@dataclass(frozen=True, slots=True)
class ErasurePlan:
    """What erasing a member does, decided before touching storage."""

    already_erased: bool
    identity_tombstones: tuple[tuple[int, str], ...]  # (identity row id, tombstone)
    forfeit_points: int
    release_vins: tuple[str, ...]
    tier_change: TierChangeDecision | None = None


def plan(
    *,
    already_erased: bool,
    identity_ids: list[int],
    balance: int,
    owned_vins: list[str],
    tier: str = "",
    token_hex: Callable[[int], str] = secrets.token_hex,
) -> ErasurePlan:
    """The erasure of one member: a tombstone per identity, forfeit of the balance (after
    expiry), release of the cars they own, the end of their tier. Nothing at all if
    already erased (idempotent)."""
    if already_erased:
        return ErasurePlan(True, (), 0, ())
    return ErasurePlan(
        False,
        tuple((i, tombstone(token_hex)) for i in identity_ids),
        max(balance, 0),
        tuple(owned_vins),
        TierChangeDecision(tier, "", REASON) if tier else None,
    )


def erased_fingerprint(method: str, member_id: str) -> str:
    """What an erased member's request ids keep in place of their fingerprints (hashes of
    requests that carried personal data): a hash of the method and the member id only, so
    a retry naming the same member still matches and a reuse naming another does not."""
    return hashlib.sha256(f"erased\0{method}\0{member_id}".encode()).hexdigest()


# The services that hold a member's personal data and answer MemberErased when they have
# erased it; the erasure is done everywhere when each has answered (member answers itself).
ERASING_SERVICES = ("member", "lead", "sales")


@dataclass(frozen=True, slots=True)
class ErasureReceipt:
    """One service's word that it erased the member: how many of its records, and when."""

    service: str
    items: int
    done_time: datetime


def pending_services(receipts: Sequence[ErasureReceipt]) -> list[str]:
    """The services that have not answered yet, in `ERASING_SERVICES` order."""
    done = {r.service for r in receipts}
    return [s for s in ERASING_SERVICES if s not in done]


@dataclass(frozen=True, slots=True)
class ErasureStatus:
    """How far an erasure has reached: when member erased (None: never), who has done it,
    who has not answered yet."""

    erase_time: datetime | None
    done: tuple[ErasureReceipt, ...]
    pending: tuple[str, ...]


def status(receipts: Sequence[ErasureReceipt]) -> ErasureStatus:
    """The status the receipts say; nothing is pending before member itself erased."""
    own = next((r for r in receipts if r.service == "member"), None)
    if own is None:
        return ErasureStatus(None, (), ())
    return ErasureStatus(own.done_time, tuple(receipts), tuple(pending_services(receipts)))

"""Merging two members who turned out to be one person (OEM staff decide it).

The winner takes over everything of the loser: live identities, the cars the loser owns
now, unspent points lot by lot (each keeps its expiry and its original earn time, so it
counts for the winner's tier exactly as long as it counted for the loser's), dealer
relations the winner lacks and a copy of the consent history; the winner's profile
fields that are empty take the loser's. The loser becomes MERGED with a pointer to the
winner (members merged into the loser earlier point straight at the winner), and is read
but never changed again. Due lots of both are expired first.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from services.member.domain import consent, ledger, profile, relations
from services.member.domain.consent import ConsentEvent
from services.member.domain.ledger import Entry
from services.member.domain.model import MemberRow
from services.member.domain.relations import DealerRelation


@dataclass(frozen=True, slots=True)
class MergePlan:
    """What a merge books and moves, decided before touching storage."""

    note: str  # the reason of both ledger entries (names both members, with the staff's)
    merge_out: Entry | None  # the loser's unspent points leave it (None: it had none)
    merge_in: tuple[Entry, ...]  # one credit per open lot of the loser, for the winner
    winner_settled: int  # the balances the entries are booked on (due lots expired)
    loser_settled: int
    winner_balance: int  # the balances afterwards
    loser_balance: int
    winner_next_expiry: datetime | None
    winner_profile: dict[str, str]
    relations: tuple[DealerRelation, ...]  # the loser's that the winner lacks
    consents: tuple[ConsentEvent, ...]  # copies of the loser's history for the winner


def plan(
    *,
    winner: MemberRow,
    loser: MemberRow,
    winner_balance: int,
    loser_balance: int,
    winner_entries: Sequence[Entry],
    loser_entries: Sequence[Entry],
    winner_relations: Sequence[DealerRelation],
    loser_relations: Sequence[DealerRelation],
    loser_consents: Sequence[ConsentEvent],
    reason: str,
    now: datetime,
    new_id: Callable[[], str],
) -> MergePlan:
    """The merge of `loser` into `winner` (`rules.check_merge` and `rules.require_active`
    passed): both locked, with their due lots already expired (the balances and ledgers
    given are those after that)."""
    out, ins = ledger.carry_over(loser_entries, now, new_id)
    note = f"merged {loser.id} into {winner.id}" + (f": {reason}" if reason else "")
    return MergePlan(
        note=note,
        merge_out=out,
        merge_in=tuple(ins),
        winner_settled=winner_balance,
        loser_settled=loser_balance,
        winner_balance=winner_balance + sum(e.points for e in ins),
        loser_balance=loser_balance + (out.points if out is not None else 0),
        winner_next_expiry=ledger.next_expiry([*winner_entries, *ins]),
        winner_profile=profile.merged(winner, loser),
        relations=tuple(relations.missing(loser_relations, winner_relations)),
        consents=tuple(consent.merge_copies(loser_consents, winner.id)),
    )

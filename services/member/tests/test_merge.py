"""Merging two members, decided on plain data (domain/merge.py): what the winner takes, the
ledger entries that carry the loser's lots over, the relations and consents it copies."""

from __future__ import annotations

import itertools
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from services.member.domain import ledger, merge, profile, relations
from services.member.domain.consent import Action, Channel, ConsentEvent, Purpose
from services.member.domain.ledger import EntryKind
from services.member.domain.model import MemberRow
from services.member.domain.qualifying import QualifyingCache
from services.member.domain.relations import DealerRelation, Relation
from services.member.domain.rules import MemberState

T0 = datetime(2025, 1, 31, 9, tzinfo=UTC)


def row(member_id: str, **kw: object) -> MemberRow:
    base = MemberRow(
        id=member_id,
        state=MemberState.ACTIVE,
        merged_into="",
        display_name="",
        city="",
        preferred_dealer_id="",
        balance=0,
        tier="",
        next_expiry=None,
        cache=QualifyingCache(0, T0, None),
        create_time=T0,
        create_actor="service:test",
        update_time=T0,
        update_actor="service:test",
        erase_time=None,
    )
    return replace(base, **kw)  # type: ignore[arg-type]


def ids() -> itertools.count[int]:
    return itertools.count(1)


def consent(member_id: str, seq: int, source: str, action: Action = Action.GRANT) -> ConsentEvent:
    return ConsentEvent(
        member_id, Purpose.MARKETING_SMS, Channel.APP, action, T0, source, "customer:x", seq
    )


def test_the_winner_takes_the_losers_lots_with_their_expiry_and_earn_time() -> None:
    counter = ids()
    earned = T0 - timedelta(days=300)
    loser_ledger = [
        ledger.earn("l1", 300, earned),
        ledger.earn("l2", 200, T0 - timedelta(days=10)),
        ledger.redeem("l3", 500, 100, T0 - timedelta(days=5)),  # takes l1's first
    ]
    winner_ledger = [ledger.earn("w1", 50, T0 - timedelta(days=1), expiry_months=1)]
    plan = merge.plan(
        winner=row("m_w", display_name="Li Lei", balance=50),
        loser=row("m_l", display_name="Lei Li", city="Hangzhou", preferred_dealer_id="D7"),
        winner_balance=50,
        loser_balance=400,
        winner_entries=winner_ledger,
        loser_entries=loser_ledger,
        winner_relations=[],
        loser_relations=[],
        loser_consents=[],
        reason="same person",
        now=T0,
        new_id=lambda: f"x{next(counter)}",
    )
    assert plan.note == "merged m_l into m_w: same person"
    assert plan.merge_out is not None
    assert (plan.merge_out.kind, plan.merge_out.points) == (EntryKind.MERGE_OUT, -400)
    ins = [(e.kind, e.points, e.expire_at, e.earned_at) for e in plan.merge_in]
    assert ins == [
        (EntryKind.MERGE_IN, 200, ledger.add_months(earned, 24), earned),
        (
            EntryKind.MERGE_IN,
            200,
            ledger.add_months(T0 - timedelta(days=10), 24),
            T0 - timedelta(days=10),
        ),
    ]
    assert (plan.winner_settled, plan.loser_settled) == (50, 400)
    assert (plan.winner_balance, plan.loser_balance) == (450, 0)
    # The winner's own lot (one month) still expires first.
    assert plan.winner_next_expiry == ledger.add_months(T0 - timedelta(days=1), 1)
    # The winner keeps its name; empty fields take the loser's.
    assert plan.winner_profile == {
        "display_name": "Li Lei",
        "city": "Hangzhou",
        "preferred_dealer_id": "D7",
    }


def test_a_loser_without_points_books_nothing_and_the_note_has_no_reason() -> None:
    plan = merge.plan(
        winner=row("m_w"),
        loser=row("m_l"),
        winner_balance=0,
        loser_balance=0,
        winner_entries=[],
        loser_entries=[],
        winner_relations=[],
        loser_relations=[],
        loser_consents=[],
        reason="",
        now=T0,
        new_id=lambda: "never",
    )
    assert plan.note == "merged m_l into m_w"
    assert plan.merge_out is None and plan.merge_in == ()
    assert (plan.winner_balance, plan.loser_balance, plan.winner_next_expiry) == (0, 0, None)


def test_relations_the_winner_lacks_and_every_consent_are_copied() -> None:
    lead_d1 = DealerRelation("D1", Relation.LEAD)
    service_d2 = DealerRelation("D2", Relation.SERVICE, "LZ91AE3A4J3LSA560")
    lead_d3 = DealerRelation("D3", Relation.LEAD)
    events = [consent("m_l", 9, "app", Action.WITHDRAW), consent("m_l", 4, "x" * 128)]
    plan = merge.plan(
        winner=row("m_w"),
        loser=row("m_l"),
        winner_balance=0,
        loser_balance=0,
        winner_entries=[],
        loser_entries=[],
        winner_relations=[lead_d1],
        loser_relations=[service_d2, lead_d1, lead_d3],
        loser_consents=events,
        reason="",
        now=T0,
        new_id=lambda: "never",
    )
    assert plan.relations == (service_d2, lead_d3)
    # Copies in recording order, for the winner, with their decision time, source marked.
    assert [(e.member_id, e.action, e.occur_time, e.seq) for e in plan.consents] == [
        ("m_w", Action.GRANT, T0, 0),
        ("m_w", Action.WITHDRAW, T0, 0),
    ]
    assert plan.consents[0].source == ("merge:" + "x" * 128)[:128]
    assert plan.consents[1].source == "merge:app"


def test_profile_and_relation_helpers() -> None:
    winner, loser = row("a", city="Suzhou"), row("b", city="Hangzhou", display_name="B")
    assert profile.merged(winner, loser) == {
        "display_name": "B",
        "city": "Suzhou",
        "preferred_dealer_id": "",
    }
    ours = [DealerRelation("D1", Relation.LEAD)]
    assert relations.missing(ours, ours) == []
    assert relations.missing([DealerRelation("D1", Relation.SERVICE, "V")], ours) == [
        DealerRelation("D1", Relation.SERVICE, "V")
    ]

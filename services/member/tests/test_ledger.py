"""The points ledger: FIFO expiry, never negative, balance = ledger sum (hypothesis)."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mesh.errors import FailedPrecondition
from services.member.domain import ledger
from services.member.domain.errors import INSUFFICIENT_POINTS
from services.member.domain.ledger import Entry, EntryKind

T0 = datetime(2024, 1, 31, 12, tzinfo=UTC)


def ids() -> itertools.count[int]:
    return itertools.count(1)


def test_add_months_clamps_month_end() -> None:
    assert ledger.add_months(T0, 1) == datetime(2024, 2, 29, 12, tzinfo=UTC)
    assert ledger.add_months(T0, 24) == datetime(2026, 1, 31, 12, tzinfo=UTC)
    assert ledger.add_months(T0, -12) == datetime(2023, 1, 31, 12, tzinfo=UTC)


def test_earn_expires_after_24_months_by_default() -> None:
    e = ledger.earn("e1", 100, T0)
    assert e.expire_at == datetime(2026, 1, 31, 12, tzinfo=UTC)
    assert ledger.earn("e2", 1, T0, expiry_months=6).expire_at == datetime(
        2024, 7, 31, 12, tzinfo=UTC
    )


def test_redeem_takes_oldest_lot_first_so_expiry_takes_only_the_rest() -> None:
    counter = ids()
    new_id = lambda: f"x{next(counter)}"  # noqa: E731
    entries = [ledger.earn("a", 100, T0), ledger.earn("b", 100, T0 + timedelta(days=30))]
    entries.append(ledger.redeem("r", ledger.balance(entries), 150, T0 + timedelta(days=40)))
    lots = ledger.open_lots(entries)
    assert [(lot.id, lot.remaining) for lot in lots] == [("b", 50)]
    # At a's expiry nothing is left of it; at b's, its 50 go.
    assert ledger.expire(entries, ledger.add_months(T0, 24), new_id) == []
    due = ledger.expire(entries, ledger.add_months(T0 + timedelta(days=30), 24), new_id)
    assert [(e.kind, e.points, e.lot_id) for e in due] == [(EntryKind.EXPIRE, -50, "b")]
    assert ledger.balance([*entries, *due]) == 0


def test_redeem_more_than_balance_is_refused() -> None:
    with pytest.raises(FailedPrecondition) as e:
        ledger.redeem("r", 10, 11, T0)
    assert e.value.reason == INSUFFICIENT_POINTS == "INSUFFICIENT_POINTS"


def test_carry_over_keeps_expiry_and_earn_time() -> None:
    counter = ids()
    new_id = lambda: f"m{next(counter)}"  # noqa: E731
    entries = [ledger.earn("a", 100, T0), ledger.earn("b", 30, T0 + timedelta(days=1))]
    entries.append(ledger.redeem("r", 130, 120, T0 + timedelta(days=2)))
    out, ins = ledger.carry_over(entries, T0 + timedelta(days=3), new_id)
    assert out is not None and out.points == -10
    assert [(e.points, e.expire_at, e.earned_at) for e in ins] == [
        (10, entries[1].expire_at, entries[1].earned_at)
    ]
    assert ledger.balance([*entries, out]) == 0
    assert ledger.carry_over([], T0, new_id) == (None, [])


def test_forfeit_closes_the_balance() -> None:
    f = ledger.forfeit("f", 42, T0)
    assert f is not None and f.points == -42 and f.kind is EntryKind.FORFEIT
    assert ledger.forfeit("f", 0, T0) is None


# One step of a random history: earn n, redeem n, or let days pass (expiring what is due).
STEP = st.one_of(
    st.tuples(st.just("earn"), st.integers(1, 1000)),
    st.tuples(st.just("redeem"), st.integers(1, 1500)),
    st.tuples(st.just("wait"), st.integers(1, 400)),
    st.tuples(st.just("merge_out"), st.just(0)),
)


@settings(max_examples=300, deadline=None)
@given(steps=st.lists(STEP, max_size=60), months=st.integers(1, 24))
def test_any_history_keeps_balance_equal_to_sum_and_never_negative(
    steps: list[tuple[str, int]], months: int
) -> None:
    counter = ids()
    new_id = lambda: f"t{next(counter)}"  # noqa: E731
    entries: list[Entry] = []
    now = T0
    for op, n in steps:
        # Expiry always runs first, as the store does in every write transaction.
        entries += ledger.expire(entries, now, new_id)
        bal = ledger.balance(entries)
        if op == "earn":
            entries.append(ledger.earn(new_id(), n, now, months))
        elif op == "redeem":
            if n > bal:
                with pytest.raises(FailedPrecondition) as refused:
                    ledger.redeem(new_id(), bal, n, now)
                assert refused.value.reason == INSUFFICIENT_POINTS
            else:
                entries.append(ledger.redeem(new_id(), bal, n, now))
        elif op == "merge_out":
            out, ins = ledger.carry_over(entries, now, new_id)
            assert sum(e.points for e in ins) == bal
            if out is not None:
                entries.append(out)
        else:
            now += timedelta(days=n)
        lots = ledger.open_lots(entries)
        bal = ledger.balance(entries)
        assert bal == sum(e.points for e in entries)
        assert bal >= 0
        assert bal == sum(lot.remaining for lot in lots)
        assert all(lot.remaining > 0 for lot in lots)
    # After a final expiry pass nothing due remains open.
    entries += ledger.expire(entries, now, new_id)
    assert all(lot.expire_at > now for lot in ledger.open_lots(entries))
    assert ledger.balance(entries) >= 0

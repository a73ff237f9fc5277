"""Loan schedules, to the fen: worked figures, the terms' bounds, and properties."""

from __future__ import annotations

import dataclasses
from decimal import ROUND_HALF_UP, Context, localcontext
from decimal import Decimal as D

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mesh.errors import InvalidArgument
from services.sales.domain.financing import (
    Instalment,
    LoanTerms,
    Method,
    Schedule,
    schedule,
    validate_terms,
)
from services.sales.domain.money import fen

EI, EP = Method.EQUAL_INSTALMENT, Method.EQUAL_PRINCIPAL


def test_worked_equal_instalment() -> None:
    s = schedule(LoanTerms(D("140000.00"), 36, D("0.045"), EI))
    assert s.first_payment == D("4164.57")
    assert s.instalments[0] == Instalment(
        1, D("4164.57"), D("3639.57"), D("525.00"), D("136360.43")
    )
    assert s.total_interest == D("9924.50")
    assert s.total_paid == D("149924.50")
    assert all(i.payment == D("4164.57") for i in s.instalments[:-1])
    assert s.instalments[-1] == Instalment(36, D("4164.55"), D("4148.99"), D("15.56"), D("0.00"))
    assert s.last_payment == D("4164.55")


def test_worked_zero_percent_last_absorbs_rounding() -> None:
    s = schedule(LoanTerms(D("140000.00"), 36, D("0"), EI))
    assert s.first_payment == D("3888.89")
    assert all(i.payment == D("3888.89") and i.interest == 0 for i in s.instalments[:-1])
    assert s.last_payment == D("3888.85")  # 140,000 - 35 x 3,888.89
    assert (s.total_interest, s.total_paid) == (D("0.00"), D("140000.00"))


def test_equal_principal() -> None:
    s = schedule(LoanTerms(D("120000.00"), 12, D("0.06"), EP))
    assert s.instalments[0] == Instalment(
        1, D("10600.00"), D("10000.00"), D("600.00"), D("110000.00")
    )
    assert s.instalments[1] == Instalment(
        2, D("10550.00"), D("10000.00"), D("550.00"), D("100000.00")
    )
    assert s.instalments[-1] == Instalment(12, D("10050.00"), D("10000.00"), D("50.00"), D("0.00"))
    # Interest on 120k, 110k, ... 10k at 0.5% a month.
    assert s.total_interest == D("3900.00")


def test_balloon_is_paid_with_the_last_instalment() -> None:
    s = schedule(LoanTerms(D("140000.00"), 36, D("0.045"), EI, balloon=D("40000.00")))
    # Amortises 140,000 - 40,000 / 1.00375^36 = 105,042.54: 3,124.69 a month, then the
    # balloon with the last (a float check: 105042.54 * 0.00375 / (1 - 1.00375**-36)).
    assert s.first_payment == D("3124.69")
    assert s.last_payment == D("43124.78")
    assert s.total_interest == D("12488.93")
    assert s.instalments[-2].balance > D("40000.00")
    last = s.instalments[-1]
    assert last.principal > D("40000.00") and last.balance == 0
    assert s.total_paid == D("140000.00") + s.total_interest
    zero = schedule(LoanTerms(D("100000.00"), 12, D("0"), EP, balloon=D("40000.00")))
    assert zero.first_payment == D("5000.00")
    assert zero.last_payment == D("45000.00")


def test_a_tiny_loan_never_overpays() -> None:
    # fen(1 / 60) = 0.02 would repay 1.00 after 50 months: the rest pay nothing.
    s = schedule(LoanTerms(D("1.00"), 60, D("0"), EI))
    assert sum(i.principal for i in s.instalments) == D("1.00")
    assert min(i.balance for i in s.instalments) == 0
    assert all(i.principal >= 0 for i in s.instalments)


BAD = LoanTerms(D("100000.00"), 36, D("0.045"), EI)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"months": 11}, "months"),
        ({"months": 61}, "months"),
        ({"months": True}, "months"),
        ({"apr": D("-0.01")}, "apr"),
        ({"apr": D("0.37")}, "apr"),
        ({"apr": D("0.04499999999999999833")}, "apr"),  # a float's digits
        ({"apr": D("NaN")}, "apr"),
        ({"method": "EQUAL"}, "method"),
        ({"principal": D("0")}, "principal"),
        ({"principal": D("100.001")}, "principal"),
        ({"principal": D("100000000.01")}, "principal"),
        ({"balloon": D("100000.00")}, "balloon"),
        ({"balloon": D("-1")}, "balloon"),
        ({"balloon": D("0.001")}, "balloon"),
    ],
)
def test_terms_out_of_bounds_name_their_field(change: dict[str, object], field: str) -> None:
    terms = dataclasses.replace(BAD, **change)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument) as caught:
        validate_terms(terms, "quote.financing")
    assert caught.value.field_violations[0].field == f"quote.financing.{field}"


def test_bounds_are_inclusive() -> None:
    for months in (12, 60):
        validate_terms(LoanTerms(D("0.01"), months, D("0.36"), EP), "f")
    validate_terms(LoanTerms(D("100000000"), 12, D("0.000001"), EI, D("99999999.99")), "f")


def _check(terms: LoanTerms, s: Schedule) -> None:
    """Every line is fen-exact and consistent; the totals are exact."""
    r = terms.apr / 12
    lines = s.instalments
    assert len(lines) == terms.months
    assert [i.month for i in lines] == list(range(1, terms.months + 1))
    balance = terms.principal
    for line in lines:
        assert line.interest == fen(balance * r)
        assert line.payment == line.principal + line.interest
        assert line.balance == balance - line.principal
        assert line.balance >= 0
        assert line.payment.as_tuple().exponent == -2
        balance = line.balance
        if line.month < terms.months:
            assert line.balance >= terms.balloon
    assert lines[-1].balance == 0
    assert sum(i.principal for i in lines) == terms.principal
    assert s.total_interest == sum(i.interest for i in lines)
    assert s.total_paid == sum(i.payment for i in lines) == terms.principal + s.total_interest
    assert s.first_payment == lines[0].payment and s.last_payment == lines[-1].payment


fens = st.integers(min_value=100, max_value=200_000_000)  # 1.00 .. 2,000,000.00


@st.composite
def loan_terms(draw: st.DrawFn) -> LoanTerms:
    principal = draw(fens)
    balloon = draw(st.one_of(st.just(0), st.integers(0, principal - 1)))
    apr = draw(st.one_of(st.just(0), st.integers(0, 2000)))  # 0 .. 20% in 0.01% steps
    return LoanTerms(
        principal=D(principal).scaleb(-2),
        months=draw(st.integers(12, 60)),
        apr=D(apr).scaleb(-4),
        method=draw(st.sampled_from(Method)),
        balloon=D(balloon).scaleb(-2),
    )


@settings(max_examples=400, deadline=None)
@given(loan_terms())
def test_properties(terms: LoanTerms) -> None:
    s = schedule(terms)
    _check(terms, s)
    if terms.method is EI and terms.principal >= 1000:
        # Real-sized loans pay the same every month but the last.
        assert len({i.payment for i in s.instalments[:-1]}) == 1


@settings(max_examples=100, deadline=None)
@given(loan_terms())
def test_equal_principal_pays_less_interest(terms: LoanTerms) -> None:
    ei = schedule(LoanTerms(terms.principal, terms.months, terms.apr, EI, terms.balloon))
    ep = schedule(LoanTerms(terms.principal, terms.months, terms.apr, EP, terms.balloon))
    # Repaying principal sooner never costs more (allowing the fen roundings).
    assert ep.total_interest <= ei.total_interest + D("0.01") * terms.months


@settings(max_examples=300, deadline=None)
@given(loan_terms(), st.integers(0, 360_000))
def test_every_line_is_the_exact_figure_rounded_half_up_once(terms: LoanTerms, micro: int) -> None:
    # Any rate of the allowed 6 places (3.3333% repeats forever once divided by 12): each
    # month's interest is fen(balance x apr / 12) of the exact quotient, and the payment the
    # annuity formula's exact value rounded once, as Decimal at 60 digits computes them.
    terms = dataclasses.replace(terms, apr=D(micro).scaleb(-6))
    s = schedule(terms)
    with localcontext(Context(prec=60, rounding=ROUND_HALF_UP)):
        r = terms.apr / 12
        balance = terms.principal
        for line in s.instalments:
            assert line.interest == (balance * r).quantize(D("0.01"))
            balance -= line.principal
        first = s.instalments[0]
        if terms.method is EI and r and first.principal < terms.principal - terms.balloon:
            g = (1 + r) ** terms.months  # (a tiny loan's first month may pay it all off)
            pay = (r * (terms.principal * g - terms.balloon) / (g - 1)).quantize(D("0.01"))
            assert first.payment == pay

"""The purchase-tax table and its arithmetic, on plain data."""

from __future__ import annotations

import dataclasses
from datetime import date
from decimal import Decimal as D

import pytest

from mesh.errors import FailedPrecondition
from services.sales.domain import errors
from services.sales.domain.money import fen
from services.sales.domain.tax import (
    RULES,
    PurchaseTax,
    TaxRule,
    purchase_tax,
    rule_for,
    validate_rules,
)


def test_the_table_is_continuous_and_open_ended() -> None:
    validate_rules(RULES)
    assert RULES[0].start == date(2014, 9, 1)
    assert RULES[-1].end is None


def test_a_gap_an_overlap_or_an_early_open_end_is_refused() -> None:
    a, b, c = RULES[3], RULES[4], RULES[5]
    with pytest.raises(ValueError, match="gap or an overlap"):
        validate_rules((a, dataclasses.replace(b, start=date(2026, 1, 2)), c))
    with pytest.raises(ValueError, match="gap or an overlap"):
        validate_rules((a, dataclasses.replace(b, start=date(2025, 12, 31)), c))
    with pytest.raises(ValueError, match="open-ended"):
        validate_rules((dataclasses.replace(a, end=None), b))
    with pytest.raises(ValueError, match="ends on or before"):
        validate_rules((dataclasses.replace(a, end=a.start),))
    with pytest.raises(ValueError, match="outside"):
        validate_rules((dataclasses.replace(c, nev_payable_share=D("1.5")),))
    with pytest.raises(ValueError, match="no tax rules"):
        validate_rules(())


@pytest.mark.parametrize(
    ("day", "share", "cap", "vat"),
    [
        (date(2014, 9, 1), D("0"), None, D("0.17")),
        (date(2018, 4, 30), D("0"), None, D("0.17")),
        (date(2018, 5, 1), D("0"), None, D("0.16")),
        (date(2019, 4, 1), D("0"), None, D("0.13")),
        (date(2023, 12, 31), D("0"), None, D("0.13")),
        (date(2024, 1, 1), D("0"), D("30000"), D("0.13")),
        (date(2025, 12, 31), D("0"), D("30000"), D("0.13")),
        (date(2026, 1, 1), D("0.5"), D("15000"), D("0.13")),
        (date(2027, 12, 31), D("0.5"), D("15000"), D("0.13")),
        (date(2028, 1, 1), D("1"), None, D("0.13")),
        (date(2099, 1, 1), D("1"), None, D("0.13")),
    ],
)
def test_the_rule_of_a_day(day: date, share: D, cap: D | None, vat: D) -> None:
    rule = rule_for(day)
    assert (rule.rate, rule.vat_rate, rule.nev_payable_share, rule.nev_reduction_cap) == (
        D("0.10"),
        vat,
        share,
        cap,
    )


def test_a_day_before_the_table_has_no_rule() -> None:
    with pytest.raises(FailedPrecondition) as caught:
        rule_for(date(2014, 8, 31))
    assert caught.value.reason == errors.NO_TAX_RULE
    with pytest.raises(FailedPrecondition):
        purchase_tax(D("100000.00"), date(2010, 1, 1), nev_listed=False)


def test_a_new_policy_is_a_new_row() -> None:
    last = RULES[-1]
    rules = (
        *RULES[:-1],
        dataclasses.replace(last, end=date(2030, 1, 1)),
        TaxRule(date(2030, 1, 1), None, D("0.05"), D("0.13"), D("1"), None),
    )
    validate_rules(rules)
    assert purchase_tax(D("226000"), date(2030, 1, 1), False, rules).due == D("10000.00")
    assert purchase_tax(D("226000"), date(2029, 12, 31), False, rules).due == D("20000.00")


def test_worked_nev_2026_pays_half() -> None:
    assert purchase_tax(D("226000"), date(2026, 1, 1), nev_listed=True) == PurchaseTax(
        base=D("200000.00"), full_tax=D("20000.00"), reduction=D("10000.00"), due=D("10000.00")
    )


def test_worked_nev_2026_reduction_capped_at_15000() -> None:
    assert purchase_tax(D("452000"), date(2027, 6, 30), nev_listed=True) == PurchaseTax(
        base=D("400000.00"), full_tax=D("40000.00"), reduction=D("15000.00"), due=D("25000.00")
    )


def test_nev_either_side_of_2026() -> None:
    # 2025: exempt, up to 30,000 spared.
    assert purchase_tax(D("226000"), date(2025, 12, 31), True).due == D("0.00")
    over = purchase_tax(D("452000"), date(2025, 12, 31), True)
    assert (over.reduction, over.due) == (D("30000.00"), D("10000.00"))
    # 2026: half, up to 15,000 spared.
    assert purchase_tax(D("226000"), date(2026, 1, 1), True).due == D("10000.00")


def test_nev_either_side_of_2028() -> None:
    assert purchase_tax(D("226000"), date(2027, 12, 31), True).due == D("10000.00")
    after = purchase_tax(D("226000"), date(2028, 1, 1), True)
    assert (after.reduction, after.due) == (D("0.00"), D("20000.00"))


def test_nev_before_2024_is_exempt_without_cap() -> None:
    tax = purchase_tax(D("1130000"), date(2023, 12, 31), True)
    assert (tax.full_tax, tax.reduction, tax.due) == (D("100000.00"), D("100000.00"), D("0.00"))


def test_2017_invoices_carry_17_percent_vat() -> None:
    tax = purchase_tax(D("117000"), date(2017, 1, 1), False)
    assert (tax.base, tax.due) == (D("100000.00"), D("10000.00"))


@pytest.mark.parametrize("day", [date(2024, 6, 1), date(2026, 6, 1), date(2028, 6, 1)])
def test_a_fuel_car_or_an_unlisted_nev_pays_in_full(day: date) -> None:
    tax = purchase_tax(D("226000"), day, nev_listed=False)
    assert tax == PurchaseTax(D("200000.00"), D("20000.00"), D("0.00"), D("20000.00"))


def test_each_figure_is_rounded_to_the_fen_once() -> None:
    # 199,999.99 / 1.13 = 176,991.141...; x 10% = 17,699.1141 -> 17,699.11; half 8,849.555.
    tax = purchase_tax(D("199999.99"), date(2026, 3, 1), True)
    assert tax.base == D("176991.14")
    assert tax.full_tax == D("17699.11")
    assert tax.reduction == D("8849.56")  # half up of 8,849.555
    assert tax.due == D("8849.55")
    assert tax.due + tax.reduction == tax.full_tax
    assert fen(D("0.005")) == D("0.01") and fen(D("0.0049")) == D("0.00")


def test_a_free_car_owes_no_tax() -> None:
    assert purchase_tax(D("0.00"), date(2026, 3, 1), False).due == D("0.00")

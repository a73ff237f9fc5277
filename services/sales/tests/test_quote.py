"""Quote arithmetic and its request checks, on plain data."""

from __future__ import annotations

import dataclasses
import timeit
from datetime import date
from decimal import Decimal as D

import pytest

from mesh.errors import FailedPrecondition, InvalidArgument
from services.sales.domain import errors
from services.sales.domain.financing import Method
from services.sales.domain.money import parse_amount
from services.sales.domain.quote import (
    Discount,
    DiscountKind,
    Extra,
    ExtraKind,
    LoanRequest,
    PricedOption,
    QuoteInput,
    calculate,
)
from services.sales.domain.tax import PurchaseTax

CASH = QuoteInput(
    trim_price=D("219900"),
    options=(
        PricedOption("PAINT-BLU", "Ocean blue", D("4000")),
        PricedOption("SEAT-VENT", "Ventilated seats", D("8000")),
    ),
    discounts=(
        Discount(DiscountKind.DEALER, "spring offer", D("3000")),
        Discount(DiscountKind.TRADE_IN, "trade-in subsidy", D("2900")),
    ),
    extras=(
        Extra(ExtraKind.COMPULSORY_INSURANCE, D("950")),
        Extra(ExtraKind.COMMERCIAL_INSURANCE, D("4200")),
        Extra(ExtraKind.PLATE_FEE, D("500")),
    ),
    nev_listed=True,
    invoice_date=date(2026, 3, 1),
)
LOAN = dataclasses.replace(
    CASH,
    down_payment=D("86000"),
    loan=LoanRequest(months=36, apr=D("0.045"), method=Method.EQUAL_INSTALMENT),
)


def _field(q: QuoteInput) -> str:
    with pytest.raises(InvalidArgument) as caught:
        calculate(q)
    return caught.value.field_violations[0].field


def test_a_cash_quote() -> None:
    f = calculate(CASH)
    assert (f.options_total, f.list_price) == (D("12000.00"), D("231900.00"))
    assert (f.discount_total, f.invoice_price) == (D("5900.00"), D("226000.00"))
    assert f.tax == PurchaseTax(D("200000.00"), D("20000.00"), D("10000.00"), D("10000.00"))
    assert f.extras_total == D("5650.00")
    assert f.amount_due == D("241650.00")
    assert f.amount_due_at_signing == D("241650.00")
    assert (f.down_payment, f.financed_amount, f.schedule) == (None, None, None)


def test_a_financed_quote_finances_the_car_only() -> None:
    f = calculate(LOAN)
    assert f.amount_due == D("241650.00")
    assert (f.down_payment, f.financed_amount) == (D("86000.00"), D("140000.00"))
    assert f.schedule is not None
    assert (f.schedule.first_payment, f.schedule.total_interest) == (D("4164.57"), D("9924.50"))
    assert f.amount_due_at_signing == D("101650.00")  # down + tax 10,000 + extras 5,650


def test_zero_down_finances_the_whole_invoice() -> None:
    f = calculate(dataclasses.replace(LOAN, down_payment=None))
    assert (f.down_payment, f.financed_amount) == (D("0.00"), D("226000.00"))
    assert f.amount_due_at_signing == D("15650.00")


def test_a_fuel_car_pays_full_tax() -> None:
    f = calculate(dataclasses.replace(CASH, nev_listed=False))
    assert f.tax.due == D("20000.00")
    assert f.amount_due == D("251650.00")


def test_discounts_lower_the_tax_and_may_reach_the_list_price() -> None:
    free = (Discount(DiscountKind.COUPON, "lucky draw", D("231900")),)
    f = calculate(dataclasses.replace(CASH, discounts=free))
    assert (f.invoice_price, f.tax.due, f.amount_due) == (D("0.00"), D("0.00"), D("5650.00"))


def test_discounts_above_the_list_price_are_refused() -> None:
    too_much = (*CASH.discounts, Discount(DiscountKind.COUPON, "", D("226000.01")))
    assert _field(dataclasses.replace(CASH, discounts=too_much)) == "quote.discounts"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"trim_price": D("0")}, "quote.trim_price"),
        ({"trim_price": D("-1")}, "quote.trim_price"),
        ({"trim_price": D("1.001")}, "quote.trim_price"),
        (
            {"options": (*CASH.options, PricedOption("PAINT-BLU", "again", D("1")))},
            "quote.options[2].code",
        ),
        ({"options": (PricedOption(" ", "blank", D("1")),)}, "quote.options[0].code"),
        ({"options": (PricedOption("X", "x", D("-1")),)}, "quote.options[0].price"),
        ({"options": (PricedOption("X", "x", D("99999999")),)}, "quote.options"),
        (
            {"discounts": (CASH.discounts[0], Discount(DiscountKind.COUPON, "", D("0.001")))},
            "quote.discounts[1].amount",
        ),
        ({"discounts": (Discount(DiscountKind.DEALER, "", D("0")),)}, "quote.discounts[0].amount"),
        (
            {"extras": (*CASH.extras, Extra(ExtraKind.PLATE_FEE, D("1")))},
            "quote.extras[3].kind",
        ),
        ({"extras": (Extra(ExtraKind.PLATE_FEE, D("1E9")),)}, "quote.extras[0].amount"),
        ({"down_payment": D("1000")}, "quote.financing.down_payment"),
    ],
)
def test_bad_fields_are_named(change: dict[str, object], field: str) -> None:
    assert _field(dataclasses.replace(CASH, **change)) == field  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("down", "loan", "field"),
    [
        (D("226000"), LoanRequest(36, D("0.045"), Method.EQUAL_INSTALMENT), "down_payment"),
        (D("-1"), LoanRequest(36, D("0.045"), Method.EQUAL_INSTALMENT), "down_payment"),
        (None, LoanRequest(72, D("0.045"), Method.EQUAL_INSTALMENT), "months"),
        (None, LoanRequest(36, D("0.5"), Method.EQUAL_INSTALMENT), "apr"),
        (D("86000"), LoanRequest(36, D("0"), Method.EQUAL_PRINCIPAL, D("140000")), "balloon"),
    ],
)
def test_bad_financing_is_named(down: D | None, loan: LoanRequest, field: str) -> None:
    q = dataclasses.replace(CASH, down_payment=down, loan=loan)
    assert _field(q) == f"quote.financing.{field}"


def test_a_malformed_request_is_refused_before_the_tax_rule() -> None:
    old = dataclasses.replace(CASH, invoice_date=date(2010, 1, 1))
    with pytest.raises(FailedPrecondition) as caught:
        calculate(old)
    assert caught.value.reason == errors.NO_TAX_RULE
    assert _field(dataclasses.replace(old, trim_price=D("-1"))) == "quote.trim_price"


def test_parse_amount() -> None:
    assert str(parse_amount("x", D("5"))) == "5.00"
    assert str(parse_amount("x", D("1.100"))) == "1.10"
    assert str(parse_amount("x", D("-0"))) == "0.00"
    assert parse_amount("x", D("100000000")) == D("100000000")
    for bad in ("-0.01", "0.001", "100000000.01", "Infinity", "NaN"):
        with pytest.raises(InvalidArgument):
            parse_amount("x", D(bad))


def test_a_60_month_quote_is_fast() -> None:
    q = dataclasses.replace(LOAN, loan=LoanRequest(60, D("0.0388"), Method.EQUAL_INSTALMENT))
    seconds = min(timeit.repeat(lambda: calculate(q), number=50, repeat=3)) / 50
    assert seconds < 0.002  # ~80 µs here; generous for a loaded CI box

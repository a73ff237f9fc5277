"""Car-loan schedules: equal instalments (等额本息) or equal principal (等额本金), to the fen.

Each line is rounded once, half up: a month's interest is fen(balance x apr / 12) and the
principal part is what the payment leaves after it. The rounding drift goes to the last
instalment, which pays the remaining balance (with the balloon, if any) and its interest, so
the principal parts add up to the principal exactly and total paid = principal + interest.
Since the 2024-03-28 PBOC/NFRA notice lenders set the down-payment ratio (0% down allowed),
so the terms bound only the months, the rate and the balloon.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum

from services.sales.domain.errors import invalid
from services.sales.domain.money import FEN, MAX_AMOUNT, ZERO

MIN_MONTHS = 12
MAX_MONTHS = 60
# Above the 36% that Chinese courts protect (Supreme People's Court, 2020 lending rules).
MAX_APR = Decimal("0.36")
# 0.0001% steps: more digits means the rate went through a float.
APR_PLACES = 6
_APR_STEP = Decimal(1).scaleb(-APR_PLACES)


class Method(StrEnum):
    """How the loan is repaid."""

    EQUAL_INSTALMENT = "等额本息"  # the same payment every month
    EQUAL_PRINCIPAL = "等额本金"  # the same principal every month, interest falling


@dataclass(frozen=True, slots=True)
class LoanTerms:
    """A loan: `balloon` is a lump paid with the last instalment (尾款), below the principal."""

    principal: Decimal
    months: int
    apr: Decimal
    method: Method
    balloon: Decimal = ZERO


@dataclass(frozen=True, slots=True)
class Instalment:
    """One month: payment = principal + interest; balance is what is owed after it."""

    month: int
    payment: Decimal
    principal: Decimal
    interest: Decimal
    balance: Decimal


# One month in fen: (month, payment, principal, interest, balance).
Row = tuple[int, int, int, int, int]


@dataclass(frozen=True, slots=True)
class Schedule:
    """All instalments and their totals (total_paid = principal + total_interest exactly).
    The months are kept as integers of fen (`rows`), which a reply is built from directly;
    `instalments` gives them as `Decimal` yuan."""

    rows: tuple[Row, ...]
    total_interest: Decimal
    total_paid: Decimal
    first_payment: Decimal
    # Differs from the others by the rounding drift, and includes the balloon.
    last_payment: Decimal

    @property
    def instalments(self) -> tuple[Instalment, ...]:
        """The months as `Instalment`s of `Decimal` yuan."""
        return tuple(
            Instalment(m, _yuan(pay), _yuan(part), _yuan(i), _yuan(b))
            for m, pay, part, i, b in self.rows
        )


def validate_terms(terms: LoanTerms, field_prefix: str) -> None:
    """INVALID_ARGUMENT naming `{field_prefix}.months` (or `.apr`, `.method`, `.principal`,
    `.balloon`) when the terms are not a loan a lender offers."""
    months = terms.months
    if isinstance(months, bool) or not isinstance(months, int):
        raise invalid(f"{field_prefix}.months", "must be a whole number of months")
    if not MIN_MONTHS <= months <= MAX_MONTHS:
        raise invalid(f"{field_prefix}.months", f"must be {MIN_MONTHS} to {MAX_MONTHS}")
    apr = terms.apr
    if not apr.is_finite() or not ZERO <= apr <= MAX_APR:
        raise invalid(f"{field_prefix}.apr", f"must be 0 to {MAX_APR} (a yearly fraction)")
    if apr != apr.quantize(_APR_STEP):
        raise invalid(f"{field_prefix}.apr", f"must have at most {APR_PLACES} decimals")
    if not isinstance(terms.method, Method):
        raise invalid(f"{field_prefix}.method", "must be equal instalment or equal principal")
    principal = terms.principal
    if not principal.is_finite() or not ZERO < principal <= MAX_AMOUNT:
        raise invalid(f"{field_prefix}.principal", f"must be above 0 and at most {MAX_AMOUNT}")
    if principal != principal.quantize(FEN):
        raise invalid(f"{field_prefix}.principal", "must have at most 2 decimals")
    balloon = terms.balloon
    if not balloon.is_finite() or not ZERO <= balloon < principal:
        raise invalid(f"{field_prefix}.balloon", "must be at least 0 and below the financed amount")
    if balloon != balloon.quantize(FEN):
        raise invalid(f"{field_prefix}.balloon", "must have at most 2 decimals")


def schedule(terms: LoanTerms) -> Schedule:
    """The repayment schedule of `terms` (validated first; field paths under `financing`)."""
    validate_terms(terms, "financing")
    return schedule_of_valid(terms)


def schedule_of_valid(terms: LoanTerms) -> Schedule:
    """The schedule of terms `validate_terms` accepted (skips checking them again).

    In integers of fen, exactly: the monthly rate is apr / 12 = a / (12 x 10^6) with `a` the
    apr in millionths (at most 6 places, validated), so a month's interest fen(balance x
    apr / 12) is balance x a / (12 x 10^6) rounded half up by integer division, and so is
    the payment of the annuity formula: no per-month `Decimal` and no rounded powers."""
    p, b, n = _fen(terms.principal), _fen(terms.balloon), terms.months
    a = int(terms.apr.scaleb(APR_PLACES))
    if terms.method is Method.EQUAL_INSTALMENT:
        return _equal_instalment(p, b, n, a)
    return _equal_principal(p, b, n, a)


_YEAR = 12 * 10**APR_PLACES  # the denominator of a monthly rate of `a` millionths a year


def _half_up(num: int, den: int) -> int:
    """num / den rounded half up (away from zero), den > 0: `quantize(FEN, ROUND_HALF_UP)`
    of an exact quotient."""
    if num < 0:
        return -_half_up(-num, den)
    q, r = divmod(num, den)
    return q + (2 * r >= den)


def _fen(x: Decimal) -> int:
    return int(x.scaleb(2))  # exact: validated to whole fen


def _yuan(fen: int) -> Decimal:
    return Decimal(fen).scaleb(-2)


def _equal_instalment(p: int, b: int, n: int, a: int) -> Schedule:
    """Payment = fen(r (P g - B) / (g - 1)) with r = a / YEAR and g = (1 + r)^n, i.e.
    a (P (YEAR + a)^n - B YEAR^n) / (YEAR ((YEAR + a)^n - YEAR^n)) exactly: it amortises
    P - B/g, so the balance before the last month is about the balloon plus one payment."""
    if a:
        grown, base = (_YEAR + a) ** n, _YEAR**n
        pay = _half_up(a * (p * grown - b * base), _YEAR * (grown - base))
    else:
        pay = _half_up(p - b, n)
    rows: list[Row] = []
    balance, total_interest = p, 0
    for month in range(1, n):
        interest = _half_up(balance * a, _YEAR) if a else 0
        part = pay - interest
        room = balance - b  # the balloon stays owed until the last month
        payment = pay
        if part > room:  # tiny loans: rounding up the payment would overpay
            part = room
            payment = part + interest
        balance -= part
        total_interest += interest
        rows.append((month, payment, part, interest, balance))
    return _close(rows, p, n=n, balance=balance, a=a, total_interest=total_interest)


def _equal_principal(p: int, b: int, n: int, a: int) -> Schedule:
    """The same principal part fen((P - B) / n) every month, interest on the falling balance."""
    step = _half_up(p - b, n)
    rows: list[Row] = []
    balance, total_interest = p, 0
    for month in range(1, n):
        interest = _half_up(balance * a, _YEAR) if a else 0
        part = min(step, balance - b)
        balance -= part
        total_interest += interest
        rows.append((month, part + interest, part, interest, balance))
    return _close(rows, p, n=n, balance=balance, a=a, total_interest=total_interest)


def _close(
    rows: list[Row], p: int, *, n: int, balance: int, a: int, total_interest: int
) -> Schedule:
    """The last instalment pays off the balance (balloon included) with its interest."""
    interest = _half_up(balance * a, _YEAR) if a else 0
    rows.append((n, balance + interest, balance, interest, 0))
    total_interest += interest
    return Schedule(
        rows=tuple(rows),
        total_interest=_yuan(total_interest),
        total_paid=_yuan(p + total_interest),
        first_payment=_yuan(rows[0][1]),
        last_payment=_yuan(rows[-1][1]),
    )

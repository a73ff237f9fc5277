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
from decimal import ROUND_HALF_UP, Context, Decimal, localcontext
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
# Powers of (1 + r) over 60 months and balances up to 10^8 keep far more than 2 decimals;
# its rounding is the one every `quantize(FEN)` below rounds with.
_CTX = Context(prec=34, rounding=ROUND_HALF_UP)
_TWELVE = Decimal(12)


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


@dataclass(frozen=True, slots=True)
class Schedule:
    """All instalments and their totals (total_paid = principal + total_interest exactly)."""

    instalments: tuple[Instalment, ...]
    total_interest: Decimal
    total_paid: Decimal
    first_payment: Decimal
    # Differs from the others by the rounding drift, and includes the balloon.
    last_payment: Decimal


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
    """The schedule of terms `validate_terms` accepted (skips checking them again)."""
    with localcontext(_CTX):
        r = terms.apr / _TWELVE
        if terms.method is Method.EQUAL_INSTALMENT:
            return _equal_instalment(terms.principal, terms.balloon, terms.months, r)
        return _equal_principal(terms.principal, terms.balloon, terms.months, r)


def _equal_instalment(p: Decimal, b: Decimal, n: int, r: Decimal) -> Schedule:
    """Payment = fen(r (P g - B) / (g - 1)) with g = (1 + r)^n: it amortises P - B/g, so the
    balance before the last month is about the balloon plus one payment."""
    if r:
        g = (1 + r) ** n
        pay = (r * (p * g - b) / (g - 1)).quantize(FEN)
    else:
        pay = ((p - b) / n).quantize(FEN)
    lines: list[Instalment] = []
    balance = p
    total_interest = ZERO
    for month in range(1, n):
        interest = (balance * r).quantize(FEN) if r else ZERO
        part = pay - interest
        room = balance - b  # the balloon stays owed until the last month
        payment = pay
        if part > room:  # tiny loans: rounding up the payment would overpay
            part = room
            payment = part + interest
        balance -= part
        total_interest += interest
        lines.append(Instalment(month, payment, part, interest, balance))
    return _close(lines, p, n=n, balance=balance, r=r, total_interest=total_interest)


def _equal_principal(p: Decimal, b: Decimal, n: int, r: Decimal) -> Schedule:
    """The same principal part fen((P - B) / n) every month, interest on the falling balance."""
    step = ((p - b) / n).quantize(FEN)
    lines: list[Instalment] = []
    balance = p
    total_interest = ZERO
    for month in range(1, n):
        interest = (balance * r).quantize(FEN) if r else ZERO
        part = min(step, balance - b)
        balance -= part
        total_interest += interest
        lines.append(Instalment(month, part + interest, part, interest, balance))
    return _close(lines, p, n=n, balance=balance, r=r, total_interest=total_interest)


def _close(
    lines: list[Instalment],
    p: Decimal,
    *,
    n: int,
    balance: Decimal,
    r: Decimal,
    total_interest: Decimal,
) -> Schedule:
    """The last instalment pays off the balance (balloon included) with its interest."""
    interest = (balance * r).quantize(FEN) if r else ZERO
    last = Instalment(n, balance + interest, balance, interest, ZERO)
    lines.append(last)
    total_interest += interest
    return Schedule(
        instalments=tuple(lines),
        total_interest=total_interest,
        total_paid=p + total_interest,
        first_payment=lines[0].payment,
        last_payment=last.payment,
    )

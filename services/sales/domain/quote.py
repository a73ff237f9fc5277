"""The arithmetic of a quote: list price, discounts, invoice, purchase tax, extras, financing.

The invoice price (VAT included) is the list price (trim + options) less the discounts; the
purchase tax is computed on it; insurance and the plate fee are paid beside the car and are
not taxed; a loan finances the car only, so with financing the customer pays the down
payment, the tax and the extras at signing. Errors name the fields of a request whose quote
is `quote` (`quote.discounts[1].amount`, `quote.financing.months`), and a malformed request
is refused before any rule of the day (a tax rule) is looked up.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from enum import StrEnum

from services.sales.domain.errors import invalid
from services.sales.domain.financing import (
    LoanTerms,
    Method,
    Schedule,
    schedule_of_valid,
    validate_terms,
)
from services.sales.domain.money import MAX_AMOUNT, ZERO, parse_amount
from services.sales.domain.tax import PurchaseTax, purchase_tax

FIELD = "quote"
FINANCING = f"{FIELD}.financing"


class DiscountKind(StrEnum):
    """Where a discount comes from (each is shown on its own line)."""

    DEALER = "DEALER"
    TRADE_IN = "TRADE_IN"  # 置换补贴
    COUPON = "COUPON"


class ExtraKind(StrEnum):
    """What is paid beside the car, at most once per quote."""

    COMPULSORY_INSURANCE = "COMPULSORY_INSURANCE"  # 交强险
    COMMERCIAL_INSURANCE = "COMMERCIAL_INSURANCE"  # 商业险
    PLATE_FEE = "PLATE_FEE"  # 上牌费


@dataclass(frozen=True, slots=True)
class PricedOption:
    """An option chosen, at its price (VAT included)."""

    code: str
    name: str
    price: Decimal


@dataclass(frozen=True, slots=True)
class Discount:
    """An amount off the list price (it lowers the invoice, hence the tax)."""

    kind: DiscountKind
    description: str
    amount: Decimal


@dataclass(frozen=True, slots=True)
class Extra:
    """A cost beside the car: not invoiced with it, not taxed, not financed."""

    kind: ExtraKind
    amount: Decimal


@dataclass(frozen=True, slots=True)
class LoanRequest:
    """The financing asked for; the principal follows from the invoice and down payment."""

    months: int
    apr: Decimal
    method: Method
    balloon: Decimal = ZERO


@dataclass(frozen=True, slots=True)
class QuoteInput:
    """What a quote is computed from: prices from the price book, the rest from the dealer.
    `down_payment` without `loan` is refused; a loan without a down payment is 0% down."""

    trim_price: Decimal
    options: tuple[PricedOption, ...]
    discounts: tuple[Discount, ...]
    extras: tuple[Extra, ...]
    nev_listed: bool
    invoice_date: date
    down_payment: Decimal | None = None
    loan: LoanRequest | None = None


@dataclass(frozen=True, slots=True)
class QuoteFigures:
    """Every figure of a quote, in fen. Without financing `down_payment`, `financed_amount`
    and `schedule` are None and the amount due at signing is the amount due."""

    list_price: Decimal  # trim + options
    options_total: Decimal
    discount_total: Decimal
    invoice_price: Decimal  # list - discounts, VAT included
    tax: PurchaseTax
    extras_total: Decimal
    amount_due: Decimal  # invoice + tax due + extras
    down_payment: Decimal | None
    financed_amount: Decimal | None  # invoice - down payment
    schedule: Schedule | None
    amount_due_at_signing: Decimal  # down payment + tax due + extras when financed


def calculate(q: QuoteInput) -> QuoteFigures:
    """The figures of a quote; INVALID_ARGUMENT on the first bad field, FAILED_PRECONDITION
    NO_TAX_RULE for an invoice date no tax rule covers."""
    trim = parse_amount(f"{FIELD}.trim_price", q.trim_price)
    if not trim:
        raise invalid(f"{FIELD}.trim_price", "must be above 0")
    options_total = _options_total(q.options)
    list_price = trim + options_total
    if list_price > MAX_AMOUNT:
        raise invalid(f"{FIELD}.options", f"the list price must be at most {MAX_AMOUNT}")
    discount_total = _discount_total(q.discounts)
    if discount_total > list_price:
        raise invalid(
            f"{FIELD}.discounts",
            f"total {discount_total} must not exceed the list price {list_price}",
        )
    invoice = list_price - discount_total
    extras_total = _extras_total(q.extras)
    down, financed, terms = _financing(q, invoice)
    tax = purchase_tax(invoice, q.invoice_date, q.nev_listed)
    amount_due = invoice + tax.due + extras_total
    return QuoteFigures(
        list_price=list_price,
        options_total=options_total,
        discount_total=discount_total,
        invoice_price=invoice,
        tax=tax,
        extras_total=extras_total,
        amount_due=amount_due,
        down_payment=down,
        financed_amount=financed,
        schedule=None if terms is None else schedule_of_valid(terms),
        amount_due_at_signing=amount_due if down is None else down + tax.due + extras_total,
    )


def _options_total(options: tuple[PricedOption, ...]) -> Decimal:
    """The options' prices added; a code twice would charge one option twice."""
    seen: set[str] = set()
    total = ZERO
    for i, option in enumerate(options):
        field = f"{FIELD}.options[{i}]"
        if not option.code.strip():
            raise invalid(f"{field}.code", "must not be blank")
        if option.code in seen:
            raise invalid(f"{field}.code", f"option {option.code} is already in the quote")
        seen.add(option.code)
        total += parse_amount(f"{field}.price", option.price)
    return total


def _discount_total(discounts: tuple[Discount, ...]) -> Decimal:
    """The discounts added; each must take something off."""
    total = ZERO
    for i, discount in enumerate(discounts):
        field = f"{FIELD}.discounts[{i}].amount"
        amount = parse_amount(field, discount.amount)
        if not amount:
            raise invalid(field, "must be above 0")
        total += amount
    return total


def _extras_total(extras: tuple[Extra, ...]) -> Decimal:
    """The extras added; one car has one compulsory policy, one commercial, one plate."""
    seen: set[ExtraKind] = set()
    total = ZERO
    for i, extra in enumerate(extras):
        field = f"{FIELD}.extras[{i}]"
        if extra.kind in seen:
            raise invalid(f"{field}.kind", f"{extra.kind} appears twice: at most one of each")
        seen.add(extra.kind)
        total += parse_amount(f"{field}.amount", extra.amount)
    return total


def _financing(
    q: QuoteInput, invoice: Decimal
) -> tuple[Decimal | None, Decimal | None, LoanTerms | None]:
    """The down payment, the financed amount and the checked loan terms (all None when
    paid in full). The loan covers the car only: what is left of the invoice price."""
    if q.loan is None:
        if q.down_payment is not None:
            raise invalid(f"{FINANCING}.down_payment", "is given only with financing")
        return None, None, None
    field = f"{FINANCING}.down_payment"
    down = ZERO if q.down_payment is None else parse_amount(field, q.down_payment)
    if down >= invoice:
        raise invalid(field, f"must be below the invoice price {invoice}: nothing to finance")
    loan = q.loan
    terms = LoanTerms(invoice - down, loan.months, loan.apr, loan.method, loan.balloon)
    validate_terms(terms, FINANCING)
    return down, terms.principal, terms

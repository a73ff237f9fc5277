"""Quotes: what the customer asked (`QuoteSpec`), priced from the price-book entry of the
invoice day (`quote_input`), and kept until a day (`Quote`).

The arithmetic is `quote.calculate`; this module joins it to the price book: the trim's
price and options of that day, whether it is a listed new-energy vehicle.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal

from services.sales.domain.errors import QUOTE_EXPIRED, invalid, refused
from services.sales.domain.pricebook import PriceBook, Trim, chosen_options
from services.sales.domain.quote import (
    Discount,
    Extra,
    LoanRequest,
    PricedOption,
    QuoteFigures,
    QuoteInput,
    calculate,
)

MAX_VALID_DAYS = 90


@dataclass(frozen=True, slots=True)
class QuoteSpec:
    """What a quote is asked for."""

    trim_code: str
    option_codes: tuple[str, ...]
    discounts: tuple[Discount, ...]
    extras: tuple[Extra, ...]
    invoice_date: dt.date
    down_payment: Decimal | None = None
    loan: LoanRequest | None = None


@dataclass(frozen=True, slots=True)
class Priced:
    """A spec priced: the figures and the facts of the trim they came from."""

    model_code: str
    nev_listed: bool
    figures: QuoteFigures


@dataclass(frozen=True, slots=True)
class Quote:
    """A kept quote."""

    id: str
    opportunity_id: str
    dealer_id: str
    member_id: str
    spec: QuoteSpec
    priced: Priced
    valid_until: dt.date
    create_time: dt.datetime


def quote_input(spec: QuoteSpec, trim: Trim) -> QuoteInput:
    """The arithmetic's input: the trim's price and the chosen options' of the entry."""
    options = chosen_options(trim, spec.option_codes, "quote.option_codes")
    return QuoteInput(
        trim_price=trim.price,
        options=tuple(PricedOption(o.code, o.name, o.price) for o in options),
        discounts=spec.discounts,
        extras=spec.extras,
        nev_listed=trim.nev_listed,
        invoice_date=spec.invoice_date,
        down_payment=spec.down_payment,
        loan=spec.loan,
    )


def price(spec: QuoteSpec, book: PriceBook) -> Priced:
    """The figures of `spec` by the price book of its invoice day."""
    trim = book.entry(spec.trim_code, spec.invoice_date)
    return Priced(trim.model_code, trim.nev_listed, calculate(quote_input(spec, trim)))


def valid_until(asked: dt.date | None, today: dt.date, default_days: int) -> dt.date:
    """The last day a new quote may be ordered from: today or later, at most 90 days on."""
    until = asked if asked is not None else today + dt.timedelta(days=default_days)
    if until < today:
        raise invalid("valid_until", "must not be in the past")
    if until > today + dt.timedelta(days=MAX_VALID_DAYS):
        raise invalid("valid_until", f"must be at most {MAX_VALID_DAYS} days on")
    return until


def require_valid(quote: Quote, today: dt.date) -> None:
    """An order needs a quote still valid today."""
    if today > quote.valid_until:
        raise refused(
            QUOTE_EXPIRED,
            f"quote {quote.id} was valid until {quote.valid_until.isoformat()}",
            valid_until=quote.valid_until.isoformat(),
        )

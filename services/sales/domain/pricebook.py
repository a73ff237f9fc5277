"""The OEM's price book: trims of models with their prices and options, for periods.

An entry applies from its first day up to (not including) its `until` day; a trim may have
several entries (a price change is a new entry from a day on). The entry of a day is the
one with the latest `effective_from` not after it, if its period covers the day. Days are
the China calendar's (the invoice date), given as `date`s: the domain takes no clock.
"""

from __future__ import annotations

import bisect
import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal

from services.sales.domain.errors import (
    NO_PRICE,
    OPTION_NOT_FOUND,
    TRIM_NOT_FOUND,
    invalid,
    not_found,
    refused,
)
from services.sales.domain.money import parse_amount

FIELD = "trim"


@dataclass(frozen=True, slots=True)
class Option:
    """An option of a trim with its price (VAT included)."""

    code: str
    name: str
    price: Decimal


@dataclass(frozen=True, slots=True)
class Trim:
    """One price-book entry."""

    model_code: str
    trim_code: str
    name: str
    price: Decimal
    nev_listed: bool
    effective_from: dt.date
    effective_until: dt.date | None
    options: tuple[Option, ...]

    def covers(self, day: dt.date) -> bool:
        """Whether the entry applies on `day`."""
        return self.effective_from <= day and (
            self.effective_until is None or day < self.effective_until
        )

    def option(self, code: str) -> Option | None:
        """The option with this code, if the trim has it."""
        for option in self.options:
            if option.code == code:
                return option
        return None


def new_trim(
    model_code: str,
    trim_code: str,
    name: str,
    *,
    price: Decimal,
    nev_listed: bool,
    effective_from: dt.date,
    effective_until: dt.date | None,
    options: Iterable[Option],
) -> Trim:
    """A checked entry: a price above zero, a period that ends after it starts, options
    with unique codes and prices of zero or more."""
    price = parse_amount(f"{FIELD}.price", price)
    if price <= 0:
        raise invalid(f"{FIELD}.price", "must be more than zero")
    if effective_until is not None and effective_until <= effective_from:
        raise invalid(f"{FIELD}.effective_until", "must be after effective_from")
    kept: list[Option] = []
    seen: set[str] = set()
    for i, option in enumerate(options):
        if option.code in seen:
            raise invalid(f"{FIELD}.options[{i}].code", f"{option.code} is listed twice")
        seen.add(option.code)
        kept.append(
            Option(
                option.code, option.name, parse_amount(f"{FIELD}.options[{i}].price", option.price)
            )
        )
    return Trim(
        model_code,
        trim_code,
        name.strip(),
        price,
        nev_listed,
        effective_from,
        effective_until,
        tuple(kept),
    )


class PriceBook:
    """The entries of every trim, for look-ups by trim and day without a database trip."""

    def __init__(self, entries: Iterable[Trim]) -> None:
        by_trim: dict[str, list[Trim]] = {}
        for entry in entries:
            by_trim.setdefault(entry.trim_code, []).append(entry)
        self._by_trim = {k: sorted(v, key=lambda t: t.effective_from) for k, v in by_trim.items()}
        self._starts = {k: [t.effective_from for t in v] for k, v in self._by_trim.items()}

    def _covering(self, trim_code: str, day: dt.date) -> Trim | None:
        entries = self._by_trim.get(trim_code, [])
        i = bisect.bisect_right(self._starts.get(trim_code, []), day) - 1
        return entries[i] if i >= 0 and entries[i].covers(day) else None

    def entry(self, trim_code: str, day: dt.date) -> Trim:
        """The entry of `trim_code` on `day`: an unknown trim is NOT_FOUND, a known trim
        without a price that day FAILED_PRECONDITION (NO_PRICE)."""
        if trim_code not in self._by_trim:
            raise not_found(TRIM_NOT_FOUND, "trim", trim_code)
        found = self._covering(trim_code, day)
        if found is None:
            message = f"trim {trim_code} has no price on {day.isoformat()}"
            raise refused(NO_PRICE, message, trim_code=trim_code, day=day.isoformat())
        return found

    def on(self, day: dt.date, model_code: str = "") -> list[Trim]:
        """Every entry in effect on `day` (of one model, if named), by model and trim."""
        found = [self._covering(code, day) for code in self._by_trim]
        kept = [t for t in found if t is not None and model_code in ("", t.model_code)]
        return sorted(kept, key=lambda t: (t.model_code, t.trim_code))


def chosen_options(trim: Trim, codes: Iterable[str], field: str) -> tuple[Option, ...]:
    """The options named by code, each once; one the trim lacks is NOT_FOUND."""
    chosen: list[Option] = []
    seen: set[str] = set()
    for i, code in enumerate(codes):
        if code in seen:
            raise invalid(f"{field}[{i}]", f"{code} is chosen twice")
        seen.add(code)
        option = trim.option(code)
        if option is None:
            raise not_found(OPTION_NOT_FOUND, f"option of trim {trim.trim_code}", code)
        chosen.append(option)
    return tuple(chosen)

"""China's vehicle purchase tax (车辆购置税), as a table of rules by invoice date.

The tax is `rate` (10%) of the price without VAT: invoice / (1 + VAT) x 10%. New-energy
passenger cars in the MIIT catalogue pay a share of it, the reduction capped per car; the
share and the cap change with policy, so each period is a row of `RULES` and a new policy
is a new row, not new code. The invoice date decides, not the quote or the order date.

Sources: MOF/STA/MIIT announcements 2014 No. 53 (NEV exempt from 2014-09-01), 2017 No. 172,
2020 No. 21, 2022 No. 27 (extended to 2023-12-31), 2023 No. 10 (2024-2025 exempt capped at
30,000 CNY; 2026-2027 half, reduction capped at 15,000 CNY). The VAT rate inside the invoice
price was 17% until 2018-04-30 and 16% until 2019-03-31 (MOF/STA 2018 No. 32, 2019 No. 39).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Context, Decimal

from services.sales.domain.errors import NO_TAX_RULE, refused
from services.sales.domain.money import ZERO, fen

# Enough digits for a price up to 10^8 divided by 1.13; independent of the thread's context.
_CTX = Context(prec=34)
_ONE = Decimal(1)


@dataclass(frozen=True, slots=True)
class TaxRule:
    """The purchase tax of invoices dated in [start, end): `end` None is open-ended."""

    start: date
    end: date | None
    rate: Decimal
    vat_rate: Decimal
    # Share of the full tax a listed NEV pays: 1 full, 0.5 half, 0 exempt.
    nev_payable_share: Decimal
    # Most a listed NEV is spared per car; None is no cap.
    nev_reduction_cap: Decimal | None

    def covers(self, day: date) -> bool:
        """Whether an invoice dated `day` falls under this rule."""
        return self.start <= day and (self.end is None or day < self.end)


_RATE = Decimal("0.10")


def _rule(start: date, end: date | None, vat: str, share: str, cap: str | None = None) -> TaxRule:
    return TaxRule(
        start, end, _RATE, Decimal(vat), Decimal(share), None if cap is None else Decimal(cap)
    )


# The table starts on 2014-09-01, when the NEV exemption began, rather than at date.min: the
# rules before it (and the small-engine rates of 2009-2010 and 2015-2017) are not modelled,
# and claiming an exemption for a 2013 invoice would be wrong; such a date is NO_TAX_RULE.
RULES: tuple[TaxRule, ...] = (
    _rule(date(2014, 9, 1), date(2018, 5, 1), vat="0.17", share="0"),
    _rule(date(2018, 5, 1), date(2019, 4, 1), vat="0.16", share="0"),
    _rule(date(2019, 4, 1), date(2024, 1, 1), vat="0.13", share="0"),
    _rule(date(2024, 1, 1), date(2026, 1, 1), vat="0.13", share="0", cap="30000"),
    _rule(date(2026, 1, 1), date(2028, 1, 1), vat="0.13", share="0.5", cap="15000"),
    _rule(date(2028, 1, 1), None, vat="0.13", share="1"),
)


def validate_rules(rules: tuple[TaxRule, ...]) -> None:
    """Raise ValueError unless the rows are in date order, each ending where the next starts
    (no overlap, no gap), only the last open-ended, with rates and shares in [0, 1]."""
    if not rules:
        raise ValueError("no tax rules")
    for i, rule in enumerate(rules):
        if rule.end is not None and rule.end <= rule.start:
            raise ValueError(f"rule {i} ends on or before its start")
        for name in ("rate", "vat_rate", "nev_payable_share"):
            value: Decimal = getattr(rule, name)
            if not ZERO <= value <= _ONE:
                raise ValueError(f"rule {i}: {name} {value} is outside [0, 1]")
        if rule.nev_reduction_cap is not None and rule.nev_reduction_cap < 0:
            raise ValueError(f"rule {i}: negative reduction cap")
        if i + 1 < len(rules) and rule.end != rules[i + 1].start:
            kind = "open-ended before the last" if rule.end is None else "a gap or an overlap"
            raise ValueError(f"rules {i} and {i + 1}: {kind}")


validate_rules(RULES)


def rule_for(invoice_date: date, rules: tuple[TaxRule, ...] = RULES) -> TaxRule:
    """The rule of an invoice date; a date before the table is FAILED_PRECONDITION
    NO_TAX_RULE (the quote cannot be priced, the request itself is well-formed)."""
    for rule in reversed(rules):  # recent dates are the usual ones
        if rule.covers(invoice_date):
            return rule
    raise refused(
        NO_TAX_RULE,
        f"no purchase-tax rule covers an invoice dated {invoice_date.isoformat()}",
        invoice_date=invoice_date.isoformat(),
    )


@dataclass(frozen=True, slots=True)
class PurchaseTax:
    """The tax of one car: base (price without VAT), the full tax, the NEV reduction, and
    what is due; every figure in fen, due = full_tax - reduction exactly."""

    base: Decimal
    full_tax: Decimal
    reduction: Decimal
    due: Decimal


def purchase_tax(
    invoice_price: Decimal,
    invoice_date: date,
    nev_listed: bool,
    rules: tuple[TaxRule, ...] = RULES,
) -> PurchaseTax:
    """The purchase tax of a car invoiced at `invoice_price` (VAT included) on `invoice_date`;
    `nev_listed` is a new-energy car in the qualifying catalogue (fuel cars pay in full)."""
    rule = rule_for(invoice_date, rules)
    base = fen(_CTX.divide(invoice_price, _ONE + rule.vat_rate))
    full = fen(base * rule.rate)
    reduction = ZERO
    if nev_listed:
        spared = full * (_ONE - rule.nev_payable_share)
        if rule.nev_reduction_cap is not None:
            spared = min(spared, rule.nev_reduction_cap)
        reduction = fen(spared)
    return PurchaseTax(base=base, full_tax=full, reduction=reduction, due=full - reduction)

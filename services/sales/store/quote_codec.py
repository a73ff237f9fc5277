"""A quote's request and figures as JSON text: written once, read whole, never queried.
Amounts are decimal strings, so nothing passes through a float."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from typing import Any

from services.sales.domain.financing import Method, Schedule
from services.sales.domain.quote import (
    Discount,
    DiscountKind,
    Extra,
    ExtraKind,
    LoanRequest,
    QuoteFigures,
)
from services.sales.domain.quoting import Priced, QuoteSpec
from services.sales.domain.tax import PurchaseTax


def _s(x: Decimal | None) -> str | None:
    return None if x is None else str(x)


def _d(x: str | None) -> Decimal | None:
    return None if x is None else Decimal(x)


def _dump(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def spec_json(spec: QuoteSpec) -> str:
    """The spec as stored."""
    loan = spec.loan
    return _dump(
        {
            "trim": spec.trim_code,
            "options": list(spec.option_codes),
            "discounts": [[d.kind.value, d.description, str(d.amount)] for d in spec.discounts],
            "extras": [[e.kind.value, str(e.amount)] for e in spec.extras],
            "invoice_date": spec.invoice_date.isoformat(),
            "down": _s(spec.down_payment),
            "loan": None
            if loan is None
            else [loan.months, str(loan.apr), loan.method.name, str(loan.balloon)],
        }
    )


def spec_of(text: str) -> QuoteSpec:
    """The spec of a stored quote."""
    raw = json.loads(text)
    loan = raw["loan"]
    return QuoteSpec(
        trim_code=raw["trim"],
        option_codes=tuple(raw["options"]),
        discounts=tuple(Discount(DiscountKind(k), d, Decimal(a)) for k, d, a in raw["discounts"]),
        extras=tuple(Extra(ExtraKind(k), Decimal(a)) for k, a in raw["extras"]),
        invoice_date=dt.date.fromisoformat(raw["invoice_date"]),
        down_payment=_d(raw["down"]),
        loan=None
        if loan is None
        else LoanRequest(loan[0], Decimal(loan[1]), Method[loan[2]], Decimal(loan[3])),
    )


def _schedule(s: Schedule | None) -> Any:
    if s is None:
        return None
    return {
        "lines": [
            [i.month, str(i.payment), str(i.principal), str(i.interest), str(i.balance)]
            for i in s.instalments
        ],
        "interest": str(s.total_interest),
        "paid": str(s.total_paid),
        "first": str(s.first_payment),
        "last": str(s.last_payment),
    }


def _fen(text: str) -> int:
    return int(Decimal(text).scaleb(2))  # a kept figure is whole fen


def _schedule_of(raw: Any) -> Schedule | None:
    if raw is None:
        return None
    rows = tuple((m, _fen(p), _fen(pr), _fen(i), _fen(b)) for m, p, pr, i, b in raw["lines"])
    return Schedule(
        rows,
        Decimal(raw["interest"]),
        Decimal(raw["paid"]),
        Decimal(raw["first"]),
        Decimal(raw["last"]),
    )


_AMOUNTS = (
    "list_price",
    "options_total",
    "discount_total",
    "invoice_price",
    "extras_total",
    "amount_due",
    "amount_due_at_signing",
)


def priced_json(priced: Priced) -> str:
    """The figures as stored (orders keep a copy: their prices are locked)."""
    f, t = priced.figures, priced.figures.tax
    raw: dict[str, Any] = {name: str(getattr(f, name)) for name in _AMOUNTS}
    raw |= {
        "model": priced.model_code,
        "nev": priced.nev_listed,
        "tax": [str(t.base), str(t.full_tax), str(t.reduction), str(t.due)],
        "down": _s(f.down_payment),
        "financed": _s(f.financed_amount),
        "schedule": _schedule(f.schedule),
    }
    return _dump(raw)


def priced_of(text: str) -> Priced:
    """The figures of a stored quote or order."""
    raw = json.loads(text)
    tax = PurchaseTax(*(Decimal(x) for x in raw["tax"]))
    figures = QuoteFigures(
        **{name: Decimal(raw[name]) for name in _AMOUNTS},
        tax=tax,
        down_payment=_d(raw["down"]),
        financed_amount=_d(raw["financed"]),
        schedule=_schedule_of(raw["schedule"]),
    )
    return Priced(raw["model"], bool(raw["nev"]), figures)

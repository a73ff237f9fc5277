"""Proto ⇄ domain for quotes: the request (QuoteSpec) and the figures."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from decimal import Decimal, InvalidOperation

from marque.sales.v1 import sales_pb2

from mesh.convert import EnumMap, timestamp
from services.sales.convert import amount, cny, day, day_text
from services.sales.domain.errors import invalid
from services.sales.domain.financing import Method, Row
from services.sales.domain.quote import Discount, DiscountKind, Extra, ExtraKind, LoanRequest
from services.sales.domain.quoting import Priced, Quote, QuoteSpec

DISCOUNTS = EnumMap(DiscountKind, sales_pb2.DiscountKind, "DISCOUNT_KIND_")
EXTRAS = EnumMap(ExtraKind, sales_pb2.ExtraKind, "EXTRA_KIND_")
METHODS = {
    sales_pb2.REPAYMENT_METHOD_EQUAL_INSTALMENT: Method.EQUAL_INSTALMENT,
    sales_pb2.REPAYMENT_METHOD_EQUAL_PRINCIPAL: Method.EQUAL_PRINCIPAL,
}


def _apr(field: str, text: str) -> Decimal:
    try:
        return Decimal(text)
    except InvalidOperation:
        raise invalid(field, f"{text!r} is not a decimal") from None


def _loan(msg: sales_pb2.Financing, field: str) -> tuple[Decimal, LoanRequest]:
    balloon = (
        amount(f"{field}.balloon", msg.balloon) if msg.HasField("balloon") else Decimal("0.00")
    )
    method = METHODS.get(msg.method)
    if method is None:
        raise invalid(f"{field}.method", "is required")
    loan = LoanRequest(msg.months, _apr(f"{field}.apr", msg.apr), method, balloon)
    return amount(f"{field}.down_payment", msg.down_payment), loan


def spec_of(msg: sales_pb2.QuoteSpec, today: dt.date, field: str = "quote") -> QuoteSpec:
    """The domain's spec of a request's QuoteSpec (the invoice day defaults to today)."""
    discounts = []
    for i, d in enumerate(msg.discounts):
        kind = DISCOUNTS.of(d.kind)
        if kind is None:
            raise invalid(f"{field}.discounts[{i}].kind", "is required")
        discounts.append(
            Discount(
                kind, d.description.strip(), amount(f"{field}.discounts[{i}].amount", d.amount)
            )
        )
    extras = []
    for i, e in enumerate(msg.extras):
        extra_kind = EXTRAS.of(e.kind)
        if extra_kind is None:
            raise invalid(f"{field}.extras[{i}].kind", "is required")
        extras.append(Extra(extra_kind, amount(f"{field}.extras[{i}].amount", e.amount)))
    down, loan = (
        _loan(msg.financing, f"{field}.financing") if msg.HasField("financing") else (None, None)
    )
    return QuoteSpec(
        trim_code=msg.trim_code,
        option_codes=tuple(msg.option_codes),
        discounts=tuple(discounts),
        extras=tuple(extras),
        invoice_date=day(f"{field}.invoice_date", msg.invoice_date, today),
        down_payment=down,
        loan=loan,
    )


def spec_pb(spec: QuoteSpec) -> sales_pb2.QuoteSpec:
    """The message of a kept spec."""
    msg = sales_pb2.QuoteSpec(
        trim_code=spec.trim_code,
        option_codes=list(spec.option_codes),
        discounts=[
            sales_pb2.Discount(
                kind=DISCOUNTS.to_proto(d.kind), description=d.description, amount=cny(d.amount)
            )
            for d in spec.discounts
        ],
        extras=[
            sales_pb2.Extra(kind=EXTRAS.to_proto(e.kind), amount=cny(e.amount)) for e in spec.extras
        ],
        invoice_date=day_text(spec.invoice_date),
    )
    if spec.loan is not None and spec.down_payment is not None:
        reverse = {v: k for k, v in METHODS.items()}
        msg.financing.CopyFrom(
            sales_pb2.Financing(
                down_payment=cny(spec.down_payment),
                months=spec.loan.months,
                apr=str(spec.loan.apr),
                method=reverse[spec.loan.method],
                balloon=cny(spec.loan.balloon),
            )
        )
    return msg


_Money = dict[str, str | int]


def money_fields(fen: int) -> _Money:
    """The fields of an amount of fen's Money (as `cny`, without building the message: a
    60-month schedule has 240 of them, and upb builds a message from fields in one go)."""
    if fen >= 0:
        units, cents = divmod(fen, 100)
    else:  # units and nanos share the amount's sign
        units, cents = divmod(-fen, 100)
        units, cents = -units, -cents
    return {"currency_code": "CNY", "units": units, "nanos": cents * 10_000_000}


def _schedule_fields(rows: Sequence[Row]) -> list[dict[str, object]]:
    """The schedule's Instalment messages as fields, from its months in fen (the payment
    repeats: made once)."""
    made: dict[int, _Money] = {}

    def m(fen: int) -> _Money:
        found = made.get(fen)
        if found is None:
            found = made[fen] = money_fields(fen)
        return found

    return [
        {
            "month": month,
            "payment": m(payment),
            "principal": money_fields(part),
            "interest": money_fields(interest),
            "balance": money_fields(balance),
        }
        for month, payment, part, interest, balance in rows
    ]


def figures_head(priced: Priced) -> sales_pb2.QuoteFigures:
    """The figures' amounts (fields 1-13): all but the schedule and the trim's facts."""
    f, t = priced.figures, priced.figures.tax
    msg = sales_pb2.QuoteFigures(
        list_price=cny(f.list_price),
        discount_total=cny(f.discount_total),
        invoice_price=cny(f.invoice_price),
        tax_base=cny(t.base),
        purchase_tax_full=cny(t.full_tax),
        purchase_tax_reduction=cny(t.reduction),
        purchase_tax=cny(t.due),
        extras_total=cny(f.extras_total),
        amount_due=cny(f.amount_due),
        due_at_signing=cny(f.amount_due_at_signing),
    )
    if f.schedule is not None and f.down_payment is not None and f.financed_amount is not None:
        msg.down_payment.CopyFrom(cny(f.down_payment))
        msg.financed_amount.CopyFrom(cny(f.financed_amount))
        msg.total_interest.CopyFrom(cny(f.schedule.total_interest))
    return msg


def figures_pb(priced: Priced) -> sales_pb2.QuoteFigures:
    """The message of a quote's figures, with its schedule month by month
    (CalculateQuote sends the same as bytes: schedule_wire.py)."""
    msg = figures_head(priced)
    msg.model_code, msg.nev_listed = priced.model_code, priced.nev_listed
    schedule = priced.figures.schedule
    if schedule is not None and priced.figures.down_payment is not None:
        msg.MergeFrom(sales_pb2.QuoteFigures(schedule=_schedule_fields(schedule.rows)))
    return msg


def quote_pb(quote: Quote) -> sales_pb2.Quote:
    """The message of a kept quote."""
    return sales_pb2.Quote(
        id=quote.id,
        opportunity_id=quote.opportunity_id,
        dealer_id=quote.dealer_id,
        member_id=quote.member_id,
        spec=spec_pb(quote.spec),
        figures=figures_pb(quote.priced),
        valid_until=day_text(quote.valid_until),
        create_time=timestamp(quote.create_time),
    )

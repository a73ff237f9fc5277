"""The price book and quotes over a real server (harness.py), on SQLite and PostgreSQL:
the worked figures of ../shared/data/README.md through the wire, field-level refusals,
kept quotes and who may see them."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import grpc
from marque.sales.v1 import sales_events_pb2, sales_pb2
from marque.sales.v1 import sales_service_pb2 as pb

from mesh.identity import Caller, Kind
from services.sales.tests.harness import (
    CUSTOMER,
    OEM,
    TRIM,
    Harness,
    cny,
    dealer,
    fails,
    md,
    reason,
    violations,
    yuan,
)

D1 = dealer("D1")


def spec(**kw: object) -> sales_pb2.QuoteSpec:
    base: dict[str, object] = {"trim_code": "M5-LR", "invoice_date": "2026-03-02"}
    base.update(kw)
    return sales_pb2.QuoteSpec(**base)  # type: ignore[arg-type]


async def calculate(sales: Harness, quote: sales_pb2.QuoteSpec) -> sales_pb2.QuoteFigures:
    resp = await sales.stub.CalculateQuote(pb.CalculateQuoteRequest(quote=quote), metadata=md(D1))
    return resp.figures


async def test_a_new_energy_car_pays_half_the_purchase_tax(sales: Harness) -> None:
    await sales.put_trim()
    f = await calculate(sales, spec())
    assert (yuan(f.invoice_price), yuan(f.tax_base)) == ("226000.00", "200000.00")
    assert (yuan(f.purchase_tax_full), yuan(f.purchase_tax)) == ("20000.00", "10000.00")
    assert yuan(f.amount_due) == "236000.00" and f.nev_listed and f.model_code == "M5"
    in_2028 = await calculate(sales, spec(invoice_date="2028-01-01"))
    assert yuan(in_2028.purchase_tax) == "20000.00"  # the reduction has ended


async def test_options_discounts_and_extras_make_the_amount_due(sales: Harness) -> None:
    await sales.put_trim()
    f = await calculate(
        sales,
        spec(
            option_codes=["PAINT-RED", "PILOT"],
            discounts=[
                sales_pb2.Discount(kind=sales_pb2.DISCOUNT_KIND_DEALER, amount=cny("5000")),
                sales_pb2.Discount(kind=sales_pb2.DISCOUNT_KIND_TRADE_IN, amount=cny("10820")),
            ],
            extras=[
                sales_pb2.Extra(kind=sales_pb2.EXTRA_KIND_COMPULSORY_INSURANCE, amount=cny("950")),
                sales_pb2.Extra(kind=sales_pb2.EXTRA_KIND_PLATE_FEE, amount=cny("500.50")),
            ],
        ),
    )
    assert yuan(f.list_price) == "241820.00" and yuan(f.discount_total) == "15820.00"
    assert yuan(f.invoice_price) == "226000.00" and yuan(f.extras_total) == "1450.50"
    assert yuan(f.amount_due) == "237450.50"


async def test_a_financed_quote_has_its_schedule_month_by_month(sales: Harness) -> None:
    await sales.put_trim()
    financing = sales_pb2.Financing(
        down_payment=cny("86000"),
        months=36,
        apr="0.045",
        method=sales_pb2.REPAYMENT_METHOD_EQUAL_INSTALMENT,
    )
    f = await calculate(sales, spec(financing=financing))
    assert yuan(f.financed_amount) == "140000.00" and len(f.schedule) == 36
    assert yuan(f.schedule[0].payment) == "4164.57" and yuan(f.schedule[0].interest) == "525.00"
    assert yuan(f.total_interest) == "9924.50" and yuan(f.schedule[-1].balance) == "0.00"
    principal = sum(Decimal(yuan(i.principal)) for i in f.schedule)
    assert principal == Decimal("140000.00")
    assert yuan(f.due_at_signing) == "96000.00"  # down payment + purchase tax


async def test_bad_quotes_are_refused_with_the_field(sales: Harness) -> None:
    await sales.put_trim()
    usd = sales_pb2.Discount(kind=sales_pb2.DISCOUNT_KIND_DEALER, amount=cny("1"))
    usd.amount.currency_code = "USD"
    err = await fails(calculate(sales, spec(discounts=[usd])), grpc.StatusCode.INVALID_ARGUMENT)
    assert "quote.discounts[0].amount.currency_code" in violations(err)
    half_fen = sales_pb2.Discount(kind=sales_pb2.DISCOUNT_KIND_DEALER, amount=cny("1"))
    half_fen.amount.nanos = 5_000_000
    err = await fails(
        calculate(sales, spec(discounts=[half_fen])), grpc.StatusCode.INVALID_ARGUMENT
    )
    assert "quote.discounts[0].amount.nanos" in violations(err)
    too_much = sales_pb2.Discount(kind=sales_pb2.DISCOUNT_KIND_DEALER, amount=cny("300000"))
    err = await fails(
        calculate(sales, spec(discounts=[too_much])), grpc.StatusCode.INVALID_ARGUMENT
    )
    assert "quote.discounts" in violations(err)
    err = await fails(calculate(sales, spec(trim_code="NOPE")), grpc.StatusCode.NOT_FOUND)
    assert reason(err) == "TRIM_NOT_FOUND"
    err = await fails(calculate(sales, spec(option_codes=["GOLD"])), grpc.StatusCode.NOT_FOUND)
    assert reason(err) == "OPTION_NOT_FOUND"
    err = await fails(
        calculate(sales, spec(invoice_date="2025-12-31")), grpc.StatusCode.FAILED_PRECONDITION
    )
    assert reason(err) == "NO_PRICE"  # the entry starts on 2026-01-01
    err = await fails(
        calculate(sales, spec(invoice_date="2026-02-30")), grpc.StatusCode.INVALID_ARGUMENT
    )
    assert "quote.invoice_date" in violations(err)
    bad_apr = sales_pb2.Financing(
        down_payment=cny("0"),
        months=12,
        apr="0.9",
        method=sales_pb2.REPAYMENT_METHOD_EQUAL_PRINCIPAL,
    )
    err = await fails(calculate(sales, spec(financing=bad_apr)), grpc.StatusCode.INVALID_ARGUMENT)
    assert "quote.financing.apr" in violations(err)


async def test_the_price_book_is_the_oems(sales: Harness) -> None:
    await fails(
        sales.stub.PutTrim(pb.PutTrimRequest(trim=TRIM), metadata=md(D1)),
        grpc.StatusCode.PERMISSION_DENIED,
    )
    await sales.put_trim()
    newer = sales_pb2.Trim()
    newer.CopyFrom(TRIM)
    newer.effective_from, newer.price.units = "2026-06-01", 220000
    await sales.put_trim(newer)
    listed = await sales.stub.ListTrims(
        pb.ListTrimsRequest(date="2026-07-01"), metadata=md(CUSTOMER)
    )
    assert [yuan(t.price) for t in listed.trims] == ["220000.00"]
    march = await sales.stub.ListTrims(pb.ListTrimsRequest(date="2026-03-01"), metadata=md(D1))
    assert [yuan(t.price) for t in march.trims] == ["226000.00"]
    bad = sales_pb2.Trim()
    bad.CopyFrom(TRIM)
    bad.effective_until = "2025-01-01"
    err = await fails(sales.put_trim(bad), grpc.StatusCode.INVALID_ARGUMENT)
    assert "trim.effective_until" in violations(err)


async def test_a_kept_quote_is_the_dealers_and_the_customers(sales: Harness) -> None:
    await sales.put_trim()
    opp_id = await sales.open_opportunity()
    request = pb.CreateQuoteRequest(
        opportunity_id=opp_id, quote=spec(), member_id="m1", request_id="q1"
    )
    quote = (await sales.stub.CreateQuote(request, metadata=md(D1))).quote
    again = (await sales.stub.CreateQuote(request, metadata=md(D1))).quote
    assert again.id == quote.id and yuan(quote.figures.purchase_tax) == "10000.00"
    assert quote.valid_until == (dt.date(2026, 3, 2) + dt.timedelta(days=14)).isoformat()
    mine = await sales.stub.GetQuote(pb.GetQuoteRequest(quote_id=quote.id), metadata=md(CUSTOMER))
    assert mine.quote == quote
    for other in (dealer("D2"), _customer("m2")):
        err = await fails(
            sales.stub.GetQuote(pb.GetQuoteRequest(quote_id=quote.id), metadata=md(other)),
            grpc.StatusCode.NOT_FOUND,
        )
        assert reason(err) == "QUOTE_NOT_FOUND"
    err = await fails(
        sales.stub.CreateQuote(
            pb.CreateQuoteRequest(opportunity_id=opp_id, quote=spec(), request_id="q2"),
            metadata=md(dealer("D2")),
        ),
        grpc.StatusCode.NOT_FOUND,
    )
    assert reason(err) == "OPPORTUNITY_NOT_FOUND"
    opp = await sales.stub.GetOpportunity(
        pb.GetOpportunityRequest(opportunity_id=opp_id), metadata=md(OEM)
    )
    assert opp.opportunity.stage == sales_pb2.STAGE_QUOTE and opp.opportunity.member_id == "m1"
    moved = [
        sales_events_pb2.OpportunityStageChanged.FromString(p)
        for t, _, p in await sales.outbox()
        if t.endswith("OpportunityStageChanged")
    ]
    assert [(m.previous_stage, m.stage) for m in moved] == [
        (sales_pb2.STAGE_PROSPECT, sales_pb2.STAGE_QUOTE)
    ]


def _customer(member_id: str) -> Caller:
    return Caller(Kind.CUSTOMER, f"app-{member_id}", member_id=member_id)

"""CalculateQuote's reply encoded from the fen rows (schedule_wire.py) is byte for byte the
serialisation of the message path (convert_quotes.figures_pb), for any loan and for cash."""

from __future__ import annotations

import dataclasses
from decimal import Decimal as D

from hypothesis import given, settings
from hypothesis import strategies as st
from marque.sales.v1 import sales_service_pb2 as pb

from services.sales.convert_quotes import figures_pb
from services.sales.domain.financing import Method
from services.sales.domain.quote import LoanRequest, calculate
from services.sales.domain.quoting import Priced
from services.sales.schedule_wire import calculate_reply
from services.sales.tests.test_quote import CASH


def _both(priced: Priced) -> tuple[bytes, bytes]:
    reference = pb.CalculateQuoteResponse(figures=figures_pb(priced)).SerializeToString()
    return calculate_reply(priced), reference


@settings(max_examples=200, deadline=None)
@given(
    down=st.integers(0, 20_000_000),  # fen, below the 216,000 invoice
    months=st.integers(12, 60),
    micro=st.one_of(st.just(0), st.integers(0, 360_000)),
    method=st.sampled_from(Method),
    balloon=st.one_of(st.just(0), st.integers(0, 1_000_000)),
)
def test_the_wire_reply_is_the_messages_serialised(
    down: int, months: int, micro: int, method: Method, balloon: int
) -> None:
    loan = LoanRequest(months, D(micro).scaleb(-6), method, D(balloon).scaleb(-2))
    q = dataclasses.replace(CASH, down_payment=D(down).scaleb(-2), loan=loan)
    priced = Priced("M5", True, calculate(q))
    wire, reference = _both(priced)
    assert wire == reference
    assert len(pb.CalculateQuoteResponse.FromString(wire).figures.schedule) == months


def test_a_cash_quote_has_no_schedule() -> None:
    wire, reference = _both(Priced("M5", False, calculate(CASH)))
    assert wire == reference and not pb.CalculateQuoteResponse.FromString(wire).figures.schedule

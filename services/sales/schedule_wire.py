"""CalculateQuote's reply as wire bytes, its schedule encoded straight from integers of fen.

A 60-month schedule is 60 Instalment messages of 4 Money each: built as messages (upb, from
fields) and serialised by grpc it cost ~1.7M instructions a reply, more than a whole echo
call; encoded here from the fen rows (a varint table, the constant parts as literals) it
costs ~1.0M, and the mesh sends the bytes as they are (mesh/server.py). The bytes are the
ones upb would write (fields in number order, zeros omitted), which the tests check
against the message path (`convert_quotes.figures_pb`).
"""

from __future__ import annotations

from collections.abc import Sequence

from marque.sales.v1 import sales_pb2
from marque.sales.v1 import sales_service_pb2 as pb

from services.sales.convert_quotes import figures_head, figures_pb, money_fields
from services.sales.domain.financing import Row
from services.sales.domain.quoting import Priced

# The varints of 0..16383 (one or two bytes): months, lengths and most units.
_SMALL = [bytes((v,)) if v < 128 else bytes(((v & 127) | 128, v >> 7)) for v in range(1 << 14)]


def _varint(v: int) -> bytes:
    """A non-negative integer's base-128 varint."""
    if v < 16384:
        return _SMALL[v]
    if v < 1 << 21:
        return bytes(((v & 127) | 128, ((v >> 7) & 127) | 128, v >> 14))
    out = bytearray()
    while v >= 128:
        out.append((v & 127) | 128)
        v >>= 7
    out.append(v)
    return bytes(out)


# Money.nanos (field 3) of each number of cents, empty for 0; Money.units (field 2) of
# 0..16383 yuan, empty for 0.
_NANOS = [b"" if c == 0 else b"\x18" + _varint(c * 10_000_000) for c in range(100)]
_UNITS = [b"" if u == 0 else b"\x10" + _SMALL[u] for u in range(1 << 14)]
_CNY = b"\n\x03CNY"  # Money.currency_code (field 1) = "CNY"


def _money(fen: int) -> bytes:
    """A Money of `fen`, length-delimited (the caller puts the field's tag before it);
    its body is at most 21 bytes, so its length is one byte."""
    if fen < 0:  # not in a schedule; as upb writes a negative amount
        body = sales_pb2.Instalment(payment=money_fields(fen)).payment.SerializeToString()
        return _varint(len(body)) + body
    units, cents = divmod(fen, 100)
    if units < 16384:
        body = _CNY + _UNITS[units] + _NANOS[cents]
    else:
        body = _CNY + b"\x10" + _varint(units) + _NANOS[cents]
    return _SMALL[len(body)] + body


def schedule_bytes(rows: Sequence[Row]) -> bytes:
    """QuoteFigures.schedule (field 14): one length-delimited Instalment per month."""
    payments: dict[int, bytes] = {}
    out = []
    for month, payment, part, interest, balance in rows:
        paid = payments.get(payment)
        if paid is None:  # the payment repeats: encoded once
            paid = payments[payment] = b"\x12" + _money(payment)
        body = b"".join(
            (b"\x08", _varint(month), paid, b"\x1a", _money(part), b'"', _money(interest),
             b"*", _money(balance))
        )  # fmt: skip
        out.append(b"r" + _varint(len(body)) + body)  # field 14, length-delimited
    return b"".join(out)


def calculate_reply(priced: Priced) -> bytes:
    """The CalculateQuoteResponse of `priced`, serialised: the figures' fields 1-13, the
    schedule (14), then the trim's facts (15, 16), in the order upb writes them."""
    schedule = priced.figures.schedule
    if schedule is None or priced.figures.down_payment is None:
        return pb.CalculateQuoteResponse(figures=figures_pb(priced)).SerializeToString()
    facts = sales_pb2.QuoteFigures(model_code=priced.model_code, nev_listed=priced.nev_listed)
    body = (
        figures_head(priced).SerializeToString()
        + schedule_bytes(schedule.rows)
        + facts.SerializeToString()
    )
    return b"\n" + _varint(len(body)) + body  # CalculateQuoteResponse.figures (field 1)

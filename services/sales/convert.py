"""Proto ⇄ domain for the sales service: money, days, enums and the records' messages.

Amounts arrive as google.type.Money: CNY only (an empty currency is taken as CNY), whole
fen, checked by `domain.money.parse_amount` with the request's field path.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from marque.common.v1 import money_pb2
from marque.sales.v1 import sales_pb2

from mesh.convert import EnumMap, decimal_of, money, timestamp
from services.sales.domain import pricebook
from services.sales.domain.errors import invalid
from services.sales.domain.money import CNY, parse_amount
from services.sales.domain.opportunity import Channel, FollowUp, Opportunity, Stage

STAGES = EnumMap(Stage, sales_pb2.Stage, "STAGE_")
CHANNELS = EnumMap(Channel, sales_pb2.FollowUpChannel, "FOLLOW_UP_CHANNEL_")


def amount(field: str, value: money_pb2.Money) -> Decimal:
    """A request's amount: CNY, whole fen, not negative."""
    if value.currency_code not in ("", CNY):
        raise invalid(f"{field}.currency_code", f"must be {CNY}")
    if value.nanos % 10_000_000:
        raise invalid(f"{field}.nanos", "must be a whole fen (a multiple of 10,000,000)")
    return parse_amount(field, decimal_of(value))


def cny(value: Decimal) -> money_pb2.Money:
    """The Money of an amount."""
    return money(value, CNY)


def day(field: str, text: str, default: dt.date | None = None) -> dt.date:
    """A YYYY-MM-DD day (the proto checked its shape; here, that it exists)."""
    if not text:
        if default is None:
            raise invalid(field, "is required")
        return default
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise invalid(field, f"{text} is not a day of the calendar") from None


def day_text(value: dt.date | None) -> str:
    """A day as the proto carries it; "" for none."""
    return value.isoformat() if value is not None else ""


def opportunity_pb(opp: Opportunity) -> sales_pb2.Opportunity:
    """The message of an opportunity."""
    return sales_pb2.Opportunity(
        id=opp.id,
        lead_id=opp.lead_id,
        dealer_id=opp.dealer_id,
        member_id=opp.member_id,
        model_interest=opp.model_interest,
        stage=STAGES.to_proto(opp.stage),
        next_action=opp.next_action,
        next_action_due=timestamp(opp.next_action_due),
        lost_reason=opp.lost_reason,
        create_time=timestamp(opp.create_time),
        update_time=timestamp(opp.update_time),
    )


def follow_up_pb(f: FollowUp) -> sales_pb2.FollowUp:
    """The message of a follow-up."""
    return sales_pb2.FollowUp(
        id=f.id,
        opportunity_id=f.opportunity_id,
        channel=CHANNELS.to_proto(f.channel),
        outcome=f.outcome,
        next_action=f.next_action,
        next_action_due=timestamp(f.next_action_due),
        actor=f.actor,
        create_time=timestamp(f.time),
    )


def trim_of(msg: sales_pb2.Trim) -> pricebook.Trim:
    """A price-book entry from PutTrim."""
    options = [
        pricebook.Option(o.code, o.name, amount(f"trim.options[{i}].price", o.price))
        for i, o in enumerate(msg.options)
    ]
    return pricebook.new_trim(
        msg.model_code,
        msg.trim_code,
        msg.name,
        price=amount("trim.price", msg.price),
        nev_listed=msg.nev_listed,
        effective_from=day("trim.effective_from", msg.effective_from),
        effective_until=day("trim.effective_until", msg.effective_until)
        if msg.effective_until
        else None,
        options=options,
    )


def trim_pb(trim: pricebook.Trim) -> sales_pb2.Trim:
    """The message of a price-book entry."""
    return sales_pb2.Trim(
        model_code=trim.model_code,
        trim_code=trim.trim_code,
        name=trim.name,
        price=cny(trim.price),
        nev_listed=trim.nev_listed,
        effective_from=day_text(trim.effective_from),
        effective_until=day_text(trim.effective_until),
        options=[
            sales_pb2.TrimOption(code=o.code, name=o.name, price=cny(o.price)) for o in trim.options
        ],
    )

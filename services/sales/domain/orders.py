"""Orders: the state machine from a quote to the handed-over car, and the deposit's refund.

    DEPOSIT_PENDING --pay deposit--> CONFIRMED --allocate--> ALLOCATED --invoice--> INVOICED
    --deliver--> DELIVERED;  cancel: from any state before DELIVERED --> CANCELLED.

`TRANSITIONS` is the whole machine as data; every step function asks it and refuses any
other (state, step) with FAILED_PRECONDITION ILLEGAL_TRANSITION naming the current state.
Each step returns a new Order one version on (the etag changes) stamped `now`.

The deposit's refund on cancellation is a rule per state (`REFUNDS`), as data:
- DEPOSIT_PENDING: nothing was paid, nothing to refund;
- CONFIRMED: the deposit back in full (no car was set aside for the customer yet);
- ALLOCATED: the deposit less the configured forfeit (`RefundPolicy.allocated_forfeit`,
  default 0: in full), since the dealer held a car that must go back to the stock;
- INVOICED: the deposit is forfeited (the invoice must be reversed, 红冲) unless the dealer
  waives it, which refunds in full;
a waiver also lifts the ALLOCATED forfeit. A refund never exceeds what was paid.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from types import MappingProxyType
from typing import Any

from mesh import vin as vins
from services.sales.domain import etags
from services.sales.domain.errors import VEHICLE_MISMATCH, illegal_transition, invalid, refused
from services.sales.domain.money import CNY, ZERO, parse_amount

INVOICE_NUMBER_MAX = 40
CANCEL_REASON_MAX = 200


class OrderState(StrEnum):
    """Where an order stands; DELIVERED and CANCELLED are final."""

    DEPOSIT_PENDING = "DEPOSIT_PENDING"
    CONFIRMED = "CONFIRMED"
    ALLOCATED = "ALLOCATED"
    INVOICED = "INVOICED"
    DELIVERED = "DELIVERED"
    CANCELLED = "CANCELLED"


class Step(StrEnum):
    """What can be done to a placed order (the words of the refusals)."""

    PAY_DEPOSIT = "pay deposit"
    ALLOCATE = "allocate"
    INVOICE = "invoice"
    DELIVER = "deliver"
    CANCEL = "cancel"


S = OrderState
_BEFORE_DELIVERY = (S.DEPOSIT_PENDING, S.CONFIRMED, S.ALLOCATED, S.INVOICED)
TRANSITIONS: Mapping[tuple[OrderState, Step], OrderState] = MappingProxyType(
    {
        (S.DEPOSIT_PENDING, Step.PAY_DEPOSIT): S.CONFIRMED,
        (S.CONFIRMED, Step.ALLOCATE): S.ALLOCATED,
        (S.ALLOCATED, Step.INVOICE): S.INVOICED,
        (S.INVOICED, Step.DELIVER): S.DELIVERED,
        **{(state, Step.CANCEL): S.CANCELLED for state in _BEFORE_DELIVERY},
    }
)


class Refund(StrEnum):
    """How much of the paid deposit a cancellation gives back."""

    NOTHING_PAID = "NOTHING_PAID"  # 0: nothing was paid
    FULL = "FULL"  # all that was paid
    LESS_FORFEIT = "LESS_FORFEIT"  # paid less RefundPolicy.allocated_forfeit, unless waived
    FORFEITED = "FORFEITED"  # 0, unless waived (then FULL)


REFUNDS: Mapping[OrderState, Refund] = MappingProxyType(
    {
        S.DEPOSIT_PENDING: Refund.NOTHING_PAID,
        S.CONFIRMED: Refund.FULL,
        S.ALLOCATED: Refund.LESS_FORFEIT,
        S.INVOICED: Refund.FORFEITED,
    }
)


@dataclass(frozen=True, slots=True)
class RefundPolicy:
    """The refund knob: what an ALLOCATED order's cancellation keeps of the deposit."""

    allocated_forfeit: Decimal = ZERO

    def __post_init__(self) -> None:
        parse_amount("allocated_forfeit", self.allocated_forfeit)


DEFAULT_POLICY = RefundPolicy()


@dataclass(frozen=True, slots=True)
class Order:
    """A customer's order of one trim with options at a locked price, with its deposit."""

    id: str
    dealer_id: str
    member_id: str
    opportunity_id: str
    quote_id: str
    model_code: str
    trim_code: str
    option_codes: tuple[str, ...]
    invoice_price: Decimal
    deposit: Decimal
    deposit_paid: Decimal
    state: OrderState
    vin: str  # "" until ALLOCATED
    invoice_number: str  # "" until INVOICED
    invoice_time: datetime | None
    delivery_time: datetime | None
    sap_sales_order: str  # "" until the ERP answered
    cancel_reason: str
    refund: Decimal
    version: int
    create_time: datetime
    update_time: datetime


def etag(order: Order) -> str:
    """The order's etag (it changes with every step)."""
    return etags.of(order.id, order.version)


def check_etag(order: Order, etag_: str) -> None:
    """ABORTED (ETAG_MISMATCH) unless `etag_` is the order's; empty is unconditional."""
    etags.check("order", order.id, order.version, etag_)


def allowed(state: OrderState) -> list[Step]:
    """The steps an order in `state` may take (for a UI's buttons)."""
    return [step for (s, step) in TRANSITIONS if s is state]


def _step(order: Order, step: Step, now: datetime, **changes: Any) -> Order:
    """`order` after `step`, or the refusal naming its current state."""
    target = TRANSITIONS.get((order.state, step))
    if target is None:
        raise illegal_transition("order", order.state.value, step.value)
    return replace(order, **changes, state=target, version=order.version + 1, update_time=now)


def place(
    *,
    id_: str,
    quote_id: str,
    opportunity_id: str,
    dealer_id: str,
    member_id: str,
    model_code: str,
    trim_code: str,
    option_codes: Iterable[str],
    invoice_price: Decimal,
    deposit: Decimal,
    now: datetime,
) -> Order:
    """A new order awaiting its deposit, which is more than 0 and at most the invoice price
    (INVALID_ARGUMENT on `deposit`)."""
    price = parse_amount("invoice_price", invoice_price)
    if not price:
        raise invalid("invoice_price", "must be more than zero")
    paid_in = parse_amount("deposit", deposit)
    if not paid_in:
        raise invalid("deposit", "must be more than zero")
    if paid_in > price:
        raise invalid("deposit", f"must be at most the invoice price {price} {CNY}")
    if not member_id.strip():
        raise invalid("member_id", "an order needs the customer's member id")
    return Order(
        id=id_,
        dealer_id=dealer_id,
        member_id=member_id.strip(),
        opportunity_id=opportunity_id,
        quote_id=quote_id,
        model_code=model_code,
        trim_code=trim_code,
        option_codes=tuple(option_codes),
        invoice_price=price,
        deposit=paid_in,
        deposit_paid=ZERO,
        state=OrderState.DEPOSIT_PENDING,
        vin="",
        invoice_number="",
        invoice_time=None,
        delivery_time=None,
        sap_sales_order="",
        cancel_reason="",
        refund=ZERO,
        version=1,
        create_time=now,
        update_time=now,
    )


def pay_deposit(order: Order, amount: Decimal, now: datetime) -> Order:
    """CONFIRMED: the deposit paid, exactly (a part payment is not a deposit)."""
    paid = parse_amount("amount", amount)
    if (order.state, Step.PAY_DEPOSIT) in TRANSITIONS and paid != order.deposit:
        raise invalid("amount", f"must be the order's deposit {order.deposit} {CNY}")
    return _step(order, Step.PAY_DEPOSIT, now, deposit_paid=paid)


def allocate(order: Order, vin: str, vehicle_model: str, vehicle_trim: str, now: datetime) -> Order:
    """ALLOCATED: a car of the order's model and trim set aside (VEHICLE_MISMATCH if not)."""
    car = vins.normalize("vin", vin)
    if (order.state, Step.ALLOCATE) in TRANSITIONS and (
        vehicle_model != order.model_code or vehicle_trim != order.trim_code
    ):
        raise refused(
            VEHICLE_MISMATCH,
            f"car {car} is a {vehicle_model} {vehicle_trim}; the order is for a "
            f"{order.model_code} {order.trim_code}",
            vin=car,
            model_code=vehicle_model,
            trim_code=vehicle_trim,
        )
    return _step(order, Step.ALLOCATE, now, vin=car)


def invoice(order: Order, invoice_number: str, now: datetime) -> Order:
    """INVOICED, with the (unified) invoice's number and time."""
    number = invoice_number.strip()
    if not number:
        raise invalid("invoice_number", "must not be blank")
    if len(number) > INVOICE_NUMBER_MAX:
        raise invalid("invoice_number", f"must be at most {INVOICE_NUMBER_MAX} characters")
    return _step(order, Step.INVOICE, now, invoice_number=number, invoice_time=now)


def deliver(order: Order, vin: str, now: datetime) -> Order:
    """DELIVERED at `now`: the car handed over must be the one allocated."""
    car = vins.normalize("vin", vin)
    if (order.state, Step.DELIVER) in TRANSITIONS:
        if car != order.vin:
            raise refused(
                VEHICLE_MISMATCH,
                f"car {car} is not the one allocated to order {order.id} ({order.vin})",
                vin=car,
                allocated_vin=order.vin,
            )
        if order.invoice_time is not None and now < order.invoice_time:
            raise invalid("delivery_time", "must not be before the invoice time")
    return _step(order, Step.DELIVER, now, delivery_time=now)


def refund_for(
    order: Order, policy: RefundPolicy = DEFAULT_POLICY, *, waive: bool = False
) -> Decimal:
    """What cancelling `order` now gives back of the deposit paid, by `REFUNDS`."""
    rule = REFUNDS.get(order.state)
    if rule is None:
        raise illegal_transition("order", order.state.value, Step.CANCEL.value)
    paid = order.deposit_paid
    if rule is Refund.NOTHING_PAID:
        return paid  # 0 by construction; should a payment have been recorded, it goes back
    if rule is Refund.FULL or waive:
        return paid
    if rule is Refund.LESS_FORFEIT:
        return max(paid - policy.allocated_forfeit, ZERO)
    return ZERO


def cancel(
    order: Order,
    reason: str,
    now: datetime,
    *,
    policy: RefundPolicy = DEFAULT_POLICY,
    waive: bool = False,
) -> Order:
    """CANCELLED with a reason, the refund set by `refund_for` (the dealer may `waive` a
    forfeit); a delivered or cancelled order cannot be cancelled."""
    text = reason.strip()
    if not text:
        raise invalid("reason", "must not be blank")
    if len(text) > CANCEL_REASON_MAX:
        raise invalid("reason", f"must be at most {CANCEL_REASON_MAX} characters")
    refund = refund_for(order, policy, waive=waive)
    return _step(order, Step.CANCEL, now, cancel_reason=text, refund=refund)

"""Order rules on plain data: the state machine walked exhaustively, placing, the vehicle
checks, the deposit's refund per state, and etags."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal as D

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mesh.errors import Aborted, FailedPrecondition, InvalidArgument
from services.sales.domain import orders as o
from services.sales.domain.orders import (
    REFUNDS,
    TRANSITIONS,
    Order,
    OrderState,
    Refund,
    RefundPolicy,
    Step,
)

S = OrderState
T0 = datetime(2026, 12, 1, 2, 0, tzinfo=UTC)
T1 = T0 + timedelta(days=1)
VIN = "LZ91AE3A4J3LSA560"
VIN2 = "137ZA903X1E412677"


def placed(deposit: D = D("5000"), price: D = D("250000.00"), **kw: object) -> Order:
    args: dict[str, object] = {
        "id_": "ord1",
        "quote_id": "q1",
        "opportunity_id": "opp1",
        "dealer_id": "D1",
        "member_id": "m1",
        "model_code": "M5",
        "trim_code": "M5-LR",
        "option_codes": ["PAINT-RED", "WHEEL-21"],
        "invoice_price": price,
        "deposit": deposit,
        "now": T0,
    }
    args.update(kw)
    return o.place(**args)  # type: ignore[arg-type]


# One legal call per step, with arguments that suit an order on the happy path.
CALLS: dict[Step, Callable[[Order], Order]] = {
    Step.PAY_DEPOSIT: lambda x: o.pay_deposit(x, D("5000.00"), T1),
    Step.ALLOCATE: lambda x: o.allocate(x, VIN, "M5", "M5-LR", T1),
    Step.INVOICE: lambda x: o.invoice(x, "24312000000000012345", T1),
    Step.DELIVER: lambda x: o.deliver(x, VIN, T1),
    Step.CANCEL: lambda x: o.cancel(x, "changed their mind", T1),
}


def in_state(state: OrderState) -> Order:
    """An order as the happy path leaves it in `state` (CANCELLED: from CONFIRMED)."""
    order = placed()
    path = [Step.PAY_DEPOSIT, Step.ALLOCATE, Step.INVOICE, Step.DELIVER]
    if state is S.CANCELLED:
        return CALLS[Step.CANCEL](CALLS[Step.PAY_DEPOSIT](order))
    for step in path:
        if order.state is state:
            break
        order = CALLS[step](order)
    assert order.state is state
    return order


@pytest.mark.parametrize("state", list(S))
@pytest.mark.parametrize("step", list(Step))
def test_every_state_and_step(state: OrderState, step: Step) -> None:
    order = in_state(state)
    target = TRANSITIONS.get((state, step))
    if target is not None:
        after = CALLS[step](order)
        assert (after.state, after.version, after.update_time) == (target, order.version + 1, T1)
    else:
        with pytest.raises(FailedPrecondition) as caught:
            CALLS[step](order)
        assert caught.value.code == "FAILED_PRECONDITION"
        assert caught.value.reason == "ILLEGAL_TRANSITION"
        assert caught.value.metadata == {"current_state": state.value, "step": step.value}
        assert state.value in caught.value.message


def test_the_table() -> None:
    legal = {(s.value, step.value) for s, step in TRANSITIONS}
    assert len(legal) == 8
    assert {s for s, step in TRANSITIONS if step is Step.CANCEL} == set(S) - {
        S.DELIVERED,
        S.CANCELLED,
    }
    assert o.allowed(S.DELIVERED) == [] == o.allowed(S.CANCELLED)
    assert o.allowed(S.CONFIRMED) == [Step.ALLOCATE, Step.CANCEL]


def test_place() -> None:
    order = placed(D("5000"))
    assert (order.state, order.version, order.deposit, order.deposit_paid) == (
        S.DEPOSIT_PENDING,
        1,
        D("5000.00"),
        D("0.00"),
    )
    assert order.option_codes == ("PAINT-RED", "WHEEL-21")
    assert (order.vin, order.invoice_time, order.refund) == ("", None, D("0.00"))


@pytest.mark.parametrize(
    ("kw", "field", "fragment"),
    [
        ({"deposit": D("0")}, "deposit", "more than zero"),
        ({"deposit": D("-1")}, "deposit", "negative"),
        ({"deposit": D("0.001")}, "deposit", "2 decimals"),
        ({"deposit": D("250000.01")}, "deposit", "at most the invoice price"),
        ({"price": D("0")}, "invoice_price", "more than zero"),
        ({"member_id": " "}, "member_id", "member id"),
    ],
)
def test_place_validation(kw: dict[str, object], field: str, fragment: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        placed(**kw)  # type: ignore[arg-type]
    (violation,) = caught.value.field_violations
    assert violation.field == field and fragment in violation.description


def test_deposit_may_be_the_whole_price() -> None:
    assert placed(D("250000.00")).deposit == D("250000.00")


def test_pay_deposit_must_be_exact() -> None:
    for amount in (D("4999.99"), D("5000.01")):
        with pytest.raises(InvalidArgument) as caught:
            o.pay_deposit(placed(), amount, T1)
        assert caught.value.field_violations[0].field == "amount"
    assert o.pay_deposit(placed(), D("5000"), T1).deposit_paid == D("5000.00")


def test_allocate_checks_the_car() -> None:
    confirmed = in_state(S.CONFIRMED)
    with pytest.raises(InvalidArgument):
        o.allocate(confirmed, "1HGCM82633A123456", "M5", "M5-LR", T1)
    for model, trim in (("M7", "M5-LR"), ("M5", "M5-SR")):
        with pytest.raises(FailedPrecondition) as caught:
            o.allocate(confirmed, VIN, model, trim, T1)
        assert caught.value.reason == "VEHICLE_MISMATCH"
    assert o.allocate(confirmed, VIN.lower(), "M5", "M5-LR", T1).vin == VIN


def test_invoice_and_deliver() -> None:
    invoiced = in_state(S.INVOICED)
    assert (invoiced.invoice_number, invoiced.invoice_time) == ("24312000000000012345", T1)
    with pytest.raises(InvalidArgument):
        o.invoice(in_state(S.ALLOCATED), "  ", T1)
    with pytest.raises(InvalidArgument):
        o.invoice(in_state(S.ALLOCATED), "1" * 41, T1)
    with pytest.raises(FailedPrecondition) as other:
        o.deliver(invoiced, VIN2, T1)
    assert other.value.reason == "VEHICLE_MISMATCH"
    with pytest.raises(InvalidArgument):
        o.deliver(invoiced, VIN, T1 - timedelta(seconds=1))
    delivered = o.deliver(invoiced, VIN, T1 + timedelta(hours=3))
    assert delivered.delivery_time == T1 + timedelta(hours=3)


def test_cancel_needs_a_reason() -> None:
    for reason in ("", "   ", "x" * 201):
        with pytest.raises(InvalidArgument):
            o.cancel(placed(), reason, T1)


def test_refund_rules_are_a_table() -> None:
    assert dict(REFUNDS) == {
        S.DEPOSIT_PENDING: Refund.NOTHING_PAID,
        S.CONFIRMED: Refund.FULL,
        S.ALLOCATED: Refund.LESS_FORFEIT,
        S.INVOICED: Refund.FORFEITED,
    }
    assert set(REFUNDS) == {s for s, step in TRANSITIONS if step is Step.CANCEL}


@pytest.mark.parametrize(
    ("state", "forfeit", "waive", "refund"),
    [
        (S.DEPOSIT_PENDING, D("0"), False, D("0.00")),
        (S.CONFIRMED, D("1000"), False, D("5000.00")),
        (S.ALLOCATED, D("0"), False, D("5000.00")),
        (S.ALLOCATED, D("1000"), False, D("4000.00")),
        (S.ALLOCATED, D("9000"), False, D("0.00")),
        (S.ALLOCATED, D("1000"), True, D("5000.00")),
        (S.INVOICED, D("0"), False, D("0.00")),
        (S.INVOICED, D("0"), True, D("5000.00")),
    ],
)
def test_refund_per_state(state: OrderState, forfeit: D, waive: bool, refund: D) -> None:
    policy = RefundPolicy(allocated_forfeit=forfeit)
    cancelled = o.cancel(in_state(state), " found a cheaper one ", T1, policy=policy, waive=waive)
    assert (cancelled.state, cancelled.refund, cancelled.cancel_reason) == (
        S.CANCELLED,
        refund,
        "found a cheaper one",
    )


@given(
    st.sampled_from(sorted(REFUNDS)),
    st.decimals(min_value=0, max_value=100000, places=2),
    st.booleans(),
)
def test_a_refund_never_exceeds_what_was_paid(state: OrderState, forfeit: D, waive: bool) -> None:
    order = in_state(state)
    refund = o.refund_for(order, RefundPolicy(forfeit), waive=waive)
    assert D("0") <= refund <= order.deposit_paid


def test_refund_policy_is_checked() -> None:
    with pytest.raises(InvalidArgument):
        RefundPolicy(D("-1"))


def test_etag() -> None:
    order = placed()
    o.check_etag(order, "")
    o.check_etag(order, o.etag(order))
    paid = o.pay_deposit(order, D("5000"), T1)
    assert o.etag(paid) != o.etag(order)
    assert o.etag(replace(order, id="ord2")) != o.etag(order)
    assert len(o.etag(order)) <= 64
    with pytest.raises(Aborted) as caught:
        o.check_etag(paid, o.etag(order))
    assert caught.value.reason == "ETAG_MISMATCH" and caught.value.code == "ABORTED"

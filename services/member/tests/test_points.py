"""MemberService over a real server (harness.py): points earned and redeemed exactly once,
never overdrawn, expiring first-in first-out, tiers with their reasons, AIP-158 paging."""

from __future__ import annotations

import asyncio
import datetime as dt

import grpc
import pytest
from marque.member.v1 import member_pb2, member_service_pb2
from prometheus_client import REGISTRY

from services.member.tests.harness import (
    OEM,
    T0,
    Harness,
    customer,
    fails,
    md,
    reason,
)

# ---------------------------------------------------------------------- points


async def test_earn_is_idempotent(member: Harness) -> None:
    a = await member.register("13800000021")
    first = await member.earn(a.id, 100, request_id="earn-1")
    retry = await member.earn(a.id, 100, request_id="earn-1")
    assert retry.transaction.id == first.transaction.id
    assert retry.member.points_balance == 100
    assert first.transaction.expire_time.ToDatetime(tzinfo=dt.UTC) == T0.replace(year=2027)
    await member.earn(a.id, 50)
    assert await member.assert_balance_is_ledger_sum(a.id) == 150
    assert len(await member.ledger(a.id)) == 2
    # Customers and dealers cannot mint points.
    await fails(member.earn(a.id, 5, caller=customer(a.id)), grpc.StatusCode.PERMISSION_DENIED)
    await fails(member.earn(a.id, 0), grpc.StatusCode.INVALID_ARGUMENT)
    await fails(member.earn("m_nope", 5), grpc.StatusCode.NOT_FOUND)
    sample = REGISTRY.get_sample_value("marque_points_total", {"direction": "earn"})
    assert sample is not None and sample >= 150


@pytest.mark.parametrize(("balance", "each", "winners"), [(100, 100, 1), (100, 30, 3)])
async def test_concurrent_redemptions_never_overdraw(
    member: Harness, balance: int, each: int, winners: int
) -> None:
    a = await member.register("13800000031")
    await member.earn(a.id, balance)
    results = await asyncio.gather(
        *(member.redeem(a.id, each) for _ in range(12)), return_exceptions=True
    )
    ok = [r for r in results if not isinstance(r, BaseException)]
    refused = [r for r in results if isinstance(r, grpc.aio.AioRpcError)]
    assert len(ok) == winners and len(refused) == 12 - winners
    assert all(r.code() == grpc.StatusCode.FAILED_PRECONDITION for r in refused)
    assert all(reason(r) == "INSUFFICIENT_POINTS" for r in refused)
    assert await member.assert_balance_is_ledger_sum(a.id) == balance - winners * each


async def test_redeem_retry_and_customer_self_service(member: Harness) -> None:
    a = await member.register("13800000041")
    b = await member.register("13800000042")
    await member.earn(a.id, 100)
    r1 = await member.redeem(a.id, 40, caller=customer(a.id), request_id="coupon-1")
    r2 = await member.redeem(a.id, 40, caller=customer(a.id), request_id="coupon-1")
    assert r1.transaction.id == r2.transaction.id and r2.member.points_balance == 60
    await fails(member.redeem(b.id, 1, caller=customer(a.id)), grpc.StatusCode.NOT_FOUND)


async def test_points_expire_fifo_after_24_months(member: Harness) -> None:
    a = await member.register("13800000051")
    await member.earn(a.id, 100)  # lot 1, expires T0 + 24 months
    member.clock.advance(days=365)
    await member.earn(a.id, 50)  # lot 2
    await member.redeem(a.id, 30)  # taken from lot 1 (oldest first)
    member.clock.now = T0.replace(year=2027) + dt.timedelta(days=1)
    got = await member.get(a.id)
    assert got.points_balance == 50
    entries = await member.ledger(a.id)
    expired = [t for t in entries if t.kind == member_pb2.POINT_TRANSACTION_KIND_EXPIRE]
    assert [t.points for t in expired] == [-70]
    await fails(member.redeem(a.id, 51), grpc.StatusCode.FAILED_PRECONDITION)
    member.clock.advance(days=366)
    assert (await member.get(a.id)).points_balance == 0
    assert await member.assert_balance_is_ledger_sum(a.id) == 0


async def test_tier_changes_are_recorded_with_reasons(member: Harness) -> None:
    a = await member.register("13800000061")
    assert (await member.earn(a.id, 1000)).member.tier.code == "SILVER"
    gold = (await member.earn(a.id, 4000)).member
    assert gold.tier.code == "GOLD" and "free pick-up and delivery" in gold.tier.benefits
    assert gold.qualifying_points == 5000
    await member.redeem(a.id, 4500)  # spending does not lower the tier
    assert (await member.get(a.id)).tier.code == "GOLD"
    member.clock.advance(days=370)  # the earnings roll out of the 12-month window
    assert (await member.get(a.id)).tier.code == ""
    changes = await member.stub.ListTierChanges(
        member_service_pb2.ListTierChangesRequest(member_id=a.id), metadata=md(customer(a.id))
    )
    got = [(c.from_tier, c.to_tier) for c in changes.tier_changes]
    assert got == [("GOLD", ""), ("SILVER", "GOLD"), ("", "SILVER")]
    assert "reached GOLD (5000)" in changes.tier_changes[1].reason
    assert "fell below" in changes.tier_changes[0].reason


async def test_paging_follows_aip_158(member: Harness) -> None:
    a = await member.register("13800000071")
    b = await member.register("13800000072")
    for _ in range(55):
        await member.earn(a.id, 1)
    default = await member.stub.ListPointTransactions(
        member_service_pb2.ListPointTransactionsRequest(member_id=a.id), metadata=md(OEM)
    )
    assert len(default.transactions) == 50 and default.next_page_token
    rest = await member.stub.ListPointTransactions(
        member_service_pb2.ListPointTransactionsRequest(
            member_id=a.id, page_token=default.next_page_token
        ),
        metadata=md(OEM),
    )
    assert len(rest.transactions) == 5 and not rest.next_page_token
    seqs = [t.id for t in [*default.transactions, *rest.transactions]]
    assert len(set(seqs)) == 55
    assert len(await member.ledger(a.id)) == 55
    big = await member.stub.ListPointTransactions(
        member_service_pb2.ListPointTransactionsRequest(member_id=a.id, page_size=5000),
        metadata=md(OEM),
    )
    assert len(big.transactions) == 55
    for bad in (
        member_service_pb2.ListPointTransactionsRequest(member_id=a.id, page_size=-1),
        member_service_pb2.ListPointTransactionsRequest(member_id=a.id, page_token="garbage!"),
        member_service_pb2.ListPointTransactionsRequest(
            member_id=b.id, page_token=default.next_page_token
        ),
    ):
        await fails(
            member.stub.ListPointTransactions(bad, metadata=md(OEM)),
            grpc.StatusCode.INVALID_ARGUMENT,
        )


# ---------------------------------------------------------------------- merge

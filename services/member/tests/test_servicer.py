"""MemberService over a real in-process grpc.aio server (mesh.server.start), on SQLite and
PostgreSQL through the `database_url` fixture. Tokens are minted for each principal, so the
mesh's auth, access policy and validation run as in production. Time is a fake clock
injected into build_spec, so expiry and the rolling tier window are tested by moving it.

Access decision documented here and in the proto: a customer (or dealer) asking for a
member it may not see gets NOT_FOUND, exactly like a member that does not exist.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import importlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
import sqlalchemy as sa
from google.protobuf.field_mask_pb2 import FieldMask
from google.protobuf.timestamp_pb2 import Timestamp
from grpc_status import rpc_status
from marque.member.v1 import member_pb2, member_service_pb2, member_service_pb2_grpc
from prometheus_client import REGISTRY

from mesh.config import Settings
from mesh.identity import Caller, Kind
from mesh.keys import mint_token
from mesh.server import start
from services.member.app import build_spec
from services.member.domain.config import MemberConfig

# google.rpc ships no type stubs; imported dynamically so mypy sees a plain module.
error_details_pb2: Any = importlib.import_module("google.rpc.error_details_pb2")

OEM = Caller(Kind.OEM, "staff-1")
SERVICE = Caller(Kind.SERVICE, "sales", service="sales")
T0 = dt.datetime(2025, 3, 1, 9, 0, tzinfo=dt.UTC)
MOBILE = member_pb2.IDENTITY_TYPE_MOBILE
EMAIL = member_pb2.IDENTITY_TYPE_EMAIL
UNIONID = member_pb2.IDENTITY_TYPE_WECHAT_UNIONID
VIN_A = "LZ91AE3A4J3LSA560"
VIN_B = "1C4RJEAG2EC476429"
VIN_C = "JN1AZ44EX9M403788"


def customer(member_id: str) -> Caller:
    return Caller(Kind.CUSTOMER, f"app-{member_id}", member_id=member_id)


def dealer(dealer_id: str) -> Caller:
    return Caller(Kind.DEALER, f"{dealer_id}-staff", dealer_id=dealer_id)


def md(caller: Caller) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {mint_token(caller)}"),)


def ident(type_: Any, value: str, app_id: str = "") -> member_service_pb2.IdentityKey:
    return member_service_pb2.IdentityKey(type=type_, value=value, app_id=app_id)


class Clock:
    """A settable clock for the server."""

    def __init__(self, now: dt.datetime) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, **kw: float) -> None:
        self.now += dt.timedelta(**kw)


@dataclass
class Harness:
    stub: member_service_pb2_grpc.MemberServiceStub
    clock: Clock
    seq: int = 0

    def rid(self) -> str:
        self.seq += 1
        return f"req-{self.seq}"

    async def register(
        self, mobile: str, name: str = "Li Lei", caller: Caller = SERVICE
    ) -> member_pb2.Member:
        resp = await self.stub.RegisterMember(
            member_service_pb2.RegisterMemberRequest(
                identity=ident(MOBILE, mobile), display_name=name, request_id=self.rid()
            ),
            metadata=md(caller),
        )
        return resp.member

    async def earn(
        self, member_id: str, points: int, caller: Caller = SERVICE, request_id: str = ""
    ) -> member_service_pb2.EarnPointsResponse:
        return await self.stub.EarnPoints(
            member_service_pb2.EarnPointsRequest(
                member_id=member_id,
                points=points,
                reason="vehicle purchase",
                source_ref="order-1",
                request_id=request_id or self.rid(),
            ),
            metadata=md(caller),
        )

    async def redeem(
        self, member_id: str, points: int, caller: Caller = SERVICE, request_id: str = ""
    ) -> member_service_pb2.RedeemPointsResponse:
        return await self.stub.RedeemPoints(
            member_service_pb2.RedeemPointsRequest(
                member_id=member_id,
                points=points,
                reason="coupon",
                request_id=request_id or self.rid(),
            ),
            metadata=md(caller),
        )

    async def get(self, member_id: str, caller: Caller = OEM) -> member_pb2.Member:
        resp = await self.stub.GetMember(
            member_service_pb2.GetMemberRequest(member_id=member_id), metadata=md(caller)
        )
        return resp.member

    async def ledger(self, member_id: str) -> list[member_pb2.PointTransaction]:
        out: list[member_pb2.PointTransaction] = []
        token = ""
        while True:
            page = await self.stub.ListPointTransactions(
                member_service_pb2.ListPointTransactionsRequest(
                    member_id=member_id, page_size=7, page_token=token
                ),
                metadata=md(OEM),
            )
            out += page.transactions
            token = page.next_page_token
            if not token:
                return out

    async def assert_balance_is_ledger_sum(self, member_id: str) -> int:
        member = await self.get(member_id)
        entries = await self.ledger(member_id)
        assert member.points_balance == sum(t.points for t in entries)
        assert member.points_balance >= 0
        return member.points_balance

    async def bind(
        self, member_id: str, vin: str, dealer_id: str = "D1"
    ) -> member_service_pb2.BindVehicleResponse:
        return await self.stub.BindVehicle(
            member_service_pb2.BindVehicleRequest(
                member_id=member_id,
                vin=vin,
                brand="Marque",
                model="M5",
                purchase_date="2025-03-01",
                dealer_id=dealer_id,
                request_id=self.rid(),
            ),
            metadata=md(SERVICE),
        )


@asynccontextmanager
async def serve(
    database_url: str, config: MemberConfig | None = None, **settings_kw: Any
) -> AsyncIterator[Harness]:
    clock = Clock(T0)
    settings = Settings(
        service="member", grpc_port=0, metrics_port=0, database_url=database_url, **settings_kw
    )
    running = await start(build_spec(config=config or MemberConfig(), clock=clock), settings)
    try:
        async with grpc.aio.insecure_channel(running.address) as ch:
            yield Harness(member_service_pb2_grpc.MemberServiceStub(ch), clock)
    finally:
        await running.stop(1.0)


@pytest.fixture
async def member(database_url: str) -> AsyncIterator[Harness]:
    async with serve(database_url) as h:
        yield h


async def fails(call: object, code: grpc.StatusCode) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await call  # type: ignore[misc]
    assert e.value.code() == code, e.value.details()
    return e.value


def reason(err: grpc.aio.AioRpcError) -> str:
    status = rpc_status.from_call(err)  # type: ignore[arg-type]
    assert status is not None
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            return info.reason
    return ""


# ---------------------------------------------------------------------- identity


async def test_register_is_idempotent_by_identity_and_request_id(member: Harness) -> None:
    first = await member.stub.RegisterMember(
        member_service_pb2.RegisterMemberRequest(
            identity=ident(MOBILE, "138 1234 5678"), display_name="Li Lei", request_id="r1"
        ),
        metadata=md(SERVICE),
    )
    assert first.created and first.member.identities[0].value == "+8613812345678"
    retry = await member.stub.RegisterMember(
        member_service_pb2.RegisterMemberRequest(
            identity=ident(MOBILE, "138 1234 5678"), display_name="Li Lei", request_id="r1"
        ),
        metadata=md(SERVICE),
    )
    assert retry.member.id == first.member.id and retry.created
    again = await member.stub.RegisterMember(
        member_service_pb2.RegisterMemberRequest(
            identity=ident(MOBILE, "+86 13812345678"), request_id="r2"
        ),
        metadata=md(SERVICE),
    )
    assert again.member.id == first.member.id and not again.created
    err = await fails(
        member.stub.RegisterMember(
            member_service_pb2.RegisterMemberRequest(
                identity=ident(MOBILE, "13912345678"), request_id="r1"
            ),
            metadata=md(SERVICE),
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert reason(err) == "REQUEST_ID_REUSED"
    await fails(
        member.stub.RegisterMember(
            member_service_pb2.RegisterMemberRequest(
                identity=ident(MOBILE, "12012345678"), request_id="r3"
            ),
            metadata=md(SERVICE),
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    # The proto's field rules run in the mesh before the servicer: request_id is required.
    await fails(
        member.stub.RegisterMember(
            member_service_pb2.RegisterMemberRequest(identity=ident(MOBILE, "13912345678")),
            metadata=md(SERVICE),
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    # Customers cannot register (the app backend does, as a service).
    await fails(
        member.stub.RegisterMember(
            member_service_pb2.RegisterMemberRequest(
                identity=ident(MOBILE, "13912345678"), request_id="r4"
            ),
            metadata=md(customer(first.member.id)),
        ),
        grpc.StatusCode.PERMISSION_DENIED,
    )


async def test_concurrent_first_registrations_make_one_member(member: Harness) -> None:
    calls = [
        member.stub.RegisterMember(
            member_service_pb2.RegisterMemberRequest(
                identity=ident(MOBILE, "13700000001"), request_id=f"c{i}"
            ),
            metadata=md(SERVICE),
        )
        for i in range(8)
    ]
    results = await asyncio.gather(*calls)
    assert len({r.member.id for r in results}) == 1
    assert sum(r.created for r in results) == 1


async def test_link_identity_and_conflict(member: Harness) -> None:
    a = await member.register("13800000001")
    b = await member.register("13800000002")
    # The channel backend links an identity it verified, as a service (a customer cannot:
    # see test_leaks.py).
    linked = await member.stub.LinkIdentity(
        member_service_pb2.LinkIdentityRequest(
            member_id=a.id, identity=ident(EMAIL, "Li.Lei@Example.com"), request_id="l1"
        ),
        metadata=md(SERVICE),
    )
    assert {i.value for i in linked.member.identities} == {"+8613800000001", "li.lei@example.com"}
    err = await fails(
        member.stub.LinkIdentity(
            member_service_pb2.LinkIdentityRequest(
                member_id=b.id, identity=ident(EMAIL, "li.lei@example.com"), request_id="l2"
            ),
            metadata=md(SERVICE),
        ),
        grpc.StatusCode.FAILED_PRECONDITION,
    )
    assert reason(err) == "IDENTITY_BELONGS_TO_OTHER_MEMBER"
    # A customer cannot touch another member: NOT_FOUND, as if it did not exist.
    await fails(
        member.stub.LinkIdentity(
            member_service_pb2.LinkIdentityRequest(
                member_id=b.id, identity=ident(EMAIL, "x@example.com"), request_id="l3"
            ),
            metadata=md(customer(a.id)),
        ),
        grpc.StatusCode.NOT_FOUND,
    )
    openid = await member.stub.LinkIdentity(
        member_service_pb2.LinkIdentityRequest(
            member_id=b.id,
            identity=ident(member_pb2.IDENTITY_TYPE_WECHAT_OPENID, "oXyz_123456", "wxapp1"),
            request_id="l4",
        ),
        metadata=md(SERVICE),
    )
    assert any(i.app_id == "wxapp1" for i in openid.member.identities)
    found = await member.stub.FindMember(
        member_service_pb2.FindMemberRequest(
            identity=ident(member_pb2.IDENTITY_TYPE_WECHAT_OPENID, "oXyz_123456", "wxapp1")
        ),
        metadata=md(SERVICE),
    )
    assert found.member.id == b.id
    await fails(
        member.stub.FindMember(
            member_service_pb2.FindMemberRequest(
                identity=ident(member_pb2.IDENTITY_TYPE_WECHAT_OPENID, "oXyz_123456", "wxapp2")
            ),
            metadata=md(SERVICE),
        ),
        grpc.StatusCode.NOT_FOUND,
    )


async def test_update_member_with_field_mask(member: Harness) -> None:
    a = await member.register("13800000011", name="Old")
    resp = await member.stub.UpdateMember(
        member_service_pb2.UpdateMemberRequest(
            member=member_pb2.Member(id=a.id, display_name="New", city="Hangzhou"),
            update_mask=FieldMask(paths=["city"]),
            request_id="u1",
        ),
        metadata=md(customer(a.id)),
    )
    assert resp.member.city == "Hangzhou" and resp.member.display_name == "Old"
    assert resp.member.audit.update_actor == f"customer:app-{a.id}"
    await fails(
        member.stub.UpdateMember(
            member_service_pb2.UpdateMemberRequest(
                member=member_pb2.Member(id=a.id, points_balance=10**6),
                update_mask=FieldMask(paths=["points_balance"]),
                request_id="u2",
            ),
            metadata=md(OEM),
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
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


async def test_merge_moves_everything_and_leaves_a_pointer(member: Harness) -> None:
    winner = await member.register("13800000081", name="Han Meimei")
    loser = await member.register("13800000082", name="")
    await member.stub.LinkIdentity(
        member_service_pb2.LinkIdentityRequest(
            member_id=loser.id, identity=ident(UNIONID, "union_abc123"), request_id="m-l"
        ),
        metadata=md(SERVICE),
    )
    await member.earn(winner.id, 100)
    member.clock.advance(days=30)
    await member.earn(loser.id, 300)
    await member.redeem(loser.id, 100)
    await member.bind(loser.id, VIN_A)
    await member.stub.RecordConsent(
        member_service_pb2.RecordConsentRequest(
            member_id=loser.id,
            purpose=member_pb2.CONSENT_PURPOSE_WECHAT_PUSH,
            channel=member_pb2.CONSENT_CHANNEL_WECHAT,
            action=member_pb2.CONSENT_ACTION_GRANT,
            source="wechat:subscribe",
            request_id="m-c",
        ),
        metadata=md(SERVICE),
    )
    # Linking the loser's identity to the winner is refused until OEM staff merge.
    await fails(
        member.stub.LinkIdentity(
            member_service_pb2.LinkIdentityRequest(
                member_id=winner.id, identity=ident(MOBILE, "13800000082"), request_id="m-x"
            ),
            metadata=md(SERVICE),
        ),
        grpc.StatusCode.FAILED_PRECONDITION,
    )
    request = member_service_pb2.MergeMembersRequest(
        winner_id=winner.id, loser_id=loser.id, reason="same person", request_id="merge-1"
    )
    await fails(
        member.stub.MergeMembers(request, metadata=md(SERVICE)), grpc.StatusCode.PERMISSION_DENIED
    )
    merged = await member.stub.MergeMembers(request, metadata=md(OEM))
    again = await member.stub.MergeMembers(request, metadata=md(OEM))
    assert again.winner.points_balance == merged.winner.points_balance == 300
    assert merged.loser.state == member_pb2.MEMBER_STATE_MERGED
    assert merged.loser.merged_into == winner.id and merged.loser.points_balance == 0
    assert {i.value for i in merged.winner.identities} == {
        "+8613800000081",
        "+8613800000082",
        "union_abc123",
    }
    found = await member.stub.FindMember(
        member_service_pb2.FindMemberRequest(identity=ident(UNIONID, "union_abc123")),
        metadata=md(SERVICE),
    )
    assert found.member.id == winner.id
    cars = await member.stub.ListVehicles(
        member_service_pb2.ListVehiclesRequest(member_id=winner.id), metadata=md(OEM)
    )
    assert [c.vin for c in cars.vehicles] == [VIN_A]
    assert [h.reason for h in cars.vehicles[0].history] == ["bind", "merge"]
    check = await member.stub.CheckConsent(
        member_service_pb2.CheckConsentRequest(
            member_id=winner.id,
            purpose=member_pb2.CONSENT_PURPOSE_WECHAT_PUSH,
            channel=member_pb2.CONSENT_CHANNEL_WECHAT,
        ),
        metadata=md(SERVICE),
    )
    assert check.granted
    # The loser refuses changes, naming the winner; its customer token still reads both.
    err = await fails(member.earn(loser.id, 1), grpc.StatusCode.FAILED_PRECONDITION)
    assert reason(err) == "MEMBER_MERGED" and winner.id in (err.details() or "")
    assert (await member.get(winner.id, caller=customer(loser.id))).id == winner.id
    # Carried-over points keep their expiry: the loser's lot still expires on its date.
    member.clock.now = T0.replace(year=2027) + dt.timedelta(days=1)
    assert (await member.get(winner.id)).points_balance == 200
    for m in (winner.id, loser.id):
        await member.assert_balance_is_ledger_sum(m)
    await fails(
        member.stub.MergeMembers(
            member_service_pb2.MergeMembersRequest(
                winner_id=winner.id, loser_id=winner.id, request_id="merge-2"
            ),
            metadata=md(OEM),
        ),
        grpc.StatusCode.FAILED_PRECONDITION,
    )


# ---------------------------------------------------------------------- vehicles


async def test_bind_and_transfer_keep_history(member: Harness) -> None:
    a = await member.register("13800000091")
    b = await member.register("13800000092")
    bad = await fails(member.bind(a.id, "1HGCM82633A123456"), grpc.StatusCode.INVALID_ARGUMENT)
    assert "check digit" in (bad.details() or "")
    await fails(member.bind(a.id, "LZ91AE3A4J3LSA56O"), grpc.StatusCode.INVALID_ARGUMENT)
    await fails(member.bind(a.id, VIN_A[:16]), grpc.StatusCode.INVALID_ARGUMENT)
    bound = await member.bind(a.id, VIN_A.lower())
    assert bound.vehicle.vin == VIN_A and bound.vehicle.member_id == a.id
    assert (await member.bind(a.id, VIN_A)).vehicle.member_id == a.id  # same owner: no-op
    err = await fails(member.bind(b.id, VIN_A), grpc.StatusCode.FAILED_PRECONDITION)
    assert reason(err) == "VIN_OWNED_BY_OTHER_MEMBER"
    member.clock.advance(days=10)
    moved = await member.stub.TransferVehicle(
        member_service_pb2.TransferVehicleRequest(vin=VIN_A, to_member_id=b.id, request_id="t1"),
        metadata=md(SERVICE),
    )
    history = moved.vehicle.history
    assert [(h.member_id, h.reason, h.HasField("end_time")) for h in history] == [
        (a.id, "bind", True),
        (b.id, "transfer", False),
    ]
    a_cars = await member.stub.ListVehicles(
        member_service_pb2.ListVehiclesRequest(member_id=a.id), metadata=md(customer(a.id))
    )
    assert not a_cars.vehicles
    b_cars = await member.stub.ListVehicles(
        member_service_pb2.ListVehiclesRequest(member_id=b.id), metadata=md(customer(b.id))
    )
    # The new owner sees the history but not who owned the car before.
    assert [h.member_id for h in b_cars.vehicles[0].history] == ["", b.id]
    await fails(
        member.stub.TransferVehicle(
            member_service_pb2.TransferVehicleRequest(
                vin=VIN_C, to_member_id=b.id, request_id="t2"
            ),
            metadata=md(SERVICE),
        ),
        grpc.StatusCode.NOT_FOUND,
    )
    await member.bind(b.id, VIN_B)
    page = await member.stub.ListVehicles(
        member_service_pb2.ListVehiclesRequest(member_id=b.id, page_size=1), metadata=md(OEM)
    )
    nxt = await member.stub.ListVehicles(
        member_service_pb2.ListVehiclesRequest(
            member_id=b.id, page_size=1, page_token=page.next_page_token
        ),
        metadata=md(OEM),
    )
    assert [v.vin for v in [*page.vehicles, *nxt.vehicles]] == sorted([VIN_A, VIN_B])
    assert not nxt.next_page_token


# ---------------------------------------------------------------------- consent


async def test_consent_checks(member: Harness) -> None:
    a = await member.register("13800000101")
    sms, app = member_pb2.CONSENT_PURPOSE_MARKETING_SMS, member_pb2.CONSENT_CHANNEL_APP

    async def check(**who: object) -> member_service_pb2.CheckConsentResponse:
        return await member.stub.CheckConsent(
            member_service_pb2.CheckConsentRequest(purpose=sms, channel=app, **who),  # type: ignore[arg-type]
            metadata=md(SERVICE),
        )

    async def record(action: Any, when: dt.datetime, rid: str) -> member_pb2.ConsentState:
        ts = Timestamp()
        ts.FromDatetime(when)
        resp = await member.stub.RecordConsent(
            member_service_pb2.RecordConsentRequest(
                member_id=a.id,
                purpose=sms,
                channel=app,
                action=action,
                occur_time=ts,
                source="app:privacy-settings",
                request_id=rid,
            ),
            metadata=md(customer(a.id)),
        )
        return resp.state

    assert not (await check(member_id=a.id)).granted  # no record is no consent
    member.clock.advance(hours=2)
    assert (await record(member_pb2.CONSENT_ACTION_GRANT, T0, "c1")).granted
    got = await check(identity=ident(MOBILE, "+86 138 0000 0101"))
    assert got.granted and got.latest.source == "app:privacy-settings"
    assert got.latest.actor == f"customer:app-{a.id}"
    later = T0 + dt.timedelta(hours=1)
    assert not (await record(member_pb2.CONSENT_ACTION_WITHDRAW, later, "c2")).granted
    # An older paper form arriving late does not override the newer withdrawal.
    late = await record(member_pb2.CONSENT_ACTION_GRANT, T0 - dt.timedelta(days=3), "c3")
    assert not late.granted
    assert not (await check(member_id=a.id)).granted
    # Another channel or purpose has no record: not granted.
    other = await member.stub.CheckConsent(
        member_service_pb2.CheckConsentRequest(
            member_id=a.id, purpose=sms, channel=member_pb2.CONSENT_CHANNEL_WECHAT
        ),
        metadata=md(SERVICE),
    )
    assert not other.granted
    assert not (await check(identity=ident(MOBILE, "13999999999"))).granted
    assert not (await check(member_id="m_unknown")).granted
    listed = await member.stub.ListConsents(
        member_service_pb2.ListConsentsRequest(member_id=a.id), metadata=md(customer(a.id))
    )
    assert [(c.purpose, c.granted) for c in listed.consents] == [(sms, False)]
    future = T0 + dt.timedelta(days=1)
    await fails(
        record(member_pb2.CONSENT_ACTION_GRANT, future, "c4"), grpc.StatusCode.INVALID_ARGUMENT
    )
    await fails(
        member.stub.RecordConsent(
            member_service_pb2.RecordConsentRequest(
                member_id=a.id, purpose=sms, channel=app, source="x", request_id="c5"
            ),
            metadata=md(SERVICE),
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
    )


# ---------------------------------------------------------------------- erasure


async def test_erasure_is_irreversible_and_idempotent(member: Harness) -> None:
    a = await member.register("13800000111", name="Zhang San")
    other = await member.register("13800000112")
    await member.stub.LinkIdentity(
        member_service_pb2.LinkIdentityRequest(
            member_id=a.id, identity=ident(EMAIL, "zhang@example.com"), request_id="e-l"
        ),
        metadata=md(SERVICE),
    )
    await member.earn(a.id, 1200)
    await member.redeem(a.id, 200)
    await member.bind(a.id, VIN_A)
    await fails(
        member.stub.EraseMember(
            member_service_pb2.EraseMemberRequest(member_id=other.id, request_id="e0"),
            metadata=md(customer(a.id)),
        ),
        grpc.StatusCode.NOT_FOUND,
    )
    await fails(
        member.stub.EraseMember(
            member_service_pb2.EraseMemberRequest(member_id=a.id, request_id="e0"),
            metadata=md(SERVICE),
        ),
        grpc.StatusCode.PERMISSION_DENIED,
    )
    erased = await member.stub.EraseMember(
        member_service_pb2.EraseMemberRequest(member_id=a.id, request_id="e1"),
        metadata=md(customer(a.id)),
    )
    m = erased.member
    assert m.state == member_pb2.MEMBER_STATE_ERASED
    assert not m.identities and not m.display_name and m.points_balance == 0 and not m.tier.code
    member.clock.advance(minutes=5)
    again = await member.stub.EraseMember(
        member_service_pb2.EraseMemberRequest(member_id=a.id, request_id="e2"),
        metadata=md(OEM),
    )
    assert again.erase_time == erased.erase_time
    for old in (ident(MOBILE, "13800000111"), ident(EMAIL, "zhang@example.com")):
        await fails(
            member.stub.FindMember(
                member_service_pb2.FindMemberRequest(identity=old), metadata=md(OEM)
            ),
            grpc.StatusCode.NOT_FOUND,
        )
    # Accounting stays: the ledger keeps the amounts and closes the balance.
    entries = await member.ledger(a.id)
    assert [t.points for t in reversed(entries)] == [1200, -200, -1000]
    assert entries[0].kind == member_pb2.POINT_TRANSACTION_KIND_FORFEIT
    await member.assert_balance_is_ledger_sum(a.id)
    # The car is released with its history (under the pseudonymous id), ready for a new owner.
    rebound = await member.bind(other.id, VIN_A)
    assert [h.reason for h in rebound.vehicle.history] == ["bind", "bind"]
    # The same mobile registers as a brand-new member; the erased one is never found.
    fresh = await member.stub.RegisterMember(
        member_service_pb2.RegisterMemberRequest(
            identity=ident(MOBILE, "13800000111"), request_id="e-new"
        ),
        metadata=md(SERVICE),
    )
    assert fresh.created and fresh.member.id != a.id
    await fails(member.earn(a.id, 1), grpc.StatusCode.FAILED_PRECONDITION)


# ---------------------------------------------------------------------- access


async def test_dealer_sees_only_its_customers_and_only_the_mobile(member: Harness) -> None:
    a = await member.register("13800000121")
    b = await member.register("13800000122")
    for m, value in ((a, "a@example.com"), (b, "b@example.com")):
        await member.stub.LinkIdentity(
            member_service_pb2.LinkIdentityRequest(
                member_id=m.id, identity=ident(EMAIL, value), request_id=f"d-{m.id}"
            ),
            metadata=md(SERVICE),
        )
    await member.bind(a.id, VIN_A, dealer_id="D1")
    await member.bind(b.id, VIN_B, dealer_id="D9")
    seen = await member.get(a.id, caller=dealer("D1"))
    assert [(i.type, i.value) for i in seen.identities] == [(MOBILE, "+8613800000121")]
    await fails(member.get(b.id, caller=dealer("D1")), grpc.StatusCode.NOT_FOUND)
    await fails(member.get(a.id, caller=dealer("D2")), grpc.StatusCode.NOT_FOUND)
    found = await member.stub.FindMember(
        member_service_pb2.FindMemberRequest(identity=ident(MOBILE, "13800000121")),
        metadata=md(dealer("D1")),
    )
    assert found.member.id == a.id and len(found.member.identities) == 1
    await fails(
        member.stub.FindMember(
            member_service_pb2.FindMemberRequest(identity=ident(EMAIL, "a@example.com")),
            metadata=md(dealer("D1")),
        ),
        grpc.StatusCode.PERMISSION_DENIED,
    )
    await fails(
        member.stub.FindMember(
            member_service_pb2.FindMemberRequest(identity=ident(MOBILE, "13800000122")),
            metadata=md(dealer("D1")),
        ),
        grpc.StatusCode.NOT_FOUND,
    )
    # A service visit at D1 (recorded by aftersales) lets D1 see b too.
    await member.stub.RecordDealerRelation(
        member_service_pb2.RecordDealerRelationRequest(
            member_id=b.id,
            dealer_id="D1",
            relation=member_service_pb2.DEALER_RELATION_SERVICE,
            vin=VIN_B,
            request_id="rel-1",
        ),
        metadata=md(SERVICE),
    )
    assert (await member.get(b.id, caller=dealer("D1"))).id == b.id
    # A lead link works without a car.
    c = await member.register("13800000123")
    await member.stub.RecordDealerRelation(
        member_service_pb2.RecordDealerRelationRequest(
            member_id=c.id,
            dealer_id="D3",
            relation=member_service_pb2.DEALER_RELATION_LEAD,
            request_id="rel-2",
        ),
        metadata=md(SERVICE),
    )
    assert (await member.get(c.id, caller=dealer("D3"))).id == c.id
    # Once the car is transferred away, the selling dealer no longer sees the old owner.
    await member.stub.TransferVehicle(
        member_service_pb2.TransferVehicleRequest(vin=VIN_A, to_member_id=c.id, request_id="t"),
        metadata=md(SERVICE),
    )
    await fails(member.get(a.id, caller=dealer("D1")), grpc.StatusCode.NOT_FOUND)
    # Dealers cannot mint points or merge, customers cannot read others.
    await fails(member.earn(c.id, 5, caller=dealer("D3")), grpc.StatusCode.PERMISSION_DENIED)
    await fails(member.get(b.id, caller=customer(a.id)), grpc.StatusCode.NOT_FOUND)
    assert (await member.get(a.id, caller=customer(a.id))).id == a.id
    await fails(
        member.stub.ListPointTransactions(
            member_service_pb2.ListPointTransactionsRequest(member_id=b.id),
            metadata=md(customer(a.id)),
        ),
        grpc.StatusCode.NOT_FOUND,
    )


async def test_request_ids_are_forgotten_after_their_retention(database_url: str) -> None:
    """The sweeper runs in the served process, on the service's clock: an earn's request id
    answers retries while kept, and its row is gone once older than the retention."""
    from mesh.db import Database
    from services.member.store import request_ids

    async def kept() -> int:
        async with db.engine.connect() as conn:
            q = sa.select(sa.func.count()).select_from(request_ids)
            return int((await conn.execute(q)).scalar_one())

    db = Database(database_url)
    try:
        async with serve(
            database_url, request_id_retention_days=1.0, retention_sweep_seconds=0.05
        ) as m:
            member = await m.register("13800138000")
            await m.earn(member.id, 100, request_id="earn-1")
            again = await m.earn(member.id, 100, request_id="earn-1")
            assert again.member.points_balance == 100  # a retry, not a second earn
            await asyncio.sleep(0.2)  # sweeps ran: nothing is a day old yet
            assert await kept() == 2  # the registration's and the earn's
            m.clock.advance(days=1, seconds=1)
            for _ in range(100):
                if await kept() == 0:
                    break
                await asyncio.sleep(0.05)
            assert await kept() == 0
    finally:
        await db.dispose()

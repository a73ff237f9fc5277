"""MemberService over a real in-process grpc.aio server (mesh.server.start), on SQLite and
PostgreSQL through the `database_url` fixture: the harness every servicer test uses.
Tokens are minted for each principal, so the mesh's auth, access policy and validation run
as in production. Time is a fake clock injected into build_spec, so expiry and the rolling
tier window are tested by moving it. The `member` fixture (conftest.py) serves one.
"""

from __future__ import annotations

import datetime as dt
import importlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
from grpc_status import rpc_status
from marque.member.v1 import member_pb2, member_service_pb2, member_service_pb2_grpc

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
    running = await start(
        build_spec(config=config or MemberConfig(), clock=clock, events=False), settings
    )
    try:
        async with grpc.aio.insecure_channel(running.address) as ch:
            yield Harness(member_service_pb2_grpc.MemberServiceStub(ch), clock)
    finally:
        await running.stop(1.0)


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

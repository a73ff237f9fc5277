"""MemberService over a real server (harness.py): cars and their ownership history, dealer
relations, consent records and checks."""

from __future__ import annotations

import datetime as dt
from typing import Any

import grpc
from google.protobuf.timestamp_pb2 import Timestamp
from marque.member.v1 import member_pb2, member_service_pb2

from services.member.tests.harness import (
    MOBILE,
    OEM,
    SERVICE,
    T0,
    VIN_A,
    VIN_B,
    VIN_C,
    Harness,
    customer,
    fails,
    ident,
    md,
    reason,
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

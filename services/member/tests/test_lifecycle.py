"""MemberService over a real server (harness.py): merging two members and erasing one."""

from __future__ import annotations

import datetime as dt

import grpc
from marque.member.v1 import member_pb2, member_service_pb2

from mesh.identity import Caller
from services.member.tests.harness import (
    EMAIL,
    MOBILE,
    OEM,
    SERVICE,
    T0,
    UNIONID,
    VIN_A,
    Harness,
    customer,
    fails,
    ident,
    md,
    reason,
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


async def test_the_erasure_status_names_who_has_erased_and_who_has_not(member: Harness) -> None:
    a = await member.register("13800000121")
    other = await member.register("13800000122")

    async def status(member_id: str, caller: Caller) -> member_service_pb2.GetErasureStatusResponse:
        return await member.stub.GetErasureStatus(
            member_service_pb2.GetErasureStatusRequest(member_id=member_id), metadata=md(caller)
        )

    never = await status(a.id, OEM)
    assert not never.HasField("erase_time") and not never.done and not never.pending
    await member.stub.EraseMember(
        member_service_pb2.EraseMemberRequest(member_id=a.id, request_id="s-e1"),
        metadata=md(customer(a.id)),
    )
    mine = await status(a.id, customer(a.id))
    assert [d.service for d in mine.done] == ["member"] and list(mine.pending) == ["lead", "sales"]
    assert mine.erase_time == mine.done[0].done_time
    for who, whose in ((customer(other.id), a.id), (OEM, "m_unknown")):
        await fails(status(whose, who), grpc.StatusCode.NOT_FOUND)
    await fails(status(a.id, SERVICE), grpc.StatusCode.PERMISSION_DENIED)

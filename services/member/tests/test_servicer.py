"""MemberService over a real server (harness.py): registration, identities, profile,
what a dealer may see, the retention of request ids.

Access decision documented here and in the proto: a customer (or dealer) asking for a
member it may not see gets NOT_FOUND, exactly like a member that does not exist.
"""

from __future__ import annotations

import asyncio

import grpc
import sqlalchemy as sa
from google.protobuf.field_mask_pb2 import FieldMask
from marque.member.v1 import member_pb2, member_service_pb2

from services.member.tests.harness import (
    EMAIL,
    MOBILE,
    OEM,
    SERVICE,
    VIN_A,
    VIN_B,
    Harness,
    customer,
    dealer,
    fails,
    ident,
    md,
    reason,
    serve,
)

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

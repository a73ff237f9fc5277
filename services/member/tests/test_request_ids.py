"""Request ids (AIP-155) on every mutating RPC of MemberService, over a real in-process
server on SQLite and PostgreSQL.

- same request id + same body: the first result, nothing applied twice;
- same request id + another body: INVALID_ARGUMENT `REQUEST_ID_REUSED`, nothing changed;
- request ids belong to their caller: the same string from two callers is two requests;
- erasure forgets what the requests asked (their fingerprints hashed personal data) but
  keeps refusing a reused id aimed at another member.

The mutating RPCs are taken from the service descriptor (every method whose request has a
`request_id`), so a new one fails `test_replays_and_reuses` until it has a case here.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
import sqlalchemy as sa
from google.protobuf.field_mask_pb2 import FieldMask
from google.protobuf.message import Message
from marque.member.v1 import member_pb2, member_service_pb2

from mesh.db import Database
from mesh.identity import Caller
from services.member import store
from services.member.tests.harness import (
    EMAIL,
    MOBILE,
    OEM,
    SERVICE,
    VIN_A,
    VIN_B,
    VIN_C,
    Harness,
    customer,
    dealer,
    fails,
    ident,
    md,
    reason,
    serve,
)

DESCRIPTOR = member_service_pb2.DESCRIPTOR.services_by_name["MemberService"]
MUTATING = sorted(m.name for m in DESCRIPTOR.methods if "request_id" in m.input_type.fields_by_name)
SMS, APP = member_pb2.CONSENT_PURPOSE_MARKETING_SMS, member_pb2.CONSENT_CHANNEL_APP
RID = "same-request-id"


@dataclass
class World:
    h: Harness
    a: str
    b: str
    c: str


@dataclass
class Case:
    caller: Caller
    request: Message
    other: Message  # the same request id with another body


Setup = Callable[[World], Awaitable[Case]]
CASES: dict[str, Setup] = {}


def case(method: str) -> Callable[[Setup], Setup]:
    def register(fn: Setup) -> Setup:
        CASES[method] = fn
        return fn

    return register


@case("RegisterMember")
async def _register(w: World) -> Case:
    def req(mobile: str) -> Message:
        return member_service_pb2.RegisterMemberRequest(
            identity=ident(MOBILE, mobile), display_name="Wang Wu", request_id=RID
        )

    return Case(SERVICE, req("13700000001"), req("13700000002"))


@case("LinkIdentity")
async def _link(w: World) -> Case:
    def req(email: str) -> Message:
        return member_service_pb2.LinkIdentityRequest(
            member_id=w.a, identity=ident(EMAIL, email), request_id=RID
        )

    return Case(SERVICE, req("a@example.com"), req("a2@example.com"))


@case("MergeMembers")
async def _merge(w: World) -> Case:
    def req(loser: str) -> Message:
        return member_service_pb2.MergeMembersRequest(
            winner_id=w.a, loser_id=loser, reason="same person", request_id=RID
        )

    return Case(OEM, req(w.b), req(w.c))


@case("UpdateMember")
async def _update(w: World) -> Case:
    def req(city: str) -> Message:
        return member_service_pb2.UpdateMemberRequest(
            member=member_pb2.Member(id=w.a, city=city),
            update_mask=FieldMask(paths=["city"]),
            request_id=RID,
        )

    return Case(customer(w.a), req("Hangzhou"), req("Suzhou"))


@case("EraseMember")
async def _erase(w: World) -> Case:
    def req(member_id: str) -> Message:
        return member_service_pb2.EraseMemberRequest(member_id=member_id, request_id=RID)

    return Case(OEM, req(w.a), req(w.b))


@case("EarnPoints")
async def _earn(w: World) -> Case:
    def req(member_id: str) -> Message:
        return member_service_pb2.EarnPointsRequest(
            member_id=member_id, points=100, reason="purchase", source_ref="o-1", request_id=RID
        )

    return Case(SERVICE, req(w.a), req(w.b))


@case("RedeemPoints")
async def _redeem(w: World) -> Case:
    await w.h.earn(w.a, 100)

    def req(points: int) -> Message:
        return member_service_pb2.RedeemPointsRequest(
            member_id=w.a, points=points, reason="coupon", request_id=RID
        )

    return Case(customer(w.a), req(10), req(20))


@case("BindVehicle")
async def _bind(w: World) -> Case:
    def req(vin: str) -> Message:
        return member_service_pb2.BindVehicleRequest(
            member_id=w.a, vin=vin, brand="Marque", dealer_id="D1", request_id=RID
        )

    return Case(SERVICE, req(VIN_B), req(VIN_C))


@case("TransferVehicle")
async def _transfer(w: World) -> Case:
    await w.h.bind(w.a, VIN_A)

    def req(to: str) -> Message:
        return member_service_pb2.TransferVehicleRequest(vin=VIN_A, to_member_id=to, request_id=RID)

    return Case(SERVICE, req(w.b), req(w.c))


@case("RecordDealerRelation")
async def _relation(w: World) -> Case:
    def req(dealer_id: str) -> Message:
        return member_service_pb2.RecordDealerRelationRequest(
            member_id=w.a,
            dealer_id=dealer_id,
            relation=member_service_pb2.DEALER_RELATION_LEAD,
            request_id=RID,
        )

    return Case(SERVICE, req("D3"), req("D4"))


@case("RecordConsent")
async def _consent(w: World) -> Case:
    await w.h.bind(w.a, VIN_A, dealer_id="D1")  # D1 sold a's car: D1 sees a

    def req(purpose: Any) -> Message:
        return member_service_pb2.RecordConsentRequest(
            member_id=w.a,
            purpose=purpose,
            channel=APP,
            action=member_pb2.CONSENT_ACTION_GRANT,
            source="dealer:showroom",
            request_id=RID,
        )

    return Case(dealer("D1"), req(SMS), req(member_pb2.CONSENT_PURPOSE_PHONE_CALL))


@pytest.fixture
async def member(database_url: str) -> AsyncIterator[Harness]:
    async with serve(database_url) as h:
        yield h


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    database = Database(database_url)
    try:
        yield database
    finally:
        await database.dispose()


async def state(db: Database) -> dict[str, list[str]]:
    """Every row of every table but the request ids, in a stable order."""
    out: dict[str, list[str]] = {}
    async with db.engine.connect() as conn:
        for table in store.metadata.sorted_tables:
            if table is not store.request_ids:
                rows = (await conn.execute(sa.select(table))).all()
                out[table.name] = sorted(repr(tuple(r)) for r in rows)
    return out


async def call(h: Harness, caller: Caller, request: Message) -> Message:
    method = type(request).DESCRIPTOR.name.removesuffix("Request")
    response: Message = await getattr(h.stub, method)(request, metadata=md(caller))
    return response


def with_request_id(request: Message, request_id: str) -> Message:
    copy = type(request)()
    copy.CopyFrom(request)
    copy.request_id = request_id  # type: ignore[attr-defined]
    return copy


async def world(h: Harness) -> World:
    a, b, c = [(await h.register(f"1380000030{i}")).id for i in range(3)]
    return World(h, a, b, c)


def test_every_mutating_rpc_has_a_case() -> None:
    assert MUTATING, "the descriptor lists no method with a request_id"
    assert set(CASES) <= set(MUTATING), "a case names no mutating RPC"


@pytest.mark.parametrize("method", MUTATING)
async def test_replays_and_reuses(member: Harness, db: Database, method: str) -> None:
    setup = CASES.get(method)
    if setup is None:
        pytest.fail(f"{method} takes a request_id: add its case to CASES in this module")
    c = await setup(await world(member))
    assert type(c.request).DESCRIPTOR.name == f"{method}Request"
    first = await call(member, c.caller, c.request)
    after = await state(db)
    member.clock.advance(minutes=1)
    assert await call(member, c.caller, c.request) == first
    assert await state(db) == after, "a retry applied something again"
    err = await fails(call(member, c.caller, c.other), grpc.StatusCode.INVALID_ARGUMENT)
    assert reason(err) == "REQUEST_ID_REUSED"
    assert await state(db) == after, "a reused request id changed something"
    # The other body is a real change: with its own request id it is applied.
    await call(member, c.caller, with_request_id(c.other, "another-request-id"))
    assert await state(db) != after


async def test_request_ids_belong_to_their_caller(member: Harness, db: Database) -> None:
    """The same string from two customers, two dealers or two services is two requests."""
    w = await world(member)
    await member.bind(w.a, VIN_A, dealer_id="D1")
    await member.bind(w.b, VIN_B, dealer_id="D2")
    for m in (w.a, w.b):
        await member.earn(m, 100)
    for who, m in ((customer(w.a), w.a), (customer(w.b), w.b), (dealer("D1"), w.a),
                   (dealer("D2"), w.b)):  # fmt: skip
        redeemed = await member.redeem(m, 10, caller=who, request_id="coupon-1")
        assert redeemed.transaction.member_id == m
        consent = await member.stub.RecordConsent(
            member_service_pb2.RecordConsentRequest(
                member_id=m,
                purpose=SMS,
                channel=APP,
                action=member_pb2.CONSENT_ACTION_GRANT,
                source="app",
                request_id="consent-1",
            ),
            metadata=md(who),
        )
        assert consent.state.latest.member_id == m
    for m in (w.a, w.b):
        assert (await member.get(m)).points_balance == 80  # one redemption per caller
        listed = await member.stub.ListConsents(
            member_service_pb2.ListConsentsRequest(member_id=m), metadata=md(OEM)
        )
        assert listed.consents[0].granted
    for m in (w.a, w.b):
        updated = await member.stub.UpdateMember(
            member_service_pb2.UpdateMemberRequest(
                member=member_pb2.Member(id=m, city=f"city of {m}"),
                update_mask=FieldMask(paths=["city"]),
                request_id="update-1",
            ),
            metadata=md(customer(m)),
        )
        assert updated.member.city == f"city of {m}"
    # Two services earning for the same member with one request id: two entries.
    sales, aftersales = SERVICE, Caller(SERVICE.kind, "aftersales", service="aftersales")
    for svc in (sales, aftersales):
        await member.earn(w.c, 7, caller=svc, request_id="earn-1")
    assert (await member.get(w.c)).points_balance == 14
    for m in (w.a, w.b):
        erased = await member.stub.EraseMember(
            member_service_pb2.EraseMemberRequest(member_id=m, request_id="erase-1"),
            metadata=md(customer(m)),
        )
        assert erased.member.id == m and erased.member.state == member_pb2.MEMBER_STATE_ERASED


def fingerprint(request: Message) -> str:
    return hashlib.sha256(request.SerializeToString(deterministic=True)).hexdigest()


async def fingerprints(db: Database) -> set[str]:
    async with db.engine.connect() as conn:
        rows = await conn.scalars(sa.select(store.request_ids.c.fingerprint))
        return set(rows)


async def test_erasure_forgets_fingerprints_but_still_refuses_reuse(
    member: Harness, db: Database
) -> None:
    h = member
    register = member_service_pb2.RegisterMemberRequest(
        identity=ident(MOBILE, "13800000311"), display_name="Zhao Liu", request_id="reg-1"
    )
    a = (await call(h, SERVICE, register)).member.id  # type: ignore[attr-defined]
    b = (await h.register("13800000312")).id
    loser = (await h.register("13800000313")).id
    link = member_service_pb2.LinkIdentityRequest(
        member_id=loser, identity=ident(EMAIL, "zhao@example.com"), request_id="link-1"
    )
    await call(h, SERVICE, link)
    await call(
        h,
        OEM,
        member_service_pb2.MergeMembersRequest(winner_id=a, loser_id=loser, request_id="m-1"),
    )
    earned = await h.earn(a, 100, request_id="earn-1")
    erase = member_service_pb2.EraseMemberRequest(member_id=a, request_id="erase-1")
    erased = await call(h, OEM, erase)
    # No fingerprint of a request that carried a's personal data is kept (nor of the
    # member merged into a: the same person).
    kept = await fingerprints(db)
    assert fingerprint(register) not in kept and fingerprint(link) not in kept
    before = await state(db)
    # The same request ids aimed at another member are still refused.
    err = await fails(h.earn(b, 100, request_id="earn-1"), grpc.StatusCode.INVALID_ARGUMENT)
    assert reason(err) == "REQUEST_ID_REUSED"
    other_erase = with_request_id(
        member_service_pb2.EraseMemberRequest(member_id=b), erase.request_id
    )
    err = await fails(call(h, OEM, other_erase), grpc.StatusCode.INVALID_ARGUMENT)
    assert reason(err) == "REQUEST_ID_REUSED"
    other_register = member_service_pb2.RegisterMemberRequest(
        identity=ident(MOBILE, "13800000399"), request_id="reg-1"
    )
    err = await fails(call(h, SERVICE, other_register), grpc.StatusCode.INVALID_ARGUMENT)
    assert reason(err) == "REQUEST_ID_REUSED"
    other_link = member_service_pb2.LinkIdentityRequest(
        member_id=b, identity=ident(EMAIL, "b@example.com"), request_id="link-1"
    )
    err = await fails(call(h, SERVICE, other_link), grpc.StatusCode.INVALID_ARGUMENT)
    assert reason(err) == "REQUEST_ID_REUSED"
    assert await state(db) == before
    # A retry naming the same member still gets the first result.
    assert (await h.earn(a, 100, request_id="earn-1")).transaction == earned.transaction
    assert await call(h, OEM, erase) == erased
    assert await state(db) == before

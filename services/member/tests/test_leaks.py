"""What a reply (or an error) may carry: never what the caller could not read with a Get
(DESIGN.md §8). Real in-process server on SQLite and PostgreSQL, tokens per principal.

- An identity that is not registered and an identity of a member the caller may not see
  are answered identically (code, message, details), and neither names a member id.
- A customer cannot learn from LinkIdentity whether an identity belongs to someone else:
  a customer's link is refused alike whatever the identity (the channel backend, which
  verifies the identity, links it as a service and gets the precise answer).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest
from grpc_status import rpc_status
from marque.member.v1 import member_pb2, member_service_pb2

from mesh.identity import Caller
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

SMS, APP = member_pb2.CONSENT_PURPOSE_MARKETING_SMS, member_pb2.CONSENT_CHANNEL_APP
UNREGISTERED = "13900000999"


@pytest.fixture
async def member(database_url: str) -> AsyncIterator[Harness]:
    async with serve(database_url) as h:
        yield h


def answer(err: grpc.aio.AioRpcError) -> tuple[grpc.StatusCode, str, bytes]:
    """Everything a caller gets from a failed call: code, message and google.rpc details."""
    status = rpc_status.from_call(err)  # type: ignore[arg-type]
    details = status.SerializeToString(deterministic=True) if status is not None else b""
    return err.code(), err.details() or "", details


def names(err: grpc.aio.AioRpcError, *member_ids: str) -> bool:
    _, message, details = answer(err)
    return any(m in message or m.encode() in details for m in member_ids)


async def check_consent(h: Harness, caller: Caller, **who: object) -> grpc.aio.AioRpcError:
    return await fails(
        h.stub.CheckConsent(
            member_service_pb2.CheckConsentRequest(purpose=SMS, channel=APP, **who),  # type: ignore[arg-type]
            metadata=md(caller),
        ),
        grpc.StatusCode.NOT_FOUND,
    )


async def grant_sms(h: Harness, member_id: str) -> None:
    await h.stub.RecordConsent(
        member_service_pb2.RecordConsentRequest(
            member_id=member_id,
            purpose=SMS,
            channel=APP,
            action=member_pb2.CONSENT_ACTION_GRANT,
            source="app:privacy-settings",
            request_id=h.rid(),
        ),
        metadata=md(SERVICE),
    )


async def test_check_consent_by_identity_answers_alike_for_unknown_and_hidden(
    member: Harness,
) -> None:
    a = await member.register("13800000201")
    b = await member.register("13800000202")
    await member.bind(b.id, VIN_A, dealer_id="D9")  # D9 sees b, D1 does not
    await grant_sms(member, b.id)
    for caller in (customer(a.id), dealer("D1")):
        hidden = await check_consent(member, caller, identity=ident(MOBILE, "13800000202"))
        unknown = await check_consent(member, caller, identity=ident(MOBILE, UNREGISTERED))
        assert answer(hidden) == answer(unknown)
        assert not names(hidden, b.id)
    # Those who may see b get the answer; services never get NOT_FOUND.
    for caller in (dealer("D9"), SERVICE, OEM, customer(b.id)):
        got = await member.stub.CheckConsent(
            member_service_pb2.CheckConsentRequest(
                identity=ident(MOBILE, "13800000202"), purpose=SMS, channel=APP
            ),
            metadata=md(caller),
        )
        assert got.granted
    unknown_for_service = await member.stub.CheckConsent(
        member_service_pb2.CheckConsentRequest(
            identity=ident(MOBILE, UNREGISTERED), purpose=SMS, channel=APP
        ),
        metadata=md(SERVICE),
    )
    assert not unknown_for_service.granted


async def test_check_consent_of_a_merged_member_does_not_name_the_winner(
    member: Harness,
) -> None:
    """A merged id is followed to the winner; a caller who may not see it gets exactly
    what GetMember of the id it sent answers, never the winner's id."""
    a = await member.register("13800000211")
    winner = await member.register("13800000212")
    loser = await member.register("13800000213")
    await member.bind(winner.id, VIN_B, dealer_id="D9")
    await member.stub.MergeMembers(
        member_service_pb2.MergeMembersRequest(
            winner_id=winner.id, loser_id=loser.id, request_id="merge-1"
        ),
        metadata=md(OEM),
    )
    for caller in (customer(a.id), dealer("D1")):
        err = await check_consent(member, caller, member_id=loser.id)
        got = await fails(member.get(loser.id, caller=caller), grpc.StatusCode.NOT_FOUND)
        assert answer(err) == answer(got)
        assert not names(err, winner.id)
        by_mobile = await check_consent(member, caller, identity=ident(MOBILE, "13800000213"))
        unknown = await check_consent(member, caller, identity=ident(MOBILE, UNREGISTERED))
        assert answer(by_mobile) == answer(unknown)
    # The merged customer's own token still follows its old id.
    mine = await member.stub.CheckConsent(
        member_service_pb2.CheckConsentRequest(member_id=loser.id, purpose=SMS, channel=APP),
        metadata=md(customer(loser.id)),
    )
    assert not mine.granted


async def test_find_member_answers_alike_for_unknown_and_hidden(member: Harness) -> None:
    b = await member.register("13800000221")
    await member.bind(b.id, VIN_A, dealer_id="D9")
    hidden = await fails(
        member.stub.FindMember(
            member_service_pb2.FindMemberRequest(identity=ident(MOBILE, "13800000221")),
            metadata=md(dealer("D1")),
        ),
        grpc.StatusCode.NOT_FOUND,
    )
    unknown = await fails(
        member.stub.FindMember(
            member_service_pb2.FindMemberRequest(identity=ident(MOBILE, UNREGISTERED)),
            metadata=md(dealer("D1")),
        ),
        grpc.StatusCode.NOT_FOUND,
    )
    assert answer(hidden) == answer(unknown) and not names(hidden, b.id)


async def test_link_identity_tells_a_customer_nothing_about_other_members(
    member: Harness,
) -> None:
    a = await member.register("13800000231")
    b = await member.register("13800000232")
    await member.stub.LinkIdentity(
        member_service_pb2.LinkIdentityRequest(
            member_id=b.id, identity=ident(EMAIL, "b@example.com"), request_id="b-mail"
        ),
        metadata=md(SERVICE),
    )
    before = await member.get(a.id)

    async def link(identity: member_service_pb2.IdentityKey) -> grpc.aio.AioRpcError:
        with pytest.raises(grpc.aio.AioRpcError) as e:
            await member.stub.LinkIdentity(
                member_service_pb2.LinkIdentityRequest(
                    member_id=a.id, identity=identity, request_id=member.rid()
                ),
                metadata=md(customer(a.id)),
            )
        return e.value

    answers = {
        answer(await link(identity))
        for identity in (
            ident(MOBILE, "13800000232"),  # b's mobile
            ident(EMAIL, "b@example.com"),  # b's email
            ident(MOBILE, UNREGISTERED),  # nobody's
            ident(EMAIL, "nobody@example.com"),
            ident(MOBILE, "13800000231"),  # a's own
        )
    }
    assert len(answers) == 1
    ((code, message, details),) = answers
    assert code == grpc.StatusCode.PERMISSION_DENIED
    assert b.id not in message and b.id.encode() not in details
    # Nothing changed: a has no new identity, the free mobile is nobody's.
    assert await member.get(a.id) == before
    await fails(
        member.stub.FindMember(
            member_service_pb2.FindMemberRequest(identity=ident(MOBILE, UNREGISTERED)),
            metadata=md(OEM),
        ),
        grpc.StatusCode.NOT_FOUND,
    )
    # Another member's id stays NOT_FOUND, as for every method.
    await fails(
        member.stub.LinkIdentity(
            member_service_pb2.LinkIdentityRequest(
                member_id=b.id, identity=ident(MOBILE, UNREGISTERED), request_id="x"
            ),
            metadata=md(customer(a.id)),
        ),
        grpc.StatusCode.NOT_FOUND,
    )
    # OEM staff and services (the channel backend, having verified it) get the precise
    # answer, and link a free identity at once.
    for caller in (SERVICE, OEM):
        err = await fails(
            member.stub.LinkIdentity(
                member_service_pb2.LinkIdentityRequest(
                    member_id=a.id, identity=ident(MOBILE, "13800000232"), request_id=member.rid()
                ),
                metadata=md(caller),
            ),
            grpc.StatusCode.FAILED_PRECONDITION,
        )
        assert reason(err) == "IDENTITY_BELONGS_TO_OTHER_MEMBER" and not names(err, b.id)
    linked = await member.stub.LinkIdentity(
        member_service_pb2.LinkIdentityRequest(
            member_id=a.id, identity=ident(MOBILE, UNREGISTERED), request_id=member.rid()
        ),
        metadata=md(SERVICE),
    )
    assert "+86" + UNREGISTERED in {i.value for i in linked.member.identities}


async def test_vehicle_and_merge_replies_hide_other_members_from_customers_and_dealers(
    member: Harness,
) -> None:
    """BindVehicle, TransferVehicle and MergeMembers are OEM/service methods (they see
    all); what customers and dealers read of the same cars afterwards names no one else."""
    a = await member.register("13800000241")
    b = await member.register("13800000242")
    await member.bind(a.id, VIN_A, dealer_id="D1")
    moved = await member.stub.TransferVehicle(
        member_service_pb2.TransferVehicleRequest(vin=VIN_A, to_member_id=b.id, request_id="t1"),
        metadata=md(SERVICE),
    )
    assert [h.member_id for h in moved.vehicle.history] == [a.id, b.id]  # services see all
    await member.stub.RecordDealerRelation(
        member_service_pb2.RecordDealerRelationRequest(
            member_id=b.id,
            dealer_id="D2",
            relation=member_service_pb2.DEALER_RELATION_SERVICE,
            vin=VIN_A,
            request_id="rel-1",
        ),
        metadata=md(SERVICE),
    )
    for caller in (customer(b.id), dealer("D2")):
        cars = await member.stub.ListVehicles(
            member_service_pb2.ListVehiclesRequest(member_id=b.id), metadata=md(caller)
        )
        assert [h.member_id for h in cars.vehicles[0].history] == ["", b.id]
    # The previous owner is not D2's customer: NOT_FOUND, as for an unknown id.
    err = await fails(member.get(a.id, caller=dealer("D2")), grpc.StatusCode.NOT_FOUND)
    assert not names(err, b.id)
    for method in ("MergeMembers", "BindVehicle", "TransferVehicle"):
        for caller in (customer(a.id), dealer("D1")):
            call = getattr(member.stub, method)
            request = getattr(member_service_pb2, f"{method}Request")()
            await fails(call(request, metadata=md(caller)), grpc.StatusCode.PERMISSION_DENIED)


async def test_merge_notes_name_no_member_to_customers_and_dealers(member: Harness) -> None:
    """The ledger and tier history of a merged-into member carry the merge: OEM staff read
    which members and why; the customer and its dealers read neither the other member's id
    (which GetMember refuses them) nor the staff's note."""
    winner = await member.register("13800000251")
    loser = await member.register("13800000252")
    await member.bind(winner.id, VIN_A, dealer_id="D1")
    await member.earn(loser.id, 1000)
    await member.stub.MergeMembers(
        member_service_pb2.MergeMembersRequest(
            winner_id=winner.id,
            loser_id=loser.id,
            reason="call-centre ticket 42",
            request_id="merge-1",
        ),
        metadata=md(OEM),
    )

    async def texts(caller: Caller) -> list[str]:
        ledger = await member.stub.ListPointTransactions(
            member_service_pb2.ListPointTransactionsRequest(member_id=winner.id),
            metadata=md(caller),
        )
        tiers = await member.stub.ListTierChanges(
            member_service_pb2.ListTierChangesRequest(member_id=winner.id), metadata=md(caller)
        )
        assert [c.to_tier for c in tiers.tier_changes] == ["SILVER"]
        return [t.reason for t in ledger.transactions] + [c.reason for c in tiers.tier_changes]

    for caller in (customer(winner.id), dealer("D1")):
        await fails(member.get(loser.id, caller=caller), grpc.StatusCode.NOT_FOUND)
        shown = " ".join(await texts(caller))
        assert loser.id not in shown and "ticket 42" not in shown and "merged" in shown
    staff = await member.stub.ListPointTransactions(
        member_service_pb2.ListPointTransactionsRequest(member_id=winner.id), metadata=md(OEM)
    )
    assert any(loser.id in t.reason and "ticket 42" in t.reason for t in staff.transactions)

"""MemberService over gRPC: proto in, engine call, proto out.

Transport only. Field shapes are checked by the mesh (protovalidate) before a method runs;
who may see what and which transaction does what are decided in `engine.py`, the rules
live in `domain/`, SQL in `store/`. What is here is decoding requests into domain values
and encoding domain records into protos (`convert.py`), and the AIP-158 paging conventions
(page size defaults and opaque page tokens), which are API conventions rather than rules
of the member business. Errors are `mesh.errors`, which the mesh's chain maps to statuses.
"""

from __future__ import annotations

from typing import Any

from marque.member.v1 import member_pb2, member_service_pb2, member_service_pb2_grpc

from mesh.convert import datetime_of, timestamp
from mesh.identity import current_caller
from mesh.paging import decode_token, filter_hash, page_size, split_page
from services.member.convert import (
    ACTIONS,
    CHANNELS,
    PURPOSES,
    RELATIONS,
    asked,
    consent_event_pb,
    consent_state_pb,
    identity_key,
    int_key,
    member_into,
    member_pb,
    tier_change_pb,
    transaction_into,
    transaction_pb,
    vehicle_pb,
)
from services.member.domain.model import MemberRecord
from services.member.domain.profile import UPDATABLE
from services.member.engine import MemberEngine


class MemberServicer(member_service_pb2_grpc.MemberServiceServicer):
    """marque.member.v1.MemberService."""

    def __init__(self, engine: MemberEngine) -> None:
        self.engine = engine
        self.tiers = engine.config.tiers

    def _member(self, record: MemberRecord) -> member_pb2.Member:
        return member_pb(record, self.tiers)

    # ------------------------------------------------------------------ members

    async def RegisterMember(
        self, request: member_service_pb2.RegisterMemberRequest, context: Any
    ) -> member_service_pb2.RegisterMemberResponse:
        caller = current_caller()
        record, created = await self.engine.register(
            identity_key(request.identity),
            request.display_name,
            request.city,
            req=asked(request, caller),
            caller=caller,
        )
        return member_service_pb2.RegisterMemberResponse(
            member=self._member(record), created=created
        )

    async def LinkIdentity(
        self, request: member_service_pb2.LinkIdentityRequest, context: Any
    ) -> member_service_pb2.LinkIdentityResponse:
        caller = current_caller()
        record = await self.engine.link_identity(
            request.member_id,
            identity_key(request.identity),
            req=asked(request, caller),
            caller=caller,
        )
        return member_service_pb2.LinkIdentityResponse(member=self._member(record))

    async def MergeMembers(
        self, request: member_service_pb2.MergeMembersRequest, context: Any
    ) -> member_service_pb2.MergeMembersResponse:
        caller = current_caller()
        winner, loser = await self.engine.merge(
            request.winner_id,
            request.loser_id,
            request.reason,
            req=asked(request, caller),
            caller=caller,
        )
        return member_service_pb2.MergeMembersResponse(
            winner=self._member(winner), loser=self._member(loser)
        )

    async def GetMember(
        self, request: member_service_pb2.GetMemberRequest, context: Any
    ) -> member_service_pb2.GetMemberResponse:
        record = await self.engine.get_member(request.member_id, caller=current_caller())
        return member_service_pb2.GetMemberResponse(member=self._member(record))

    async def FindMember(
        self, request: member_service_pb2.FindMemberRequest, context: Any
    ) -> member_service_pb2.FindMemberResponse:
        record = await self.engine.find_member(
            identity_key(request.identity), caller=current_caller()
        )
        return member_service_pb2.FindMemberResponse(member=self._member(record))

    async def UpdateMember(
        self, request: member_service_pb2.UpdateMemberRequest, context: Any
    ) -> member_service_pb2.UpdateMemberResponse:
        caller, m = current_caller(), request.member
        record = await self.engine.update_member(
            m.id,
            list(request.update_mask.paths),
            {f: getattr(m, f) for f in UPDATABLE},
            req=asked(request, caller),
            caller=caller,
        )
        return member_service_pb2.UpdateMemberResponse(member=self._member(record))

    async def EraseMember(
        self, request: member_service_pb2.EraseMemberRequest, context: Any
    ) -> member_service_pb2.EraseMemberResponse:
        caller = current_caller()
        record, erased_at = await self.engine.erase(
            request.member_id, req=asked(request, caller), caller=caller
        )
        return member_service_pb2.EraseMemberResponse(
            member=self._member(record), erase_time=timestamp(erased_at)
        )

    async def GetErasureStatus(
        self, request: member_service_pb2.GetErasureStatusRequest, context: Any
    ) -> member_service_pb2.GetErasureStatusResponse:
        found = await self.engine.erasure_status(request.member_id, caller=current_caller())
        return member_service_pb2.GetErasureStatusResponse(
            erase_time=timestamp(found.erase_time),
            done=[
                member_service_pb2.ServiceErasure(
                    service=r.service, record_count=r.items, done_time=timestamp(r.done_time)
                )
                for r in found.done
            ],
            pending=found.pending,
        )

    # ------------------------------------------------------------------ points

    async def EarnPoints(
        self, request: member_service_pb2.EarnPointsRequest, context: Any
    ) -> member_service_pb2.EarnPointsResponse:
        caller = current_caller()
        txn, record = await self.engine.earn(
            request.member_id,
            request.points,
            request.reason,
            request.source_ref,
            req=asked(request, caller),
            caller=caller,
        )
        reply = member_service_pb2.EarnPointsResponse()
        transaction_into(reply.transaction, txn)
        member_into(reply.member, record, self.tiers)
        return reply

    async def RedeemPoints(
        self, request: member_service_pb2.RedeemPointsRequest, context: Any
    ) -> member_service_pb2.RedeemPointsResponse:
        caller = current_caller()
        txn, record = await self.engine.redeem(
            request.member_id,
            request.points,
            request.reason,
            request.source_ref,
            req=asked(request, caller),
            caller=caller,
        )
        reply = member_service_pb2.RedeemPointsResponse()
        transaction_into(reply.transaction, txn)
        member_into(reply.member, record, self.tiers)
        return reply

    async def ListPointTransactions(
        self, request: member_service_pb2.ListPointTransactionsRequest, context: Any
    ) -> member_service_pb2.ListPointTransactionsResponse:
        size = page_size(request.page_size)
        fhash = filter_hash("ListPointTransactions", request.member_id)
        before = int_key(request.page_token, fhash)
        rows = await self.engine.list_transactions(
            request.member_id, before, size + 1, caller=current_caller()
        )
        page, next_token = split_page(rows, size, lambda t: str(t.seq), fhash)
        return member_service_pb2.ListPointTransactionsResponse(
            transactions=[transaction_pb(t) for t in page], next_page_token=next_token
        )

    async def ListTierChanges(
        self, request: member_service_pb2.ListTierChangesRequest, context: Any
    ) -> member_service_pb2.ListTierChangesResponse:
        size = page_size(request.page_size)
        fhash = filter_hash("ListTierChanges", request.member_id)
        before = int_key(request.page_token, fhash)
        rows = await self.engine.list_tier_changes(
            request.member_id, before, size + 1, caller=current_caller()
        )
        page, next_token = split_page(rows, size, lambda t: str(t.seq), fhash)
        return member_service_pb2.ListTierChangesResponse(
            tier_changes=[tier_change_pb(t) for t in page], next_page_token=next_token
        )

    # ------------------------------------------------------------------ vehicles

    async def BindVehicle(
        self, request: member_service_pb2.BindVehicleRequest, context: Any
    ) -> member_service_pb2.BindVehicleResponse:
        caller, r = current_caller(), request
        details = {
            "brand": r.brand,
            "model": r.model,
            "purchase_date": r.purchase_date,
            "dealer_id": r.dealer_id,
        }
        car = await self.engine.bind_vehicle(
            r.member_id, r.vin, details, req=asked(request, caller), caller=caller
        )
        return member_service_pb2.BindVehicleResponse(vehicle=vehicle_pb(car))

    async def TransferVehicle(
        self, request: member_service_pb2.TransferVehicleRequest, context: Any
    ) -> member_service_pb2.TransferVehicleResponse:
        caller = current_caller()
        car = await self.engine.transfer_vehicle(
            request.vin, request.to_member_id, req=asked(request, caller), caller=caller
        )
        return member_service_pb2.TransferVehicleResponse(vehicle=vehicle_pb(car))

    async def ListVehicles(
        self, request: member_service_pb2.ListVehiclesRequest, context: Any
    ) -> member_service_pb2.ListVehiclesResponse:
        size = page_size(request.page_size)
        fhash = filter_hash("ListVehicles", request.member_id)
        after = decode_token(request.page_token, fhash)
        rows = await self.engine.list_vehicles(
            request.member_id, after, size + 1, caller=current_caller()
        )
        cars, next_token = split_page(rows, size, lambda c: c.vin, fhash)
        return member_service_pb2.ListVehiclesResponse(
            vehicles=[vehicle_pb(c) for c in cars], next_page_token=next_token
        )

    async def RecordDealerRelation(
        self, request: member_service_pb2.RecordDealerRelationRequest, context: Any
    ) -> member_service_pb2.RecordDealerRelationResponse:
        caller = current_caller()
        created = await self.engine.record_dealer_relation(
            request.member_id,
            request.dealer_id,
            RELATIONS[request.relation],
            request.vin,
            req=asked(request, caller),
            caller=caller,
        )
        return member_service_pb2.RecordDealerRelationResponse(created=created)

    # ------------------------------------------------------------------ consent

    async def RecordConsent(
        self, request: member_service_pb2.RecordConsentRequest, context: Any
    ) -> member_service_pb2.RecordConsentResponse:
        caller, r = current_caller(), request
        decision = PURPOSES[r.purpose], CHANNELS[r.channel], ACTIONS[r.action]
        occur = datetime_of(r.occur_time) if r.HasField("occur_time") else None
        state = await self.engine.record_consent(
            r.member_id, decision, occur, r.source, req=asked(request, caller), caller=caller
        )
        return member_service_pb2.RecordConsentResponse(state=consent_state_pb(state))

    async def CheckConsent(
        self, request: member_service_pb2.CheckConsentRequest, context: Any
    ) -> member_service_pb2.CheckConsentResponse:
        by_identity = request.WhichOneof("member") == "identity"
        decided = await self.engine.check_consent(
            PURPOSES[request.purpose],
            CHANNELS[request.channel],
            request.member_id,
            identity_key(request.identity) if by_identity else None,
            caller=current_caller(),
        )
        latest = consent_event_pb(decided.latest) if decided.latest is not None else None
        return member_service_pb2.CheckConsentResponse(granted=decided.granted, latest=latest)

    async def ListConsents(
        self, request: member_service_pb2.ListConsentsRequest, context: Any
    ) -> member_service_pb2.ListConsentsResponse:
        states = await self.engine.list_consents(request.member_id, caller=current_caller())
        return member_service_pb2.ListConsentsResponse(
            consents=[consent_state_pb(s) for s in states]
        )

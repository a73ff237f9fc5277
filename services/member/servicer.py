"""MemberService over gRPC: transport only. Proto in, store/domain call, proto out.

Which rows a caller may see is decided here from `mesh.identity.current_caller()` with the
domain's access rules (`domain.rules.view_for`); a member the caller may not see is
NOT_FOUND, exactly like a member that does not exist, so customers and dealers cannot
probe member ids. Domain errors become `mesh.errors` (the mesh maps them to statuses).
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, ParamSpec, TypeVar

from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp
from marque.common.v1 import audit_pb2
from marque.member.v1 import member_pb2, member_service_pb2

from mesh.errors import FailedPrecondition, InvalidArgument, NotFound, PermissionDenied
from mesh.identity import Caller, Kind, current_caller
from mesh.paging import decode_token, filter_hash, page_size, split_page
from services.member.domain import consent, identities, rules
from services.member.domain.errors import (
    InvalidValue,
    MemberDomainError,
    MemberNotFound,
    RuleViolation,
)
from services.member.domain.identities import IdentityKey, IdentityType
from services.member.domain.ledger import EntryKind
from services.member.domain.model import (
    MemberRecord,
    TierChangeRecord,
    TransactionRecord,
    VehicleRecord,
    Write,
)
from services.member.domain.rules import MemberState, View
from services.member.domain.tiers import TierRule, by_code
from services.member.domain.vin import normalise_vin
from services.member.store import MERGE_NOTE, MemberStore, VehicleNotFound

P = ParamSpec("P")
R = TypeVar("R")
Clock = Callable[[], dt.datetime]

UPDATABLE = ("display_name", "city", "preferred_dealer_id")

_IDENTITY_TYPES = {
    member_pb2.IDENTITY_TYPE_MOBILE: IdentityType.MOBILE,
    member_pb2.IDENTITY_TYPE_WECHAT_UNIONID: IdentityType.WECHAT_UNIONID,
    member_pb2.IDENTITY_TYPE_WECHAT_OPENID: IdentityType.WECHAT_OPENID,
    member_pb2.IDENTITY_TYPE_APP_USER_ID: IdentityType.APP_USER_ID,
    member_pb2.IDENTITY_TYPE_EMAIL: IdentityType.EMAIL,
}
_IDENTITY_TYPES_PB = {v: k for k, v in _IDENTITY_TYPES.items()}
_STATES_PB = {
    MemberState.ACTIVE: member_pb2.MEMBER_STATE_ACTIVE,
    MemberState.MERGED: member_pb2.MEMBER_STATE_MERGED,
    MemberState.ERASED: member_pb2.MEMBER_STATE_ERASED,
}
_KINDS_PB = {
    EntryKind.EARN: member_pb2.POINT_TRANSACTION_KIND_EARN,
    EntryKind.REDEEM: member_pb2.POINT_TRANSACTION_KIND_REDEEM,
    EntryKind.EXPIRE: member_pb2.POINT_TRANSACTION_KIND_EXPIRE,
    EntryKind.MERGE_IN: member_pb2.POINT_TRANSACTION_KIND_MERGE_IN,
    EntryKind.MERGE_OUT: member_pb2.POINT_TRANSACTION_KIND_MERGE_OUT,
    EntryKind.FORFEIT: member_pb2.POINT_TRANSACTION_KIND_FORFEIT,
}
_PURPOSES = {
    member_pb2.CONSENT_PURPOSE_MARKETING_SMS: consent.Purpose.MARKETING_SMS,
    member_pb2.CONSENT_PURPOSE_PHONE_CALL: consent.Purpose.PHONE_CALL,
    member_pb2.CONSENT_PURPOSE_WECHAT_PUSH: consent.Purpose.WECHAT_PUSH,
    member_pb2.CONSENT_PURPOSE_DEALER_SHARING: consent.Purpose.DEALER_SHARING,
}
_PURPOSES_PB = {v: k for k, v in _PURPOSES.items()}
_CHANNELS = {
    member_pb2.CONSENT_CHANNEL_APP: consent.Channel.APP,
    member_pb2.CONSENT_CHANNEL_WECHAT: consent.Channel.WECHAT,
    member_pb2.CONSENT_CHANNEL_WEBSITE: consent.Channel.WEBSITE,
    member_pb2.CONSENT_CHANNEL_DEALER: consent.Channel.DEALER,
    member_pb2.CONSENT_CHANNEL_CALL_CENTER: consent.Channel.CALL_CENTER,
}
_CHANNELS_PB = {v: k for k, v in _CHANNELS.items()}
_ACTIONS = {
    member_pb2.CONSENT_ACTION_GRANT: consent.Action.GRANT,
    member_pb2.CONSENT_ACTION_WITHDRAW: consent.Action.WITHDRAW,
}
_ACTIONS_PB = {v: k for k, v in _ACTIONS.items()}
_MERGE_KINDS = (EntryKind.MERGE_IN, EntryKind.MERGE_OUT)
_RELATIONS = {
    member_service_pb2.DEALER_RELATION_SERVICE: "service",
    member_service_pb2.DEALER_RELATION_LEAD: "lead",
}


def utc_now() -> dt.datetime:
    """The production clock."""
    return dt.datetime.now(dt.UTC)


def _domain_errors(fn: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
    """Translate the domain's errors into mesh errors (which the mesh maps to statuses)."""

    @functools.wraps(fn)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return await fn(*args, **kwargs)
        except InvalidValue as e:
            raise InvalidArgument.for_field(e.field, e.description, reason=e.reason) from None
        except (MemberNotFound, VehicleNotFound) as e:
            raise NotFound(e.message, reason=e.reason) from None
        except RuleViolation as e:
            raise FailedPrecondition(e.message, reason=e.reason) from None
        except MemberDomainError as e:
            raise FailedPrecondition(e.message, reason=e.reason) from None

    return wrapper


def _ts(moment: dt.datetime | None) -> Timestamp | None:
    if moment is None:
        return None
    ts = Timestamp()
    ts.FromDatetime(moment)
    return ts


def _fingerprint(request: Message) -> str:
    return hashlib.sha256(request.SerializeToString(deterministic=True)).hexdigest()


def _int_key(token: str, fhash: str) -> int | None:
    key = decode_token(token, fhash)
    if key is None:
        return None
    try:
        return int(key)
    except ValueError:
        raise InvalidArgument.for_field("page_token", "not a valid page token") from None


def identity_key(pb: member_service_pb2.IdentityKey, field: str = "identity") -> IdentityKey:
    """Normalise a requested identity (InvalidValue names the field)."""
    type_ = _IDENTITY_TYPES.get(pb.type)
    if type_ is None:
        raise InvalidValue(f"{field}.type", "unknown identity type")
    return identities.normalise(type_, pb.value, pb.app_id, field)


def member_pb(record: MemberRecord, view: View, tiers: Sequence[TierRule]) -> member_pb2.Member:
    """A member as `view` may see it: dealers get the mobile and no other identity."""
    tier = by_code(record.tier, tiers)
    shown = [
        i for i in record.identities if view is View.FULL or identities.visible_to_dealer(i.key)
    ]
    return member_pb2.Member(
        id=record.id,
        state=_STATES_PB[record.state],
        merged_into=record.merged_into,
        display_name=record.display_name,
        city=record.city,
        preferred_dealer_id=record.preferred_dealer_id,
        identities=[
            member_pb2.Identity(
                type=_IDENTITY_TYPES_PB[i.key.type],
                value=i.key.value,
                app_id=i.key.app_id,
                link_time=_ts(i.link_time),
            )
            for i in shown
        ],
        points_balance=record.balance,
        qualifying_points=record.qualifying_points,
        tier=member_pb2.Tier(
            code=tier.code, name=tier.name, threshold=tier.threshold, benefits=tier.benefits
        ),
        audit=audit_pb2.AuditInfo(
            create_time=_ts(record.create_time),
            create_actor=record.create_actor,
            update_time=_ts(record.update_time),
            update_actor=record.update_actor,
        ),
    )


def transaction_pb(t: TransactionRecord, caller: Caller) -> member_pb2.PointTransaction:
    """A ledger entry on the wire. A merge entry's reason names both members and carries
    the staff's note: OEM staff and services only."""
    reason = t.reason
    if t.kind in _MERGE_KINDS and caller.kind not in (Kind.OEM, Kind.SERVICE):
        reason = MERGE_NOTE
    return member_pb2.PointTransaction(
        id=t.id,
        member_id=t.member_id,
        kind=_KINDS_PB[t.kind],
        points=t.points,
        reason=reason,
        source_ref=t.source_ref,
        create_time=_ts(t.create_time),
        expire_time=_ts(t.expire_time),
        balance_after=t.balance_after,
        actor=t.actor,
    )


def tier_change_pb(t: TierChangeRecord) -> member_pb2.TierChange:
    """A tier change on the wire."""
    return member_pb2.TierChange(
        member_id=t.member_id,
        from_tier=t.from_tier,
        to_tier=t.to_tier,
        reason=t.reason,
        change_time=_ts(t.change_time),
    )


def vehicle_pb(v: VehicleRecord, caller: Caller, viewer_member: str) -> member_pb2.Vehicle:
    """A car with its history; other people's member ids only for OEM staff and services."""
    full = caller.kind in (Kind.OEM, Kind.SERVICE)

    def who(member_id: str) -> str:
        return member_id if full or member_id == viewer_member else ""

    return member_pb2.Vehicle(
        vin=v.vin,
        member_id=who(v.owner_id),
        brand=v.brand,
        model=v.model,
        purchase_date=v.purchase_date,
        dealer_id=v.dealer_id,
        history=[
            member_pb2.Ownership(
                member_id=who(h.member_id),
                start_time=_ts(h.start_time),
                end_time=_ts(h.end_time),
                reason=h.reason,
            )
            for h in v.history
        ],
    )


def consent_state_pb(s: consent.ConsentState) -> member_pb2.ConsentState:
    """A consent state on the wire."""
    latest = None
    if s.latest is not None:
        e = s.latest
        latest = member_pb2.ConsentEvent(
            member_id=e.member_id,
            purpose=_PURPOSES_PB[e.purpose],
            channel=_CHANNELS_PB[e.channel],
            action=_ACTIONS_PB[e.action],
            occur_time=_ts(e.occur_time),
            source=e.source,
            actor=e.actor,
        )
    return member_pb2.ConsentState(
        purpose=_PURPOSES_PB[s.purpose],
        channel=_CHANNELS_PB[s.channel],
        granted=s.granted,
        latest=latest,
    )


class MemberServicer:
    """The gRPC methods of marque.member.v1.MemberService."""

    def __init__(self, store: MemberStore, clock: Clock = utc_now) -> None:
        self.store = store
        self.clock = clock

    # ------------------------------------------------------------------ helpers

    def _write(self, request: Message, request_id: str) -> Write:
        return Write(current_caller().ref, request_id, _fingerprint(request), self.clock())

    async def _view(self, member_id: str) -> View:
        """What the caller may see of `member_id`; NOT_FOUND if nothing."""
        caller = current_caller()
        related = False
        if caller.kind is Kind.DEALER and caller.dealer_id:
            related = await self.store.dealer_related(caller.dealer_id, member_id)
        view = rules.view_for(
            caller.kind.value,
            member_id,
            caller_member_id=caller.member_id,
            dealer_related=related,
        )
        if view is View.NONE and caller.kind is Kind.CUSTOMER and caller.member_id:
            # A customer whose member was merged keeps a token naming the old id.
            state = await self.store.member_state(caller.member_id)
            if state is not None and state[1] == member_id:
                view = View.FULL
        if view is View.NONE:
            raise MemberNotFound(f"member {member_id} not found", reason="MEMBER_NOT_FOUND")
        return view

    def _member(self, record: MemberRecord, view: View) -> member_pb2.Member:
        return member_pb(record, view, self.store.config.tiers)

    # ------------------------------------------------------------------ members

    @_domain_errors
    async def RegisterMember(
        self, request: member_service_pb2.RegisterMemberRequest, context: Any
    ) -> member_service_pb2.RegisterMemberResponse:
        key = identity_key(request.identity)
        record, created = await self.store.register(
            self._write(request, request.request_id),
            key,
            request.display_name.strip(),
            request.city.strip(),
        )
        return member_service_pb2.RegisterMemberResponse(
            member=self._member(record, View.FULL), created=created
        )

    @_domain_errors
    async def LinkIdentity(
        self, request: member_service_pb2.LinkIdentityRequest, context: Any
    ) -> member_service_pb2.LinkIdentityResponse:
        view = await self._view(request.member_id)
        key = identity_key(request.identity)
        if current_caller().kind is Kind.CUSTOMER:
            # Whatever the identity: success or "another member's" would tell a customer
            # which mobiles are registered, and nothing here proves the customer holds it.
            raise PermissionDenied(
                "a customer cannot link an identity; the channel that verified it links it",
                reason="IDENTITY_LINK_NEEDS_VERIFICATION",
            )
        record = await self.store.link_identity(
            self._write(request, request.request_id), request.member_id, key
        )
        return member_service_pb2.LinkIdentityResponse(member=self._member(record, view))

    @_domain_errors
    async def MergeMembers(
        self, request: member_service_pb2.MergeMembersRequest, context: Any
    ) -> member_service_pb2.MergeMembersResponse:
        winner, loser = await self.store.merge(
            self._write(request, request.request_id),
            request.winner_id,
            request.loser_id,
            request.reason,
        )
        return member_service_pb2.MergeMembersResponse(
            winner=self._member(winner, View.FULL), loser=self._member(loser, View.FULL)
        )

    @_domain_errors
    async def GetMember(
        self, request: member_service_pb2.GetMemberRequest, context: Any
    ) -> member_service_pb2.GetMemberResponse:
        view = await self._view(request.member_id)
        record = await self.store.get_member(request.member_id, self.clock())
        return member_service_pb2.GetMemberResponse(member=self._member(record, view))

    @_domain_errors
    async def FindMember(
        self, request: member_service_pb2.FindMemberRequest, context: Any
    ) -> member_service_pb2.FindMemberResponse:
        caller = current_caller()
        key = identity_key(request.identity)
        if caller.kind is Kind.DEALER and key.type is not IdentityType.MOBILE:
            raise PermissionDenied(
                "dealers may search members by mobile only", reason="DEALER_MOBILE_ONLY"
            )
        member_id = await self.store.member_id_for(key)
        if member_id is None:
            raise MemberNotFound("no member has that identity", reason="IDENTITY_NOT_FOUND")
        try:
            view = await self._view(member_id)
        except MemberNotFound:
            raise MemberNotFound(
                "no member has that identity", reason="IDENTITY_NOT_FOUND"
            ) from None
        record = await self.store.get_member(member_id, self.clock())
        return member_service_pb2.FindMemberResponse(member=self._member(record, view))

    @_domain_errors
    async def UpdateMember(
        self, request: member_service_pb2.UpdateMemberRequest, context: Any
    ) -> member_service_pb2.UpdateMemberResponse:
        member_id = request.member.id
        if not member_id:
            raise InvalidValue("member.id", "the member to update is required")
        view = await self._view(member_id)
        paths = list(request.update_mask.paths)
        if not paths:
            paths = [f for f in UPDATABLE if getattr(request.member, f)]
        unknown = sorted(set(paths) - set(UPDATABLE))
        if unknown:
            raise InvalidValue(
                "update_mask", f"cannot update {unknown}; updatable: {list(UPDATABLE)}"
            )
        changes = {p: str(getattr(request.member, p)).strip() for p in paths}
        for name, value in changes.items():
            limit = 32 if name == "preferred_dealer_id" else 100
            if len(value) > limit:
                raise InvalidValue(f"member.{name}", f"at most {limit} characters")
        record = await self.store.update_profile(
            self._write(request, request.request_id), member_id, changes
        )
        return member_service_pb2.UpdateMemberResponse(member=self._member(record, view))

    @_domain_errors
    async def EraseMember(
        self, request: member_service_pb2.EraseMemberRequest, context: Any
    ) -> member_service_pb2.EraseMemberResponse:
        caller = current_caller()
        if caller.kind is Kind.CUSTOMER and caller.member_id != request.member_id:
            raise MemberNotFound(f"member {request.member_id} not found", reason="MEMBER_NOT_FOUND")
        record, erased_at = await self.store.erase(
            self._write(request, request.request_id), request.member_id
        )
        return member_service_pb2.EraseMemberResponse(
            member=self._member(record, View.FULL), erase_time=_ts(erased_at)
        )

    # ------------------------------------------------------------------ points

    @_domain_errors
    async def EarnPoints(
        self, request: member_service_pb2.EarnPointsRequest, context: Any
    ) -> member_service_pb2.EarnPointsResponse:
        txn, record = await self.store.earn(
            self._write(request, request.request_id),
            request.member_id,
            request.points,
            request.reason,
            request.source_ref,
        )
        return member_service_pb2.EarnPointsResponse(
            transaction=transaction_pb(txn, current_caller()),
            member=self._member(record, View.FULL),
        )

    @_domain_errors
    async def RedeemPoints(
        self, request: member_service_pb2.RedeemPointsRequest, context: Any
    ) -> member_service_pb2.RedeemPointsResponse:
        view = await self._view(request.member_id)
        txn, record = await self.store.redeem(
            self._write(request, request.request_id),
            request.member_id,
            request.points,
            request.reason,
            request.source_ref,
        )
        return member_service_pb2.RedeemPointsResponse(
            transaction=transaction_pb(txn, current_caller()), member=self._member(record, view)
        )

    @_domain_errors
    async def ListPointTransactions(
        self, request: member_service_pb2.ListPointTransactionsRequest, context: Any
    ) -> member_service_pb2.ListPointTransactionsResponse:
        size = page_size(request.page_size)
        fhash = filter_hash("ListPointTransactions", request.member_id)
        before = _int_key(request.page_token, fhash)
        await self._view(request.member_id)
        caller = current_caller()
        rows = await self.store.list_transactions(request.member_id, before, size + 1)
        page, next_token = split_page(rows, size, lambda t: str(t.seq), fhash)
        return member_service_pb2.ListPointTransactionsResponse(
            transactions=[transaction_pb(t, caller) for t in page], next_page_token=next_token
        )

    @_domain_errors
    async def ListTierChanges(
        self, request: member_service_pb2.ListTierChangesRequest, context: Any
    ) -> member_service_pb2.ListTierChangesResponse:
        size = page_size(request.page_size)
        fhash = filter_hash("ListTierChanges", request.member_id)
        before = _int_key(request.page_token, fhash)
        await self._view(request.member_id)
        # Reading the member first re-evaluates a tier that the rolling window moved.
        await self.store.get_member(request.member_id, self.clock())
        rows = await self.store.list_tier_changes(request.member_id, before, size + 1)
        page, next_token = split_page(rows, size, lambda t: str(t.seq), fhash)
        return member_service_pb2.ListTierChangesResponse(
            tier_changes=[tier_change_pb(t) for t in page], next_page_token=next_token
        )

    # ------------------------------------------------------------------ vehicles

    @_domain_errors
    async def BindVehicle(
        self, request: member_service_pb2.BindVehicleRequest, context: Any
    ) -> member_service_pb2.BindVehicleResponse:
        vin = normalise_vin(request.vin)
        car = await self.store.bind_vehicle(
            self._write(request, request.request_id),
            member_id=request.member_id,
            vin=vin,
            brand=request.brand.strip(),
            model=request.model.strip(),
            purchase_date=request.purchase_date,
            dealer_id=request.dealer_id.strip(),
        )
        return member_service_pb2.BindVehicleResponse(
            vehicle=vehicle_pb(car, current_caller(), request.member_id)
        )

    @_domain_errors
    async def TransferVehicle(
        self, request: member_service_pb2.TransferVehicleRequest, context: Any
    ) -> member_service_pb2.TransferVehicleResponse:
        vin = normalise_vin(request.vin)
        car = await self.store.transfer_vehicle(
            self._write(request, request.request_id), vin, request.to_member_id
        )
        return member_service_pb2.TransferVehicleResponse(
            vehicle=vehicle_pb(car, current_caller(), request.to_member_id)
        )

    @_domain_errors
    async def ListVehicles(
        self, request: member_service_pb2.ListVehiclesRequest, context: Any
    ) -> member_service_pb2.ListVehiclesResponse:
        size = page_size(request.page_size)
        fhash = filter_hash("ListVehicles", request.member_id)
        after = decode_token(request.page_token, fhash)
        await self._view(request.member_id)
        rows = await self.store.list_vehicles(request.member_id, after, size + 1)
        cars, next_token = split_page(rows, size, lambda c: c.vin, fhash)
        caller = current_caller()
        return member_service_pb2.ListVehiclesResponse(
            vehicles=[vehicle_pb(c, caller, request.member_id) for c in cars],
            next_page_token=next_token,
        )

    @_domain_errors
    async def RecordDealerRelation(
        self, request: member_service_pb2.RecordDealerRelationRequest, context: Any
    ) -> member_service_pb2.RecordDealerRelationResponse:
        relation = _RELATIONS[request.relation]
        vin = ""
        if request.vin:
            vin = normalise_vin(request.vin)
        elif relation == "service":
            raise InvalidValue("vin", "a service relation names the serviced car")
        created = await self.store.record_dealer_relation(
            self._write(request, request.request_id),
            request.member_id,
            request.dealer_id,
            relation,
            vin,
        )
        return member_service_pb2.RecordDealerRelationResponse(created=created)

    # ------------------------------------------------------------------ consent

    @_domain_errors
    async def RecordConsent(
        self, request: member_service_pb2.RecordConsentRequest, context: Any
    ) -> member_service_pb2.RecordConsentResponse:
        await self._view(request.member_id)
        now = self.clock()
        occur = (
            request.occur_time.ToDatetime(tzinfo=dt.UTC) if request.HasField("occur_time") else now
        )
        if occur > now + dt.timedelta(minutes=5):
            raise InvalidValue("occur_time", "a decision cannot lie in the future")
        state = await self.store.record_consent(
            self._write(request, request.request_id),
            member_id=request.member_id,
            purpose=_PURPOSES[request.purpose],
            channel=_CHANNELS[request.channel],
            action=_ACTIONS[request.action],
            occur_time=occur,
            source=request.source.strip(),
        )
        return member_service_pb2.RecordConsentResponse(state=consent_state_pb(state))

    @_domain_errors
    async def CheckConsent(
        self, request: member_service_pb2.CheckConsentRequest, context: Any
    ) -> member_service_pb2.CheckConsentResponse:
        caller = current_caller()
        purpose, channel = _PURPOSES[request.purpose], _CHANNELS[request.channel]
        # Not found and not visible are one answer, naming only what the caller sent.
        if request.WhichOneof("member") == "identity":
            key = identity_key(request.identity)
            if caller.kind is Kind.DEALER and key.type is not IdentityType.MOBILE:
                raise PermissionDenied(
                    "dealers may look members up by mobile only", reason="DEALER_MOBILE_ONLY"
                )
            member_id = await self.store.member_id_for(key)
            hidden = MemberNotFound("no member has that identity", reason="IDENTITY_NOT_FOUND")
        else:
            member_id = request.member_id
            hidden = MemberNotFound(f"member {member_id} not found", reason="MEMBER_NOT_FOUND")
        state = await self.store.member_state(member_id) if member_id else None
        if state is not None and state[0] is MemberState.MERGED:
            member_id = state[1]
            state = await self.store.member_state(member_id)
        if caller.kind in (Kind.CUSTOMER, Kind.DEALER):
            if member_id is None or state is None:
                raise hidden
            try:
                await self._view(member_id)
            except MemberNotFound:
                raise hidden from None
        if member_id is None or state is None or state[0] is not MemberState.ACTIVE:
            # Unknown or erased: no consent, and services learn nothing more.
            return member_service_pb2.CheckConsentResponse(granted=False)
        decided = consent.decide(await self.store.consent_events(member_id), purpose, channel)
        answer = consent_state_pb(decided)
        return member_service_pb2.CheckConsentResponse(
            granted=decided.granted, latest=answer.latest if decided.latest else None
        )

    @_domain_errors
    async def ListConsents(
        self, request: member_service_pb2.ListConsentsRequest, context: Any
    ) -> member_service_pb2.ListConsentsResponse:
        await self._view(request.member_id)
        states = consent.current(await self.store.consent_events(request.member_id))
        return member_service_pb2.ListConsentsResponse(
            consents=[consent_state_pb(s) for s in states]
        )

"""The member service's proto ⇄ domain conversions (the servicer's; timestamps are
`mesh.convert`'s): enum maps, decoded requests, encoded records, and the fingerprint that
binds a request id to its request (a hash of the whole request message, so a retry must
be the same message; erasure replaces these, see domain/erasure.py)."""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Sequence

from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp
from marque.member.v1 import member_pb2, member_service_pb2

from mesh.convert import EPOCH, timestamp
from mesh.errors import InvalidArgument
from mesh.idempotency import Request, scope_of
from mesh.identity import Caller
from mesh.paging import decode_token
from services.member.domain import consent
from services.member.domain.errors import invalid
from services.member.domain.identities import IdentityKey, IdentityType
from services.member.domain.ledger import EntryKind
from services.member.domain.model import (
    MemberRecord,
    TierChangeRecord,
    TransactionRecord,
    VehicleRecord,
)
from services.member.domain.relations import Relation
from services.member.domain.rules import MemberState
from services.member.domain.tiers import TierRule, by_code

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
PURPOSES = {
    member_pb2.CONSENT_PURPOSE_MARKETING_SMS: consent.Purpose.MARKETING_SMS,
    member_pb2.CONSENT_PURPOSE_PHONE_CALL: consent.Purpose.PHONE_CALL,
    member_pb2.CONSENT_PURPOSE_WECHAT_PUSH: consent.Purpose.WECHAT_PUSH,
    member_pb2.CONSENT_PURPOSE_DEALER_SHARING: consent.Purpose.DEALER_SHARING,
}
_PURPOSES_PB = {v: k for k, v in PURPOSES.items()}
CHANNELS = {
    member_pb2.CONSENT_CHANNEL_APP: consent.Channel.APP,
    member_pb2.CONSENT_CHANNEL_WECHAT: consent.Channel.WECHAT,
    member_pb2.CONSENT_CHANNEL_WEBSITE: consent.Channel.WEBSITE,
    member_pb2.CONSENT_CHANNEL_DEALER: consent.Channel.DEALER,
    member_pb2.CONSENT_CHANNEL_CALL_CENTER: consent.Channel.CALL_CENTER,
}
_CHANNELS_PB = {v: k for k, v in CHANNELS.items()}
ACTIONS = {
    member_pb2.CONSENT_ACTION_GRANT: consent.Action.GRANT,
    member_pb2.CONSENT_ACTION_WITHDRAW: consent.Action.WITHDRAW,
}
_ACTIONS_PB = {v: k for k, v in ACTIONS.items()}
RELATIONS = {
    member_service_pb2.DEALER_RELATION_SERVICE: Relation.SERVICE,
    member_service_pb2.DEALER_RELATION_LEAD: Relation.LEAD,
}


# ------------------------------------------------------------------------------ decoding


def asked(request: Message, caller: Caller) -> Request:
    """The request id of a mutating request in its caller's scope, bound to the request
    by a hash of the whole message (a retry sends the same message)."""
    digest = hashlib.sha256(request.SerializeToString(deterministic=True)).hexdigest()
    return Request(scope_of(caller), request.request_id, digest)  # type: ignore[attr-defined]


def identity_key(pb: member_service_pb2.IdentityKey, field: str = "identity") -> IdentityKey:
    """A requested identity as sent (the engine normalises it)."""
    type_ = _IDENTITY_TYPES.get(pb.type)
    if type_ is None:
        raise invalid(f"{field}.type", "unknown identity type")
    return IdentityKey(type_, pb.value, pb.app_id)


def int_key(token: str, fhash: str) -> int | None:
    """The integer key of a page token (AIP-158), None for the first page."""
    key = decode_token(token, fhash)
    if key is None:
        return None
    try:
        return int(key)
    except ValueError:
        raise InvalidArgument.for_field("page_token", "not a valid page token") from None


# ------------------------------------------------------------------------------ encoding


def _set_time(field: Timestamp, value: dt.datetime | None) -> None:
    """Set a message's Timestamp field in place to `value` (left unset for None), by
    `mesh.convert.timestamp`'s arithmetic: a Timestamp built and then given to a message's
    constructor is copied, and the reply's few messages cost twice as much that way."""
    if value is not None:
        delta = value - EPOCH
        field.seconds = delta.days * 86400 + delta.seconds
        field.nanos = delta.microseconds * 1000


def member_pb(record: MemberRecord, tiers: Sequence[TierRule]) -> member_pb2.Member:
    """A member (as the engine cut it for the caller), with its tier's description."""
    return member_into(member_pb2.Member(), record, tiers)


def member_into(
    m: member_pb2.Member, record: MemberRecord, tiers: Sequence[TierRule]
) -> member_pb2.Member:
    """`member_pb` written into `m` (an empty message, e.g. a reply's field: no copy)."""
    tier = by_code(record.tier, tiers)
    m.id = record.id
    m.state = _STATES_PB[record.state]
    m.merged_into = record.merged_into
    m.display_name = record.display_name
    m.city = record.city
    m.preferred_dealer_id = record.preferred_dealer_id
    m.points_balance = record.balance
    m.qualifying_points = record.qualifying_points
    for i in record.identities:
        pb = m.identities.add(type=_IDENTITY_TYPES_PB[i.key.type], value=i.key.value,
                              app_id=i.key.app_id)  # fmt: skip
        _set_time(pb.link_time, i.link_time)
    t = m.tier
    t.code, t.name, t.threshold = tier.code, tier.name, tier.threshold
    t.benefits.extend(tier.benefits)
    audit = m.audit
    _set_time(audit.create_time, record.create_time)
    audit.create_actor = record.create_actor
    _set_time(audit.update_time, record.update_time)
    audit.update_actor = record.update_actor
    return m


def transaction_pb(t: TransactionRecord) -> member_pb2.PointTransaction:
    """A ledger entry on the wire."""
    return transaction_into(member_pb2.PointTransaction(), t)


def transaction_into(
    pb: member_pb2.PointTransaction, t: TransactionRecord
) -> member_pb2.PointTransaction:
    """`transaction_pb` written into `pb` (an empty message, e.g. a reply's field)."""
    pb.id = t.id
    pb.member_id = t.member_id
    pb.kind = _KINDS_PB[t.kind]
    pb.points = t.points
    pb.reason = t.reason
    pb.source_ref = t.source_ref
    pb.balance_after = t.balance_after
    pb.actor = t.actor
    _set_time(pb.create_time, t.create_time)
    _set_time(pb.expire_time, t.expire_time)
    return pb


def tier_change_pb(t: TierChangeRecord) -> member_pb2.TierChange:
    """A tier change on the wire."""
    return member_pb2.TierChange(
        member_id=t.member_id,
        from_tier=t.from_tier,
        to_tier=t.to_tier,
        reason=t.reason,
        change_time=timestamp(t.change_time),
    )


def vehicle_pb(v: VehicleRecord) -> member_pb2.Vehicle:
    """A car with its history (as the engine cut it for the caller)."""
    return member_pb2.Vehicle(
        vin=v.vin,
        member_id=v.owner_id,
        brand=v.brand,
        model=v.model,
        purchase_date=v.purchase_date,
        dealer_id=v.dealer_id,
        history=[
            member_pb2.Ownership(
                member_id=h.member_id,
                start_time=timestamp(h.start_time),
                end_time=timestamp(h.end_time),
                reason=h.reason,
            )
            for h in v.history
        ],
    )


def consent_event_pb(e: consent.ConsentEvent) -> member_pb2.ConsentEvent:
    """A consent decision on the wire."""
    return member_pb2.ConsentEvent(
        member_id=e.member_id,
        purpose=_PURPOSES_PB[e.purpose],
        channel=_CHANNELS_PB[e.channel],
        action=_ACTIONS_PB[e.action],
        occur_time=timestamp(e.occur_time),
        source=e.source,
        actor=e.actor,
    )


def consent_state_pb(s: consent.ConsentState) -> member_pb2.ConsentState:
    """A consent state on the wire."""
    return member_pb2.ConsentState(
        purpose=_PURPOSES_PB[s.purpose],
        channel=_CHANNELS_PB[s.channel],
        granted=s.granted,
        latest=consent_event_pb(s.latest) if s.latest is not None else None,
    )

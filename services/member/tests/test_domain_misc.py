"""Identities, consent, erasure and access rules of the member domain."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from mesh.errors import FailedPrecondition, InvalidArgument
from mesh.identity import Caller, Kind
from services.member.domain import consent, erasure, identities, rules, visibility
from services.member.domain.consent import Action, Channel, ConsentEvent, Purpose
from services.member.domain.identities import IdentityKey, IdentityType
from services.member.domain.visibility import View

T0 = datetime(2025, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    "raw",
    [
        "13812345678",
        "+86 138 1234 5678",
        "0086-138-1234-5678",
        "\uff11\uff13\uff18\uff11\uff12\uff13\uff14\uff15\uff16\uff17\uff18",
    ],
)
def test_mobile_spellings_meet(raw: str) -> None:
    key = identities.normalise(IdentityType.MOBILE, raw)
    assert key == IdentityKey(IdentityType.MOBILE, "+8613812345678")


@pytest.mark.parametrize("raw", ["12012345678", "10012345678", "021-12345678", "abc"])
def test_not_a_mobile(raw: str) -> None:
    with pytest.raises(InvalidArgument) as e:
        identities.normalise(IdentityType.MOBILE, raw)
    assert [v.field for v in e.value.field_violations] == ["identity.value"]


def test_other_identity_types() -> None:
    assert identities.normalise(IdentityType.EMAIL, " A.B@Example.COM ").value == "a.b@example.com"
    openid = identities.normalise(IdentityType.WECHAT_OPENID, "oABC_123-xyz", "wx1234")
    assert openid == IdentityKey(IdentityType.WECHAT_OPENID, "oABC_123-xyz", "wx1234")
    with pytest.raises(InvalidArgument, match="app id"):
        identities.normalise(IdentityType.WECHAT_OPENID, "oABC_123-xyz")
    with pytest.raises(InvalidArgument, match="only a WeChat openid"):
        identities.normalise(IdentityType.WECHAT_UNIONID, "uABC_123", "wx1")
    with pytest.raises(InvalidArgument):
        identities.normalise(IdentityType.APP_USER_ID, "has space")
    with pytest.raises(InvalidArgument):
        identities.normalise(IdentityType.EMAIL, "not-an-email")
    assert identities.visible_to_dealer(IdentityKey(IdentityType.MOBILE, "+8613812345678"))
    assert not identities.visible_to_dealer(IdentityKey(IdentityType.EMAIL, "a@b.cn"))


def _ev(action: Action, at: datetime, seq: int, channel: Channel = Channel.APP) -> ConsentEvent:
    return ConsentEvent("m1", Purpose.MARKETING_SMS, channel, action, at, "app", "customer:m1", seq)


def test_no_record_is_no_consent() -> None:
    state = consent.decide([], Purpose.MARKETING_SMS, Channel.APP)
    assert not state.granted and state.latest is None


def test_latest_decision_wins_even_when_recorded_late() -> None:
    grant = _ev(Action.GRANT, T0, 1)
    withdraw = _ev(Action.WITHDRAW, T0 + timedelta(days=1), 2)
    late_old_grant = _ev(Action.GRANT, T0 - timedelta(days=5), 3)
    assert consent.decide([grant], Purpose.MARKETING_SMS, Channel.APP).granted
    state = consent.decide([grant, withdraw, late_old_grant], Purpose.MARKETING_SMS, Channel.APP)
    assert not state.granted and state.latest == withdraw
    # Same decision time: the later-recorded event wins.
    regrant = _ev(Action.GRANT, T0 + timedelta(days=1), 4)
    assert consent.decide([withdraw, regrant], Purpose.MARKETING_SMS, Channel.APP).granted


def test_consent_is_per_channel_and_purpose() -> None:
    events = [_ev(Action.GRANT, T0, 1, Channel.WECHAT)]
    assert not consent.decide(events, Purpose.MARKETING_SMS, Channel.APP).granted
    assert not consent.decide(events, Purpose.PHONE_CALL, Channel.WECHAT).granted
    assert [s.channel for s in consent.current(events)] == [Channel.WECHAT]


def test_erasure_tombstones_are_random_and_idempotent() -> None:
    p = erasure.plan(already_erased=False, identity_ids=[1, 2], balance=30, owned_vins=["V"])
    stones = [t for _, t in p.identity_tombstones]
    assert len(set(stones)) == 2 and all(erasure.is_tombstone(t) for t in stones)
    assert all(len(t) == len("erased-") + 32 for t in stones)
    assert p.forfeit_points == 30 and p.release_vins == ("V",)
    again = erasure.plan(already_erased=True, identity_ids=[1], balance=0, owned_vins=[])
    assert again.already_erased and not again.identity_tombstones and again.forfeit_points == 0


def test_access_views() -> None:
    view_for = visibility.view_for
    customer = Caller(Kind.CUSTOMER, "app-m1", member_id="m1")
    assert view_for(Caller(Kind.OEM, "staff"), "m1") is View.FULL
    assert view_for(Caller(Kind.SERVICE, "sales", service="sales"), "m1") is View.FULL
    assert view_for(customer, "m1") is View.FULL
    assert view_for(customer, "m2") is View.NONE
    dealer = Caller(Kind.DEALER, "D1-staff", dealer_id="D1")
    assert view_for(dealer, "m1", dealer_related=True) is View.MOBILE_ONLY
    assert view_for(dealer, "m1") is View.NONE
    assert view_for(Caller(Kind.CHANNEL, "autohome", channel="autohome"), "m1") is View.NONE
    # A customer whose member was merged keeps a token naming the old id.
    assert view_for(customer, "m2", own_merged_into="m2") is View.FULL
    assert view_for(customer, "m3", own_merged_into="m2") is View.NONE
    assert view_for(Caller(Kind.CUSTOMER, "app-x", member_id="mx"), "", own_merged_into="") is (
        View.NONE
    )


def test_state_rules() -> None:
    rules.require_active("m1", rules.MemberState.ACTIVE, None)
    with pytest.raises(FailedPrecondition, match="merged into m2"):
        rules.require_active("m1", rules.MemberState.MERGED, "m2")
    with pytest.raises(FailedPrecondition) as e:
        rules.require_active("m1", rules.MemberState.ERASED, None)
    assert e.value.reason == "MEMBER_ERASED"
    with pytest.raises(FailedPrecondition) as e:
        rules.check_merge("m1", "m1")
    assert e.value.reason == "SAME_MEMBER"

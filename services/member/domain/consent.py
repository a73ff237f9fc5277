"""Consent records (PIPL): grants and withdrawals per purpose and channel.

Every decision is an event with the time the member decided and where it was captured;
events are never changed. The state of a (purpose, channel) is its latest event by
decision time (ties: the later-recorded event wins), so a late-arriving old paper form
cannot override a newer withdrawal in the app. No event at all means no consent: silence
is never agreement.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum

from services.member.domain.errors import invalid


class Purpose(StrEnum):
    """What a consent is for; values are stored."""

    MARKETING_SMS = "marketing_sms"
    PHONE_CALL = "phone_call"
    WECHAT_PUSH = "wechat_push"
    DEALER_SHARING = "dealer_sharing"


class Channel(StrEnum):
    """Which channel of the brand a consent applies to; values are stored."""

    APP = "app"
    WECHAT = "wechat"
    WEBSITE = "website"
    DEALER = "dealer"
    CALL_CENTER = "call_center"


class Action(StrEnum):
    """Grant or withdrawal; values are stored."""

    GRANT = "grant"
    WITHDRAW = "withdraw"


@dataclass(frozen=True, slots=True)
class ConsentEvent:
    """One recorded decision. `seq` orders events recorded at the same decision time."""

    member_id: str
    purpose: Purpose
    channel: Channel
    action: Action
    occur_time: datetime
    source: str
    actor: str
    seq: int = 0


@dataclass(frozen=True, slots=True)
class ConsentState:
    """The current answer for one (purpose, channel)."""

    purpose: Purpose
    channel: Channel
    granted: bool
    latest: ConsentEvent | None


def _order(e: ConsentEvent) -> tuple[datetime, int]:
    return (e.occur_time, e.seq)


def decide(events: Iterable[ConsentEvent], purpose: Purpose, channel: Channel) -> ConsentState:
    """The state of one consent: granted only if the latest event is a grant."""
    relevant = [e for e in events if e.purpose is purpose and e.channel is channel]
    if not relevant:
        return ConsentState(purpose, channel, False, None)
    latest = max(relevant, key=_order)
    return ConsentState(purpose, channel, latest.action is Action.GRANT, latest)


def current(events: Iterable[ConsentEvent]) -> list[ConsentState]:
    """Every (purpose, channel) with at least one event, in enum order."""
    evs = list(events)
    keys = {(e.purpose, e.channel) for e in evs}
    order = {p: i for i, p in enumerate(Purpose)}, {c: i for i, c in enumerate(Channel)}
    return [
        decide(evs, p, c) for p, c in sorted(keys, key=lambda k: (order[0][k[0]], order[1][k[1]]))
    ]


# A decision is recorded when the member made it; a clock a little ahead is tolerated.
FUTURE_TOLERANCE = timedelta(minutes=5)


# What a member decided: for which purpose, on which channel, grant or withdraw.
Decision = tuple[Purpose, Channel, Action]


def event(
    member_id: str,
    decision: Decision,
    *,
    occur_time: datetime,
    source: str,
    actor: str,
    now: datetime,
) -> ConsentEvent:
    """A decision to record: made at `occur_time`, which cannot lie in the future (beyond a
    little clock skew), captured at `source`, recorded by `actor`."""
    if occur_time > now + FUTURE_TOLERANCE:
        raise invalid("occur_time", "a decision cannot lie in the future")
    purpose, channel, action = decision
    return ConsentEvent(member_id, purpose, channel, action, occur_time, source.strip(), actor)


def merge_copies(events: Iterable[ConsentEvent], winner_id: str) -> list[ConsentEvent]:
    """A merge copies the loser's history to the winner (append-only: copies, with the
    original decision times and a source naming the merge), so the latest decision of
    either record still wins."""
    return [
        replace(e, member_id=winner_id, source=f"merge:{e.source}"[:128], seq=0)
        for e in sorted(events, key=lambda x: x.seq)
    ]

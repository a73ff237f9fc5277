"""What an intake batch looks up and writes, shared by its SQLite and PostgreSQL forms."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from services.lead.domain.model import (
    Lead,
    Touchpoint,
)
from services.lead.store.tables import leads

LEAD_COLUMNS = tuple(leads.c.keys())
LEAD_TIMES = frozenset({"follow_up_due_time", "last_touch_time", "create_time", "update_time"})
LEAD_BOOLS = frozenset(
    {"test_drive_requested", "consent_contact", "consent_marketing", "consent_share"}
)
TP_COLUMNS = (
    "lead_id",
    "channel",
    "channel_lead_id",
    "occur_time",
    "payload_ref",
    "request_id",
    "dealer_id",
)


@dataclass(frozen=True, slots=True)
class Prior:
    """What an earlier call with a request id did: its lead and the request's fingerprint."""

    result: str
    fingerprint: str


@dataclass(frozen=True, slots=True)
class Remembered:
    """One request id of a batch to remember: whose, which request, the lead it concerns."""

    scope: str
    request_id: str
    fingerprint: str
    result: str


def request_row(method: str, r: Remembered, now: dt.datetime) -> dict[str, Any]:
    return {
        "scope": r.scope,
        "method": method,
        "request_id": r.request_id,
        "fingerprint": r.fingerprint,
        "result": r.result,
        "create_time": now,
    }


# A request id as its caller sent it: (scope, request id).
RequestKey = tuple[str, str]
# A channel lead id in its namespace: (channel, walk-in dealer or "", channel lead id).
ChannelKey = tuple[str, str, str]


@dataclass(slots=True)
class BatchFound:
    """What a batch's lookups found (see `LeadEngine._write_batch`)."""

    by_request: dict[RequestKey, Prior]
    by_channel: dict[ChannelKey, str]
    key_db: dict[tuple[str, str], str]
    leads: dict[str, Lead]
    loads: dict[str, int]


@dataclass(slots=True)
class BatchWrites:
    """What a batch writes, in one transaction."""

    created: Sequence[Lead]
    changed: Sequence[Lead]
    touchpoints: Sequence[tuple[str, Touchpoint]]
    key_inserts: Sequence[tuple[str, str, str]]
    key_updates: Sequence[tuple[str, str, str]]
    requests: Sequence[Remembered]
    # Outbox rows of the batch's events (mesh.events.outbox.Outbox.row).
    events: Sequence[dict[str, Any]]
    method: str
    now: dt.datetime
    day: dt.date
    added: dict[str, int]

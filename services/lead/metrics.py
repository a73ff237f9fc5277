"""Domain metrics of the lead service, next to the mesh's standard `grpc_server_*` ones.

Labels are closed sets (channel names, outcomes, grades), never personal data: a mobile
number or a name in a label would leak into every dashboard and create unbounded series.
The counters live in prometheus_client's default registry, which the mesh's `/metrics`
endpoint serves.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import Counter

OUTCOMES = ("created", "merged", "duplicate", "rejected")

LEADS_SUBMITTED = Counter(
    "marque_leads_submitted",
    "Leads received, by channel and what became of them "
    "(created, merged into an open lead, duplicate of a resend or retry, rejected).",
    ["channel", "outcome"],
)

LEADS_GRADED = Counter(
    "marque_leads_graded",
    "Leads rated on creation or re-rated on merge, by resulting grade (H/A/B/C/N).",
    ["grade"],
)


# The labelled children, looked up once per label set: `labels()` validates and hashes its
# arguments on every call, a few microseconds on every SubmitLead.
_submitted: dict[tuple[str, str], Any] = {}
_graded: dict[str, Any] = {}


def record_submitted(channel: str, outcome: str, n: int = 1) -> None:
    """Count `n` submissions of `channel` with `outcome` (one of OUTCOMES)."""
    key = (channel or "unknown", outcome)
    child = _submitted.get(key)
    if child is None:
        child = _submitted[key] = LEADS_SUBMITTED.labels(channel=key[0], outcome=outcome)
    child.inc(n)


def record_graded(grade: str, n: int = 1) -> None:
    """Count `n` leads (re-)rated to `grade`."""
    key = grade or "N"
    child = _graded.get(key)
    if child is None:
        child = _graded[key] = LEADS_GRADED.labels(grade=key)
    child.inc(n)

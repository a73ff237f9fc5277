"""What ListLeads asks for, as the application hands it to the store: the caller's filters
after its scope was applied (a dealer's own leads only)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class LeadFilter:
    """ListLeads filters, already scoped to the caller; None/empty means no filter."""

    dealer_id: str | None = None
    unassigned_only: bool = False
    grade: str | None = None
    status: str | None = None
    channel: str | None = None
    create_start: dt.datetime | None = None
    create_end: dt.datetime | None = None
    overdue_at: dt.datetime | None = None
    # Nothing can match (a dealer asking for another dealer's leads): no query at all.
    nothing: bool = False


@dataclass(frozen=True, slots=True)
class ListQuery:
    """ListLeads after the caller's scope was applied: the filter, the page key after which
    to read, how many."""

    flt: LeadFilter
    after: tuple[dt.datetime, str] | None
    limit: int

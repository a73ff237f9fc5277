"""A dealer's opening hours as stored: the time zone, and the week as JSON
(`[["09:00","18:00"], null, ...]`, Monday first, null for a closed day)."""

from __future__ import annotations

import datetime as dt
import json

from services.sales.domain.testdrive import Hours, OpeningHours


def days_json(hours: OpeningHours) -> str:
    """The week as stored."""
    week = [None if h is None else [f"{h[0]:%H:%M}", f"{h[1]:%H:%M}"] for h in hours.days]
    return json.dumps(week, separators=(",", ":"))


def hours_of(time_zone: str, days: str) -> OpeningHours:
    """The hours of a stored dealer."""
    week: list[Hours] = [
        None if d is None else (dt.time.fromisoformat(d[0]), dt.time.fromisoformat(d[1]))
        for d in json.loads(days)
    ]
    return OpeningHours(time_zone=time_zone, days=tuple(week))

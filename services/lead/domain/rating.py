"""Rating: the grade from the purchase time frame and a 0-100 score from weights.

The grade says how soon the customer buys (H/A/B/C/N, thresholds in `LeadConfig`); the
score orders leads within a grade by how promising they look: channel quality, grade,
completeness, repeated touchpoints, test-drive interest and recency. Every component is
kept as a human-readable reason ("channel AUTOHOME quality +18"), so a dealer can see why
a lead sits where it does and an OEM can tune the weights.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from services.lead.domain.config import LeadConfig
from services.lead.domain.model import Channel, CleanLead, Grade, Lead, Rating, TimeFrame


@dataclass(frozen=True, slots=True)
class RatingFacts:
    """What the rating looks at, taken from a new submission or a merged lead."""

    time_frame: TimeFrame
    channels: tuple[Channel, ...]
    touchpoints: int
    test_drive_requested: bool
    # Completeness: which of name, mobile, email, city, series, model are present.
    present: tuple[bool, ...]
    # Age of the latest enquiry at rating time (zero if the channel gave no time).
    age_seconds: float

    @classmethod
    def of_clean(cls, clean: CleanLead, now: datetime) -> RatingFacts:
        """Facts of a first submission."""
        return cls(
            time_frame=clean.time_frame,
            channels=(clean.channel,),
            touchpoints=1,
            test_drive_requested=clean.test_drive_requested,
            present=_present(
                clean.name, clean.mobile_e164, clean.email, clean.city, clean.series, clean.model
            ),
            age_seconds=_age(clean.request_time, now),
        )

    @classmethod
    def of_lead(cls, lead: Lead, enquiry_time: datetime | None, now: datetime) -> RatingFacts:
        """Facts of a lead with all its touchpoints; `enquiry_time` is the latest
        submission's own time (None: it arrived now)."""
        return cls(
            time_frame=lead.time_frame,
            channels=tuple(t.channel for t in lead.touchpoints) or (lead.channel,),
            touchpoints=max(1, len(lead.touchpoints)),
            test_drive_requested=lead.test_drive_requested,
            present=_present(
                lead.name, lead.mobile_e164, lead.email, lead.city, lead.series, lead.model
            ),
            age_seconds=_age(enquiry_time, now),
        )


def _present(*values: str | None) -> tuple[bool, ...]:
    return tuple(bool(v) for v in values)


def _age(enquiry_time: datetime | None, now: datetime) -> float:
    if enquiry_time is None:
        return 0.0
    return max(0.0, (now - enquiry_time).total_seconds())


def grade_for(time_frame: TimeFrame, config: LeadConfig) -> Grade:
    """H/A/B/C for a time frame within the configured day thresholds, N otherwise."""
    days = time_frame.days
    if days is None or time_frame is TimeFrame.LATER:
        return Grade.N
    for grade, limit in (
        (Grade.H, config.grade_h_days),
        (Grade.A, config.grade_a_days),
        (Grade.B, config.grade_b_days),
        (Grade.C, config.grade_c_days),
    ):
        if days <= limit:
            return grade
    return Grade.N


def rate(facts: RatingFacts, config: LeadConfig) -> Rating:
    """Grade and score with one reason per component; the score is clamped to 0-100."""
    grade = grade_for(facts.time_frame, config)
    reasons = [f"time frame {facts.time_frame.value} -> grade {grade.value}"]
    score = 0

    def add(points: int, why: str) -> None:
        nonlocal score
        score += points
        reasons.append(f"{why} {points:+d}")

    add(config.grade_points.get(grade, 0), f"grade {grade.value}")
    best = max(facts.channels, key=lambda c: (config.channel_quality.get(c, 0), c.value))
    add(config.channel_quality.get(best, 0), f"channel {best.value} quality")
    have, total = sum(facts.present), len(facts.present)
    add(
        round(config.completeness_points * have / total) if total else 0,
        f"completeness {have}/{total}",
    )
    extra = facts.touchpoints - 1
    add(
        min(config.touchpoint_max_points, extra * config.touchpoint_points),
        f"{facts.touchpoints} touchpoint{'s' if facts.touchpoints != 1 else ''}",
    )
    if facts.test_drive_requested:
        add(config.test_drive_points, "test drive requested")
    hours = facts.age_seconds / 3600
    if hours <= config.recency_full_hours:
        add(config.recency_points, f"enquiry within {config.recency_full_hours}h")
    elif hours <= config.recency_half_days * 24:
        add(config.recency_points // 2, f"enquiry within {config.recency_half_days} days")
    else:
        add(0, f"enquiry {int(hours // 24)} days old")
    return Rating(grade=grade, score=max(0, min(100, score)), reasons=tuple(reasons))

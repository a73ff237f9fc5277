"""Configuration of the member programme: points expiry and tiers. `from_env` reads a
mapping it is given (app.py passes `os.environ`): the domain never reads the environment."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from services.member.domain.ledger import DEFAULT_EXPIRY_MONTHS
from services.member.domain.tiers import DEFAULT_TIERS, TierRule, tiers_from_env, validate_tiers


@dataclass(frozen=True)
class MemberConfig:
    """Points expire `expiry_months` after they are earned; tiers by rolling 12 months."""

    expiry_months: int = DEFAULT_EXPIRY_MONTHS
    tiers: tuple[TierRule, ...] = field(default=DEFAULT_TIERS)

    def __post_init__(self) -> None:
        if self.expiry_months <= 0:
            raise ValueError("expiry_months must be positive")
        object.__setattr__(self, "tiers", validate_tiers(self.tiers))

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> MemberConfig:
        """`MARQUE_MEMBER_POINTS_EXPIRY_MONTHS` (default 24) and `MARQUE_MEMBER_TIERS`."""
        raw = env.get("MARQUE_MEMBER_POINTS_EXPIRY_MONTHS", "").strip()
        months = int(raw) if raw else DEFAULT_EXPIRY_MONTHS
        return cls(expiry_months=months, tiers=tiers_from_env(env))

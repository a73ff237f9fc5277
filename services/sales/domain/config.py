"""The sales rules' configuration: every knob in one frozen dataclass.

Read once, by app.py's lifespan (`SalesConfig.from_env(os.environ)`), and handed to the
engine, which passes it to the rules: the domain never reads the environment. Each knob an
operator may turn is `MARQUE_SALES_<KNOB>`; add the service's own beside the example.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

# The most the proto (`buf.validate` max_len) and the column (String(100)) take.
DISPLAY_NAME_LIMIT = 100


@dataclass(frozen=True, slots=True)
class SalesConfig:
    """The knobs of the sales rules."""

    # The longest display name a new sales may have, once trimmed (at most the limit).
    display_name_max_chars: int = DISPLAY_NAME_LIMIT

    def __post_init__(self) -> None:
        if not 1 <= self.display_name_max_chars <= DISPLAY_NAME_LIMIT:
            raise ValueError(f"display_name_max_chars must be 1-{DISPLAY_NAME_LIMIT}")

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> SalesConfig:
        """Defaults overridden by MARQUE_SALES_DISPLAY_NAME_MAX_CHARS."""
        config = cls()
        value = env.get("MARQUE_SALES_DISPLAY_NAME_MAX_CHARS", "").strip()
        if value:
            config = replace(config, display_name_max_chars=int(value))
        return config

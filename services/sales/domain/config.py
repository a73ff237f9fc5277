"""The sales rules' configuration: every knob in one frozen dataclass.

Read once, by app.py's lifespan (`SalesConfig.from_env(os.environ)`), and handed to the
engine, which passes it to the rules: the domain never reads the environment. Each knob an
operator may turn is `MARQUE_SALES_<KNOB>`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from decimal import Decimal

DEFAULT_TIME_ZONE = "Asia/Shanghai"


@dataclass(frozen=True, slots=True)
class SalesConfig:
    """The knobs of the sales rules."""

    # How long a test drive takes, in minutes (a multiple of 15).
    test_drive_minutes: int = 60
    # How many days a quote stays valid when CreateQuote names no date.
    quote_valid_days: int = 14
    # How often each process reloads the price book (seconds); a PutTrim reloads at once.
    price_book_refresh_s: float = 5.0
    # The time zone of a dealer that has set no opening hours (and of the invoice date).
    default_time_zone: str = DEFAULT_TIME_ZONE
    # CNY of the deposit a cancellation keeps once a car is allocated to the order.
    allocated_forfeit: Decimal = Decimal("0.00")

    def __post_init__(self) -> None:
        if self.test_drive_minutes % 15 or not 15 <= self.test_drive_minutes <= 240:
            raise ValueError("test_drive_minutes must be a multiple of 15 in 15-240")
        if not 1 <= self.quote_valid_days <= 90:
            raise ValueError("quote_valid_days must be 1-90")
        if not 0.1 <= self.price_book_refresh_s <= 3600:
            raise ValueError("price_book_refresh_s must be 0.1-3600")
        if not Decimal(0) <= self.allocated_forfeit <= Decimal(1_000_000):
            raise ValueError("allocated_forfeit must be 0-1,000,000 CNY")

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> SalesConfig:
        """Defaults overridden by MARQUE_SALES_<FIELD> (upper case), e.g.
        MARQUE_SALES_TEST_DRIVE_MINUTES=45."""
        config = cls()
        for field in fields(cls):
            raw = env.get(f"MARQUE_SALES_{field.name.upper()}", "").strip()
            if raw:
                kind: type = type(getattr(config, field.name))
                config = replace(config, **{field.name: kind(raw)})
        return config

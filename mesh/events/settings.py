"""The settings of domain events, from the environment (read here, not in mesh/config.py,
until the ServiceSpec integrates events).

- `MARQUE_NATS_URL` (`nats://127.0.0.1:4222`): NATS servers, comma-separated; `make run`
  sets it to its embedded server.
- `MARQUE_NATS_CREDS`: a NATS credentials file (production), none by default.
- `MARQUE_EVENTS_STREAM_REPLICAS` (1): replicas of each producing service's stream (3 on
  a cluster).
- `MARQUE_EVENTS_STREAM_MAX_AGE_DAYS` (7): how long a stream keeps events, i.e. how long a
  consumer may be down and still receive them.
- `MARQUE_EVENTS_DUPLICATE_WINDOW_SECONDS` (120): JetStream drops a publish whose
  `Nats-Msg-Id` it saw this recently.
- `MARQUE_EVENTS_MAX_DELIVER` (5): deliveries of an event whose handler keeps failing
  before it is dead-lettered.
- `MARQUE_EVENTS_RETENTION_DAYS` (7): sent outbox rows and inbox rows are swept after
  this (dead letters are kept). Keep it at least the stream's max age: the inbox must
  remember an event as long as it can be redelivered.
- `MARQUE_EVENTS_ACK_WAIT_SECONDS` (30): an unacknowledged delivery (a consumer that died
  mid-handler) is redelivered after this.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass

DEFAULT_NATS_URL = "nats://127.0.0.1:4222"


def _number(env: Mapping[str, str], name: str, default: float, *, minimum: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{name} must be a number, got {raw!r}") from None
    if not minimum <= value < math.inf:
        raise ValueError(f"{name} must be at least {minimum:g}, got {raw!r}")
    return value


def nats_url(env: Mapping[str, str] | None = None) -> str:
    """`MARQUE_NATS_URL`, else the embedded server's local address."""
    env = os.environ if env is None else env
    return env.get("MARQUE_NATS_URL", "").strip() or DEFAULT_NATS_URL


@dataclass(frozen=True)
class EventSettings:
    """What the relay, the consumers and the sweepers of one process need."""

    nats_url: str = DEFAULT_NATS_URL
    nats_creds: str = ""
    stream_replicas: int = 1
    stream_max_age_seconds: float = 7 * 86400.0
    duplicate_window_seconds: float = 120.0
    max_deliver: int = 5
    retention_seconds: float = 7 * 86400.0
    ack_wait_seconds: float = 30.0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> EventSettings:
        """The settings from the environment (ValueError naming a bad variable)."""
        env = os.environ if env is None else env
        return cls(
            nats_url=nats_url(env),
            nats_creds=env.get("MARQUE_NATS_CREDS", "").strip(),
            stream_replicas=int(_number(env, "MARQUE_EVENTS_STREAM_REPLICAS", 1, minimum=1)),
            stream_max_age_seconds=86400.0
            * _number(env, "MARQUE_EVENTS_STREAM_MAX_AGE_DAYS", 7, minimum=0.0001),
            duplicate_window_seconds=_number(
                env, "MARQUE_EVENTS_DUPLICATE_WINDOW_SECONDS", 120, minimum=1
            ),
            max_deliver=int(_number(env, "MARQUE_EVENTS_MAX_DELIVER", 5, minimum=1)),
            retention_seconds=86400.0
            * _number(env, "MARQUE_EVENTS_RETENTION_DAYS", 7, minimum=0.0001),
            ack_wait_seconds=_number(env, "MARQUE_EVENTS_ACK_WAIT_SECONDS", 30, minimum=1),
        )

"""What gRPC does itself for a mesh channel, configured rather than re-implemented
(DESIGN.md §4): the service config and the channel arguments.

- a service config: retries on UNAVAILABLE with exponential backoff (4 attempts, with retry
  throttling so an outage does not multiply load), round_robin load balancing (effective
  for `dns:///` targets such as Kubernetes headless services), per-method timeouts;
- keepalive, so a dead peer behind a silent network is noticed.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

DEFAULT_TIMEOUT = 10.0

RETRY_POLICY: dict[str, Any] = {
    "maxAttempts": 4,
    "initialBackoff": "0.1s",
    "maxBackoff": "2s",
    "backoffMultiplier": 2,
    "retryableStatusCodes": ["UNAVAILABLE"],
}
# gRPC's retry token bucket: a failure costs 1 token, a success earns 0.1, and retries pause
# while fewer than half the tokens are left, so a dead backend does not get 4x the load.
RETRY_THROTTLING: dict[str, Any] = {"maxTokens": 10, "tokenRatio": 0.1}


def _duration(seconds: float) -> str:
    """Seconds as a protobuf JSON Duration (`"1.5s"`), as the service config wants them."""
    return f"{seconds:.9f}".rstrip("0").rstrip(".") + "s"


def service_config(timeouts: Mapping[str, float] | None = None) -> dict[str, Any]:
    """The gRPC service config: round_robin, retry on UNAVAILABLE, per-method timeouts.

    `timeouts` maps `package.Service/Method` (or `package.Service` for all its methods) to
    seconds. A method config does not inherit from the default one, so every entry repeats
    the retry policy.
    """
    method_config: list[dict[str, Any]] = []
    for name, seconds in (timeouts or {}).items():
        service, _, method = name.lstrip("/").partition("/")
        selector = {"service": service, "method": method} if method else {"service": service}
        method_config.append(
            {"name": [selector], "retryPolicy": RETRY_POLICY, "timeout": _duration(seconds)}
        )
    method_config.append({"name": [{}], "retryPolicy": RETRY_POLICY})
    return {
        "loadBalancingConfig": [{"round_robin": {}}],
        "methodConfig": method_config,
        "retryThrottling": RETRY_THROTTLING,
    }


def channel_options(
    timeouts: Mapping[str, float] | None = None, *, user_agent: str = "marque-mesh"
) -> list[tuple[str, Any]]:
    """Channel arguments: the service config plus keepalive.

    Keepalive pings every `MARQUE_CLIENT_KEEPALIVE_MS` (default 5 min, the interval a grpc
    server accepts by default without answering "too many pings") and only while calls are
    open.
    """
    keepalive_ms = int(os.environ.get("MARQUE_CLIENT_KEEPALIVE_MS", "300000"))
    return [
        ("grpc.service_config", json.dumps(service_config(timeouts))),
        ("grpc.enable_retries", 1),
        ("grpc.keepalive_time_ms", keepalive_ms),
        ("grpc.keepalive_timeout_ms", 20_000),
        ("grpc.keepalive_permit_without_calls", 0),
        ("grpc.primary_user_agent", user_agent),
    ]


def default_timeout_from_env() -> float:
    """`MARQUE_CLIENT_TIMEOUT` seconds (default 10) for unary calls without their own."""
    raw = os.environ.get("MARQUE_CLIENT_TIMEOUT", "").strip()
    return float(raw) if raw else DEFAULT_TIMEOUT

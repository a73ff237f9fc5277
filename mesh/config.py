"""Process configuration from the environment, with the embedded defaults of DESIGN.md §10.

Every setting has a default that works on a laptop with nothing set; production sets the
same names through a ConfigMap and Secrets.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from mesh.catalog import ServiceEntry, entry

ROOT = Path(__file__).resolve().parent.parent


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"{name} must be an integer, got {raw!r}") from None


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        return float(raw)
    except ValueError:
        raise ValueError(f"{name} must be a number, got {raw!r}") from None


def _flag(env: Mapping[str, str], name: str) -> bool:
    raw = env.get(name, "").strip().lower()
    if raw not in ("", "0", "1", "true", "false"):
        raise ValueError(f"{name} must be 0 or 1, got {raw!r}")
    return raw in ("1", "true")


def var_dir(env: Mapping[str, str] | None = None) -> Path:
    """Where local state lives (SQLite files, the dev signing key): `MARQUE_VAR_DIR` or ./var."""
    env = os.environ if env is None else env
    return Path(env.get("MARQUE_VAR_DIR") or ROOT / "var")


def database_url(service: str, env: Mapping[str, str] | None = None) -> str:
    """`MARQUE_<SERVICE>_DATABASE_URL`, else `MARQUE_DATABASE_URL`, else a SQLite file in var/."""
    env = os.environ if env is None else env
    prefix = entry(service).env_prefix
    url = env.get(f"{prefix}_DATABASE_URL") or env.get("MARQUE_DATABASE_URL")
    if url:
        return url
    return f"sqlite+aiosqlite:///{var_dir(env) / (service.replace('-', '_') + '.db')}"


def service_address(service: str, env: Mapping[str, str] | None = None) -> str:
    """Where to reach a service: `MARQUE_<SERVICE>_ADDR` (e.g. `dns:///lead:50051`), else
    the local port table on loopback."""
    env = os.environ if env is None else env
    e = entry(service)
    return env.get(f"{e.env_prefix}_ADDR") or f"127.0.0.1:{e.grpc_port}"


@dataclass(frozen=True)
class Settings:
    """What one service process needs to know to serve."""

    service: str
    host: str = "127.0.0.1"
    grpc_port: int = 0
    metrics_port: int = 0
    database_url: str = ""
    var_dir: Path = field(default_factory=lambda: ROOT / "var")
    # Calls in flight (counted from handler look-up to the reply) above this are shed with
    # RESOURCE_EXHAUSTED at look-up (mesh/shedding.py).
    max_concurrency: int = 512
    # Seconds: once even the fastest calls of an interval spent longer than this in the
    # server, it admits only throughput x target calls in flight; 0: the cap only, no
    # adaptive limit at all (mesh/shedding.py).
    queue_delay_target: float = 0.25
    # False: no admission at look-up nor extra acceptors (grpc's own one-call-at-a-time accept
    # and the chain's limit on calls in handlers, as before mesh/shedding.py).
    load_shedding: bool = True
    # Seconds in-flight calls get to finish after SIGTERM.
    shutdown_grace: float = 10.0
    # Access logs: "all" calls, "sampled" (traced, failed and slow calls) or "errors" (failed
    # and slow calls; the default: a traced call's span already records it, a log line per call
    # costs ~80 µs at 100% sampling).
    access_log: str = "errors"
    slow_call_seconds: float = 1.0
    log_level: str = "INFO"
    # Servers close connections after this age so dns:/// round_robin clients rebalance.
    max_connection_age_ms: int = 300_000
    max_connection_age_grace_ms: int = 30_000
    # False: the gRPC port is bound exclusively, so a second process started on it fails
    # instead of silently taking half the connections (grpc's default is SO_REUSEPORT).
    # True (`MARQUE_REUSEPORT=1`) for several processes of one service sharing a port.
    reuseport: bool = False
    # Request ids (idempotent retries) are forgotten after this many days, swept every
    # `retention_sweep_seconds` (mesh/retention.py).
    request_id_retention_days: float = 7.0
    retention_sweep_seconds: float = 3600.0

    @classmethod
    def from_env(cls, service: str, env: Mapping[str, str] | None = None) -> Settings:
        """Settings of `service` from the environment; unknown services are a KeyError."""
        env = os.environ if env is None else env
        e: ServiceEntry = entry(service)
        access_log = env.get("MARQUE_ACCESS_LOG", "errors")
        if access_log not in ("all", "sampled", "errors"):
            raise ValueError("MARQUE_ACCESS_LOG must be all, sampled or errors")
        shedding = env.get("MARQUE_LOAD_SHEDDING", "on").strip().lower()
        if shedding not in ("on", "off"):
            raise ValueError("MARQUE_LOAD_SHEDDING must be on or off")
        target = _float(env, "MARQUE_QUEUE_DELAY_TARGET", 0.25)
        if not 0 <= target < math.inf:
            raise ValueError("MARQUE_QUEUE_DELAY_TARGET must be >= 0 seconds")
        retention = _float(env, "MARQUE_REQUEST_ID_RETENTION_DAYS", 7.0)
        sweep = _float(env, "MARQUE_RETENTION_SWEEP_SECONDS", 3600.0)
        if not (0 < retention < math.inf and 0 < sweep < math.inf):
            raise ValueError(
                "MARQUE_REQUEST_ID_RETENTION_DAYS and MARQUE_RETENTION_SWEEP_SECONDS must be > 0"
            )
        return cls(
            service=service,
            host=env.get("MARQUE_BIND_HOST", "127.0.0.1"),
            grpc_port=_int(env, "MARQUE_GRPC_PORT", e.grpc_port),
            metrics_port=_int(env, "MARQUE_METRICS_PORT", e.metrics_port),
            database_url=database_url(service, env),
            var_dir=var_dir(env),
            max_concurrency=_int(env, "MARQUE_MAX_CONCURRENCY", 512),
            queue_delay_target=target,
            load_shedding=shedding == "on",
            shutdown_grace=_float(env, "MARQUE_SHUTDOWN_GRACE", 10.0),
            access_log=access_log,
            slow_call_seconds=_float(env, "MARQUE_SLOW_CALL_SECONDS", 1.0),
            log_level=env.get("MARQUE_LOG_LEVEL", "INFO").upper(),
            max_connection_age_ms=_int(env, "MARQUE_MAX_CONNECTION_AGE_MS", 300_000),
            max_connection_age_grace_ms=_int(env, "MARQUE_MAX_CONNECTION_AGE_GRACE_MS", 30_000),
            reuseport=_flag(env, "MARQUE_REUSEPORT"),
            request_id_retention_days=retention,
            retention_sweep_seconds=sweep,
        )

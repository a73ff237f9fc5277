"""The DMS adapter's configuration, read once by app.py's lifespan from the environment
(`MARQUE_DMS_ADAPTER_<KNOB>`); the rules, the inbound endpoint and the client get it
passed in.

Inbound: the HTTP endpoint listens on `HTTP_HOST:HTTP_PORT` (loopback by default; the k8s
Deployment sets 0.0.0.0 behind its Service); each dealer's HMAC secret comes from
`DEALER_SECRETS="D1=<secret>,D2=<secret>"` (k8s Secret `dms-adapter-dealers`).
Outbound: each dealer's STAR base URL from `DEALER_URLS="D1=https://dms.d1.example/star/v1"`
(a dealer not listed gets `DEFAULT_URL`, if set), an optional bearer token per dealer from
`DEALER_TOKENS`. With neither URL set, `python -m services.adapters.dms` (so `make run`)
starts the DMS simulator on 127.0.0.1:50172 and sends every dealer there; the prod overlay
sets `SIMULATOR=off`, so a missing URL stops the adapter instead of faking dealers.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

PREFIX = "MARQUE_DMS_ADAPTER_"
SIMULATOR_PORT = 50172
DEFAULT_HTTP_PORT = 50162
SIMULATOR_URL = f"http://127.0.0.1:{SIMULATOR_PORT}/star/v1"
# The local default (the simulator, no DEALER_SECRETS): every dealer signs with
# "dev-dms-secret-<dealer>", which the simulator knows too. Never in production: the prod
# overlay sets SIMULATOR=off, and then only DEALER_SECRETS count.
DEV_SECRET_PREFIX = "dev-dms-secret-"


def dev_secret(dealer_id: str) -> str:
    """The local default's signing secret of a dealer."""
    return DEV_SECRET_PREFIX + dealer_id


def pairs(text: str) -> dict[str, str]:
    """`"D1=a,D2=b"` -> {"D1": "a", "D2": "b"} (blank entries ignored)."""
    out: dict[str, str] = {}
    for item in text.split(","):
        if "=" in item:
            key, value = item.split("=", 1)
            if key.strip() and value.strip():
                out[key.strip()] = value.strip()
    return out


@dataclass(frozen=True, slots=True)
class DmsConfig:
    """Where the inbound endpoint listens, the dealers' secrets, where their DMSs are."""

    http_host: str = "127.0.0.1"
    http_port: int = DEFAULT_HTTP_PORT
    dealer_secrets: Mapping[str, str] = field(default_factory=dict, repr=False)
    max_skew_seconds: float = 300.0
    max_body_bytes: int = 1 << 20
    dealer_urls: Mapping[str, str] = field(default_factory=dict)
    default_url: str = ""
    dealer_tokens: Mapping[str, str] = field(default_factory=dict, repr=False)
    timeout_seconds: float = 10.0
    connect_timeout_seconds: float = 3.0
    max_connections: int = 32
    # Group commit of the inbound writes (mesh/groupcommit.py).
    max_batch: int = 256
    # Every dealer has its dev secret (`dev_secret`): the local default only.
    dev_secrets: bool = False
    # Whether `python -m services.adapters.dms` starts the simulator (the local default).
    start_simulator: bool = True

    def __post_init__(self) -> None:
        if self.max_skew_seconds <= 0 or self.timeout_seconds <= 0:
            raise ValueError("the skew and the timeouts must be positive")
        for dealer, secret in self.dealer_secrets.items():
            if len(secret) < 16:
                raise ValueError(f"{PREFIX}DEALER_SECRETS: {dealer}'s secret is under 16 bytes")

    def secret_of(self, dealer_id: str) -> bytes | None:
        """The dealer's signing secret, None for a dealer we do not know."""
        secret = self.dealer_secrets.get(dealer_id)
        if secret is None and self.dev_secrets and dealer_id:
            secret = dev_secret(dealer_id)
        return None if secret is None else secret.encode()

    def url_of(self, dealer_id: str) -> str:
        """The STAR base URL of the dealer's DMS ("" when it has none)."""
        return self.dealer_urls.get(dealer_id, self.default_url).rstrip("/")

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> DmsConfig:
        """The defaults, overridden by `MARQUE_DMS_ADAPTER_*` (an empty value is unset)."""

        def get(name: str, default: str) -> str:
            return env.get(PREFIX + name, "").strip() or default

        urls, default_url = pairs(get("DEALER_URLS", "")), get("DEFAULT_URL", "")
        simulated = not urls and not default_url
        if simulated and get("SIMULATOR", "on") == "off":  # production: never a simulator
            raise ValueError(
                f"{PREFIX}DEALER_URLS or {PREFIX}DEFAULT_URL is required when {PREFIX}SIMULATOR=off"
            )
        secrets = pairs(get("DEALER_SECRETS", ""))
        return cls(
            http_host=get("HTTP_HOST", "127.0.0.1"),
            http_port=int(get("HTTP_PORT", str(DEFAULT_HTTP_PORT))),
            dealer_secrets=secrets,
            max_skew_seconds=float(get("MAX_SKEW_SECONDS", "300")),
            max_body_bytes=int(get("MAX_BODY_BYTES", str(1 << 20))),
            dealer_urls=urls,
            default_url=SIMULATOR_URL if simulated else default_url,
            dealer_tokens=pairs(get("DEALER_TOKENS", "")),
            timeout_seconds=float(get("TIMEOUT_SECONDS", "10")),
            connect_timeout_seconds=float(get("CONNECT_TIMEOUT_SECONDS", "3")),
            max_connections=int(get("MAX_CONNECTIONS", "32")),
            max_batch=int(get("MAX_BATCH", "256")),
            dev_secrets=not secrets and get("SIMULATOR", "on") != "off",
            start_simulator=simulated,
        )

"""The ERP adapter's configuration, read once by app.py's lifespan from the environment
(`MARQUE_ERP_ADAPTER_<KNOB>`); the rules and the client get it passed in.

Local default: the SAP simulator on 127.0.0.1:50161 (`make run` starts it). Production
names the real endpoint and credentials (k8s Secret `erp-adapter-sap`):
`MARQUE_ERP_ADAPTER_SAP_URL=https://s4.example/sap/opu/odata/sap/API_SALES_ORDER_SRV`,
`..._SAP_AUTH=basic` with `..._SAP_USER` / `..._SAP_PASSWORD`, or `oauth2` with
`..._SAP_TOKEN_URL`, `..._SAP_CLIENT_ID`, `..._SAP_CLIENT_SECRET`; the prod overlay sets
`..._SIMULATOR=off`, so a missing URL stops the adapter instead of faking SAP.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

PREFIX = "MARQUE_ERP_ADAPTER_"
SIMULATOR_PORT = 50161
SERVICE_PATH = "/sap/opu/odata/sap/API_SALES_ORDER_SRV"
DEFAULT_URL = f"http://127.0.0.1:{SIMULATOR_PORT}{SERVICE_PATH}"
AUTH_KINDS = ("none", "basic", "oauth2")


@dataclass(frozen=True, slots=True)
class ErpConfig:
    """Where SAP is, how to log on, and the organisational data of Marque's orders."""

    sap_url: str = DEFAULT_URL
    auth: str = "basic"
    user: str = "MARQUE"
    password: str = field(default="marque", repr=False)
    token_url: str = ""
    client_id: str = ""
    client_secret: str = field(default="", repr=False)
    timeout_seconds: float = 10.0
    connect_timeout_seconds: float = 3.0
    max_connections: int = 64
    # Create attempts after a timeout (each preceded by a look-up), with this backoff.
    create_attempts: int = 3
    retry_backoff_seconds: float = 0.2
    # How long a claimed order's SAP calls may take before another delivery may try it
    # (engine.py); 0: derived from the timeouts (every look-up and create timing out).
    claim_lease_seconds: float = 0.0
    # The breaker (mesh/breaker.py): K (2 = the SRE book's; lower throttles harder) and
    # the window over which requests and accepts are counted.
    breaker_k: float = 2.0
    breaker_window_seconds: float = 120.0
    sales_order_type: str = "OR"
    sales_organization: str = "1710"
    distribution_channel: str = "10"
    division: str = "00"
    default_sold_to: str = "USCU_S12"
    # Marque dealer id -> SAP customer (SoldToParty); others get default_sold_to.
    sold_to: Mapping[str, str] = field(default_factory=dict)
    unit: str = "PC"
    # Whether `python -m services.adapters.erp` starts the simulator (the local default).
    start_simulator: bool = True

    def __post_init__(self) -> None:
        if self.auth not in AUTH_KINDS:
            raise ValueError(f"{PREFIX}SAP_AUTH must be one of {', '.join(AUTH_KINDS)}")
        if self.auth == "oauth2" and not (self.token_url and self.client_id):
            raise ValueError(f"oauth2 needs {PREFIX}SAP_TOKEN_URL and {PREFIX}SAP_CLIENT_ID")
        if self.timeout_seconds <= 0 or self.create_attempts < 1 or self.max_connections < 1:
            raise ValueError(
                "timeouts must be positive, create_attempts and max_connections at least 1"
            )
        if self.breaker_k <= 0 or self.breaker_window_seconds <= 0:
            raise ValueError(f"{PREFIX}BREAKER_K and ..._BREAKER_WINDOW_SECONDS must be positive")
        if 0 < self.claim_lease_seconds < self.worst_case_seconds:
            raise ValueError(
                f"{PREFIX}CLAIM_LEASE_SECONDS must cover every call of one order "
                f"({self.worst_case_seconds:.0f} s with these timeouts)"
            )

    @property
    def worst_case_seconds(self) -> float:
        """How long one order's calls take at most: a look-up, then each create attempt
        and the look-up after it timing out, and the backoffs between."""
        backoffs = sum(self.retry_backoff_seconds * 2**a for a in range(self.create_attempts))
        return self.timeout_seconds * (1 + 2 * self.create_attempts) + backoffs

    @property
    def lease_seconds(self) -> float:
        """The claim lease: configured, else the worst case with a margin."""
        return self.claim_lease_seconds or self.worst_case_seconds + 10.0

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> ErpConfig:
        """The defaults, overridden by `MARQUE_ERP_ADAPTER_*` (an empty value is unset)."""

        def get(name: str, default: str) -> str:
            return env.get(PREFIX + name, "").strip() or default

        url = get("SAP_URL", "")
        if not url and get("SIMULATOR", "on") == "off":  # production: never a simulator
            raise ValueError(f"{PREFIX}SAP_URL is required when {PREFIX}SIMULATOR=off")
        sold_to = dict(pair.split("=", 1) for pair in get("SOLD_TO", "").split(",") if "=" in pair)
        base = cls()
        return cls(
            sap_url=url or DEFAULT_URL,
            auth=get("SAP_AUTH", base.auth),
            user=get("SAP_USER", base.user),
            password=get("SAP_PASSWORD", base.password),
            token_url=get("SAP_TOKEN_URL", ""),
            client_id=get("SAP_CLIENT_ID", ""),
            client_secret=get("SAP_CLIENT_SECRET", ""),
            timeout_seconds=float(get("SAP_TIMEOUT_SECONDS", "10")),
            connect_timeout_seconds=float(get("SAP_CONNECT_TIMEOUT_SECONDS", "3")),
            max_connections=int(get("SAP_MAX_CONNECTIONS", "64")),
            create_attempts=int(get("CREATE_ATTEMPTS", "3")),
            retry_backoff_seconds=float(get("RETRY_BACKOFF_SECONDS", "0.2")),
            claim_lease_seconds=float(get("CLAIM_LEASE_SECONDS", "0")),
            breaker_k=float(get("BREAKER_K", "2")),
            breaker_window_seconds=float(get("BREAKER_WINDOW_SECONDS", "120")),
            sales_order_type=get("SALES_ORDER_TYPE", base.sales_order_type),
            sales_organization=get("SALES_ORGANIZATION", base.sales_organization),
            distribution_channel=get("DISTRIBUTION_CHANNEL", base.distribution_channel),
            division=get("DIVISION", base.division),
            default_sold_to=get("DEFAULT_SOLD_TO", base.default_sold_to),
            sold_to={k.strip(): v.strip() for k, v in sold_to.items()},
            start_simulator=not url,
        )

"""The ERP adapter's configuration from MARQUE_ERP_ADAPTER_*: the knobs docs/erp.md names,
and the values refused at start-up rather than misbehaving later."""

from __future__ import annotations

import pytest

from services.adapters.erp.app import sap_backend
from services.adapters.erp.domain.config import DEFAULT_URL, ErpConfig

P = "MARQUE_ERP_ADAPTER_"


def test_the_knobs_are_read_and_the_lease_covers_every_call_of_an_order() -> None:
    config = ErpConfig.from_env(
        {
            P + "SAP_URL": "https://s4.example/sap/opu/odata/sap/API_SALES_ORDER_SRV",
            P + "SAP_TIMEOUT_SECONDS": "5",
            P + "CREATE_ATTEMPTS": "2",
            P + "RETRY_BACKOFF_SECONDS": "0.5",
            P + "BREAKER_K": "1.5",
            P + "BREAKER_WINDOW_SECONDS": "60",
            P + "SAP_MAX_CONNECTIONS": "32",
        }
    )
    assert (config.timeout_seconds, config.create_attempts, config.max_connections) == (5, 2, 32)
    assert not config.start_simulator
    # a look-up, then 2 creates each followed by a look-up, all timing out, and backoffs
    assert config.worst_case_seconds == pytest.approx(5 * 5 + 0.5 + 1.0)
    assert config.lease_seconds == pytest.approx(config.worst_case_seconds + 10)
    breaker = sap_backend(config).breaker
    assert (breaker.k, breaker.window_seconds) == (1.5, 60)


def test_the_local_default_is_the_simulator_and_production_refuses_to_guess() -> None:
    config = ErpConfig.from_env({})
    assert config.sap_url == DEFAULT_URL and config.start_simulator
    with pytest.raises(ValueError, match="SAP_URL is required"):
        ErpConfig.from_env({P + "SIMULATOR": "off"})


@pytest.mark.parametrize(
    ("knob", "value", "message"),
    [
        ("CLAIM_LEASE_SECONDS", "5", "must cover every call"),
        ("BREAKER_K", "0", "must be positive"),
        ("SAP_MAX_CONNECTIONS", "0", "at least 1"),
        ("SAP_AUTH", "kerberos", "must be one of"),
    ],
)
def test_bad_values_stop_the_start(knob: str, value: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ErpConfig.from_env({P + knob: value})

"""The local default: with no `MARQUE_ERP_ADAPTER_SAP_URL`, `python -m services.adapters.erp`
(so `make run`) starts the SAP simulator as its own process on 127.0.0.1:50161 and points
the adapter at it; the simulator stops with the adapter (and dies with it on Linux).
A simulator already listening there (started by hand with knobs) is used as it is
(mesh/simulators.py, shared with the DMS adapter).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping

from mesh.simulators import simulator_process
from services.adapters.erp.domain.config import SIMULATOR_PORT, ErpConfig


@contextlib.contextmanager
def simulator_for(env: Mapping[str, str], timeout: float = 20.0) -> Iterator[None]:
    """Run the SAP simulator for the body when the configuration wants it."""
    if not ErpConfig.from_env(env).start_simulator:
        yield
        return
    with simulator_process(
        "services.adapters.erp.simulator",
        SIMULATOR_PORT,
        env,
        log_name="sap-simulator",
        timeout=timeout,
    ):
        yield

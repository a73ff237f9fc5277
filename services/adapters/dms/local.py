"""The local default: with no `MARQUE_DMS_ADAPTER_DEALER_URLS` nor `_DEFAULT_URL`,
`python -m services.adapters.dms` (so `make run`) starts the DMS simulator as its own
process on 127.0.0.1:50172 (mesh/simulators.py) and sends every dealer's documents there."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping

from mesh.simulators import simulator_process
from services.adapters.dms.domain.config import SIMULATOR_PORT, DmsConfig


@contextlib.contextmanager
def simulator_for(env: Mapping[str, str]) -> Iterator[None]:
    """Run the DMS simulator for the body when the configuration wants it."""
    if not DmsConfig.from_env(env).start_simulator:
        yield
        return
    with simulator_process(
        "services.adapters.dms.simulator", SIMULATOR_PORT, env, log_name="dms-simulator"
    ):
        yield

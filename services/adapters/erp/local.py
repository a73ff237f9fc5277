"""The local default: with no `MARQUE_ERP_ADAPTER_SAP_URL`, `python -m services.adapters.erp`
(so `make run`) starts the SAP simulator as its own process on 127.0.0.1:50161 and points
the adapter at it; the simulator stops with the adapter (and dies with it on Linux).
A simulator already listening there (started by hand with knobs) is used as it is.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping

from mesh.config import ROOT, var_dir
from mesh.service_processes import _die_with_parent
from services.adapters.erp.domain.config import SIMULATOR_PORT, ErpConfig


def _listening(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


@contextlib.contextmanager
def simulator_for(env: Mapping[str, str], timeout: float = 20.0) -> Iterator[None]:
    """Run the SAP simulator for the body when the configuration wants it."""
    if not ErpConfig.from_env(env).start_simulator or _listening(SIMULATOR_PORT):
        yield
        return
    log_dir = var_dir(dict(env)) / "log"
    log_dir.mkdir(parents=True, exist_ok=True)
    with (log_dir / "sap-simulator.log").open("ab") as log:
        child = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "services.adapters.erp.simulator",
                "--port",
                str(SIMULATOR_PORT),
            ],
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            preexec_fn=_die_with_parent if sys.platform == "linux" else None,  # noqa: PLW1509
        )
    try:
        deadline = time.monotonic() + timeout
        while not _listening(SIMULATOR_PORT):
            if child.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the SAP simulator did not start; see var/log/sap-simulator.log")
            time.sleep(0.05)
        yield
    finally:
        child.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.wait(timeout=5)
        if child.poll() is None:
            child.kill()

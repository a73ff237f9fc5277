"""A backend simulator as its own process beside an adapter (the local default of `make
run`): started on a loopback port when the adapter's configuration names no real backend,
stopped with the adapter (and dying with it on Linux). A simulator already listening on
that port (started by hand, with knobs) is used as it is. The ERP and DMS adapters' local
defaults (`services/adapters/*/local.py`) are this with their module and port.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence

from mesh.config import ROOT, var_dir
from mesh.service_processes import _die_with_parent


def listening(port: int) -> bool:
    """Whether something accepts connections on 127.0.0.1:port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


@contextlib.contextmanager
def simulator_process(
    module: str,
    port: int,
    env: Mapping[str, str],
    *,
    log_name: str,
    args: Sequence[str] = (),
    timeout: float = 20.0,
) -> Iterator[None]:
    """Run `python -m <module> --port <port> [args]` for the body (logs in var/log)."""
    if listening(port):
        yield
        return
    log_dir = var_dir(dict(env)) / "log"
    log_dir.mkdir(parents=True, exist_ok=True)
    with (log_dir / f"{log_name}.log").open("ab") as log:
        child = subprocess.Popen(
            [sys.executable, "-m", module, "--port", str(port), *args],
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            preexec_fn=_die_with_parent if sys.platform == "linux" else None,  # noqa: PLW1509
        )
    try:
        deadline = time.monotonic() + timeout
        while not listening(port):
            if child.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{module} did not start; see var/log/{log_name}.log")
            time.sleep(0.05)
        yield
    finally:
        child.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.wait(timeout=5)
        if child.poll() is None:
            child.kill()

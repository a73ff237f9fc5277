"""Private files created once under the var dir (development keys and secrets), so a fresh
checkout needs no set-up and what they hold survives a restart."""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Mapping
from pathlib import Path


def write_once(path: Path, make: Callable[[], bytes]) -> bytes:
    """The content of `path`, created first from `make()` with mode 0600 if it is missing.

    Concurrent first starts (several services of `make run`) agree on one content: each
    writes its own temporary file and links it into place, which only one can do; the
    others read the winner's.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        tmp = path.parent / f".{path.name}.{os.getpid()}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(make())
        try:
            os.link(tmp, path)  # atomic; loses cleanly to a concurrent creator
        except FileExistsError:
            pass
        finally:
            tmp.unlink(missing_ok=True)
    return path.read_bytes()


def shared_secret(
    env: Mapping[str, str], name: str, var: Path, filename: str, min_bytes: int
) -> bytes:
    """A secret every process of the platform must share: the variable `name` (production:
    one Secret for every service), else `var/filename`, made once with 32 random bytes in
    hex (a checkout's services share it). A configured one shorter than `min_bytes` is a
    ValueError naming the variable."""
    configured = env.get(name, "")
    if configured:
        value = configured.encode()
        if len(value) < min_bytes:
            raise ValueError(f"{name} must be at least {min_bytes} bytes")
        return value
    return write_once(var / filename, lambda: secrets.token_hex(32).encode()).strip()

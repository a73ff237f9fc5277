"""`python -m bench`: run every bench module's `main()` in turn."""

from __future__ import annotations

import importlib
import pkgutil
import sys
from pathlib import Path


def main() -> None:
    """Import each module of this package that has a `main()` and run it."""
    here = Path(__file__).resolve().parent
    for module in sorted(pkgutil.iter_modules([str(here)]), key=lambda m: m.name):
        if module.name.startswith("_"):
            continue
        loaded = importlib.import_module(f"bench.{module.name}")
        entry = getattr(loaded, "main", None)
        if not callable(entry):
            continue
        print(f"\n=== bench.{module.name} ===", flush=True)
        saved = sys.argv
        sys.argv = [f"bench.{module.name}"]  # each bench parses its own (empty) arguments
        try:
            entry()
        finally:
            sys.argv = saved


if __name__ == "__main__":
    main()

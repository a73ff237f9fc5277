"""`python -m mesh.migrate <service> [--revision R]`: upgrade a service's database.

Services also migrate on start-up; this command is for operators (a Kubernetes Job before a
rollout, or a local database reset). The migrations live in `services/<module>/migrations`
and the URL comes from the environment exactly as the service would read it
(`MARQUE_<SERVICE>_DATABASE_URL`, `MARQUE_DATABASE_URL`, else the SQLite file under var/).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from sqlalchemy.engine import make_url

from mesh.catalog import BY_NAME, entry
from mesh.config import ROOT, database_url
from mesh.db import Database


def migrations_dir(service: str) -> Path:
    """Where a service's Alembic scripts live: services/<module path>/migrations."""
    return ROOT.joinpath(*entry(service).module.split(".")) / "migrations"


async def migrate(service: str, revision: str = "head") -> str | None:
    """Upgrade `service`'s database; returns the revision it is at afterwards."""
    db = Database(database_url(service))
    try:
        return await db.migrate(migrations_dir(service), revision)
    finally:
        await db.dispose()


def main(argv: list[str] | None = None) -> int:
    """Command-line entry; returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m mesh.migrate", description=__doc__)
    parser.add_argument("service", choices=sorted(BY_NAME), help="the service to migrate")
    parser.add_argument("--revision", default="head", help="target revision (default: head)")
    args = parser.parse_args(argv)
    location = migrations_dir(args.service)
    if not (location / "env.py").exists():
        shown = location.relative_to(ROOT) if location.is_relative_to(ROOT) else location
        print(f"{args.service}: no migrations at {shown}; nothing to do")
        return 0
    url = make_url(database_url(args.service)).render_as_string(hide_password=True)
    print(f"{args.service}: upgrading {url} to {args.revision}", flush=True)
    current = asyncio.run(migrate(args.service, args.revision))
    print(f"{args.service}: at revision {current or '(empty)'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

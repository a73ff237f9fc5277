"""Alembic environment of the DMS adapter; mesh.migrations does the wiring."""

from mesh.migrations import run_env
from services.adapters.dms.store import metadata

run_env(metadata)

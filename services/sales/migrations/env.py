"""Alembic environment of the sales service; mesh.migrations does the wiring."""

from mesh.migrations import run_env
from services.sales.store import metadata

run_env(metadata)

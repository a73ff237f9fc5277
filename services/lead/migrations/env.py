"""Alembic environment of the lead service; the mesh does the wiring (see mesh.migrations)."""

from mesh.migrations import run_env
from services.lead.store import metadata

run_env(metadata)

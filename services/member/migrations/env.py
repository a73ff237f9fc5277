"""Alembic environment of the member service; the mesh does the wiring (see mesh.migrations)."""

from mesh.migrations import run_env
from services.member.store import metadata

run_env(metadata)

"""Alembic environment of the ERP adapter; mesh.migrations does the wiring."""

from mesh.migrations import run_env
from services.adapters.erp.store import metadata

run_env(metadata)

"""Alembic env of the sample migrations used by tests/mesh/test_db.py: the tiny env.py every
service writes."""

from mesh.migrations import run_env

run_env(None)

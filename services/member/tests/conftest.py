"""The repository's shared fixtures (tests/conftest.py) for the member service's tests:
`database_url` on SQLite and PostgreSQL, and a private MARQUE_VAR_DIR when this folder
is run on its own."""

from tests.conftest import database_url, pytest_configure, pytest_unconfigure

__all__ = ["database_url", "pytest_configure", "pytest_unconfigure"]

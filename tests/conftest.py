"""Fixtures every test suite of the repository may use (services' tests included).

- Local state is isolated: for the whole session `MARQUE_VAR_DIR` points at a temporary
  directory (unless already set), so development signing keys and SQLite files are never
  written to the repository's `var/` by tests, and processes started by tests inherit it.

- `database_url`: an async SQLAlchemy URL of an empty, private database, parametrized over
  the two back ends, so one test runs on both:

      async def test_saves(database_url: str) -> None:
          db = Database(database_url)
          await db.migrate(MIGRATIONS)
          ...
          await db.dispose()

  * `sqlite`: a file in the test's `tmp_path`.
  * `postgres`: runs only when `MARQUE_TEST_POSTGRES_URL` is set (e.g.
    `postgresql+psycopg://postgres@127.0.0.1:5432/marque_ci`), else skipped. Each test gets
    a fresh, uniquely named SCHEMA in that database, selected through the URL
    (`options=-csearch_path=<schema>`), and dropped afterwards; tests are isolated from each
    other and from concurrent runs sharing one CI database. Marked `postgres`, so
    `-m "not postgres"` deselects them.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

_created_var_dir: list[Path] = []


def pytest_configure(config: pytest.Config) -> None:
    # Before collection, so even import-time reads of the variable see the temporary dir.
    if not os.environ.get("MARQUE_VAR_DIR"):
        path = Path(tempfile.mkdtemp(prefix="marque-test-var-"))
        os.environ["MARQUE_VAR_DIR"] = str(path)
        _created_var_dir.append(path)


def pytest_unconfigure(config: pytest.Config) -> None:
    for path in _created_var_dir:
        shutil.rmtree(path, ignore_errors=True)
        if os.environ.get("MARQUE_VAR_DIR") == str(path):
            del os.environ["MARQUE_VAR_DIR"]
    _created_var_dir.clear()


def _postgres_schema_url(base: str) -> Iterator[str]:
    import psycopg

    url = make_url(base)
    admin = url.set(drivername="postgresql").render_as_string(hide_password=False)
    schema = f"test_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield url.update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(
            hide_password=False
        )
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database of each back end; see the module docstring."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'test.db'}"
        return
    base = os.environ.get("MARQUE_TEST_POSTGRES_URL")
    if not base:
        pytest.skip("MARQUE_TEST_POSTGRES_URL is not set")
    yield from _postgres_schema_url(base)

"""Alembic glue, so a service's `migrations/env.py` is three lines:

```python
from mesh.migrations import run_env
from services.lead.store import metadata

run_env(metadata)
```

`run_env` covers the three ways Alembic runs an env.py:
- online with a connection handed over by `Database.migrate()` (service start-up and
  `python -m mesh.migrate <service>`): `config.attributes["connection"]`;
- online from the `alembic` CLI: it opens its own engine from `sqlalchemy.url` (or
  `-x url=...`), with the same SQLite pragmas as the service;
- offline (`alembic upgrade head --sql`): renders SQL for the URL's dialect.

A service needs no alembic.ini; `alembic_config()` builds the configuration in code, and the
CLI can be pointed at the folder with a one-line ini (`script_location = .`).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from alembic import context
from alembic.config import Config
from sqlalchemy import MetaData
from sqlalchemy.engine import URL, Connection, make_url


def alembic_config(script_location: Path | str, url: str | URL) -> Config:
    """An in-memory Alembic configuration for one migrations folder and database URL."""
    config = Config()
    config.set_main_option("script_location", str(script_location))
    rendered = url.render_as_string(hide_password=False) if isinstance(url, URL) else url
    # ConfigParser interpolation: a literal % (URL-encoded passwords, options) must be %%.
    config.set_main_option("sqlalchemy.url", rendered.replace("%", "%%"))
    return config


def _configure_and_run(connection: Connection, target_metadata: MetaData | None) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        # SQLite cannot ALTER most things; batch mode recreates tables instead.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def _url_from_context() -> str:
    url = context.get_x_argument(as_dictionary=True).get("url") or context.config.get_main_option(
        "sqlalchemy.url"
    )
    if not url:
        raise RuntimeError(
            "no database URL: run through `python -m mesh.migrate <service>`, or pass "
            "`-x url=...` / set sqlalchemy.url for the alembic CLI"
        )
    return url


async def _run_online_with_own_engine(url: str, target_metadata: MetaData | None) -> None:
    from mesh.db import Database

    db = Database(url)
    try:
        async with db.engine.connect() as conn:
            await conn.run_sync(_configure_and_run, target_metadata)
            await conn.commit()
    finally:
        await db.dispose()


def run_env(target_metadata: MetaData | None = None) -> None:
    """The body of every service's `migrations/env.py`."""
    if context.is_offline_mode():
        url = make_url(_url_from_context())
        context.configure(
            url=url,
            target_metadata=target_metadata,
            literal_binds=True,
            dialect_opts={"paramstyle": "named"},
            render_as_batch=url.get_backend_name() == "sqlite",
        )
        with context.begin_transaction():
            context.run_migrations()
        return
    connection: Any = context.config.attributes.get("connection")
    if connection is not None:
        _configure_and_run(connection, target_metadata)
        return
    asyncio.run(_run_online_with_own_engine(_url_from_context(), target_metadata))

"""mesh.db on SQLite and (with MARQUE_TEST_POSTGRES_URL) PostgreSQL."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from mesh import migrate as migrate_cli
from mesh.db import Database, sqlite_synchronous
from mesh.migrations import alembic_config

MIGRATIONS = Path(__file__).parent / "migrations"


async def test_migrate_commit_survives_reopen(database_url: str) -> None:
    db = Database(database_url)
    assert await db.migrate(MIGRATIONS) == "0001"
    assert await db.migrate(MIGRATIONS) == "0001"  # idempotent
    async with db.session() as s:
        await s.execute(text("INSERT INTO notes (id, body) VALUES (1, 'kept')"))
        await s.commit()
    await db.dispose()

    reopened = Database(database_url)
    async with reopened.begin() as conn:
        body = (await conn.execute(text("SELECT body FROM notes WHERE id = 1"))).scalar_one()
    assert body == "kept"
    await reopened.dispose()


async def test_begin_rolls_back_on_error(database_url: str) -> None:
    db = Database(database_url)
    await db.migrate(MIGRATIONS)
    with pytest.raises(RuntimeError):
        async with db.begin() as conn:
            await conn.execute(text("INSERT INTO notes (id, body) VALUES (2, 'lost')"))
            raise RuntimeError("boom")
    async with db.begin() as conn:
        count = (await conn.execute(text("SELECT count(*) FROM notes"))).scalar_one()
    assert count == 0
    await db.dispose()


async def test_foreign_keys_enforced(database_url: str) -> None:
    db = Database(database_url)
    await db.migrate(MIGRATIONS)
    with pytest.raises(IntegrityError):
        async with db.begin() as conn:
            await conn.execute(text("INSERT INTO tags (id, note_id, name) VALUES (1, 99, 'x')"))
    await db.dispose()


async def test_sqlite_pragmas(tmp_path: Path) -> None:
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'nested' / 'dir' / 'x.db'}")
    assert db.is_sqlite
    async with db.begin() as conn:
        assert (await conn.execute(text("PRAGMA journal_mode"))).scalar_one() == "wal"
        assert (await conn.execute(text("PRAGMA synchronous"))).scalar_one() == 1  # NORMAL
        assert (await conn.execute(text("PRAGMA busy_timeout"))).scalar_one() == 5000
        assert (await conn.execute(text("PRAGMA foreign_keys"))).scalar_one() == 1
    await db.dispose()
    assert (tmp_path / "nested" / "dir" / "x.db").exists()


async def test_sqlite_synchronous_full(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MARQUE_SQLITE_SYNCHRONOUS", "full")
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'x.db'}")
    async with db.begin() as conn:
        assert (await conn.execute(text("PRAGMA synchronous"))).scalar_one() == 2  # FULL
    await db.dispose()


def test_sqlite_synchronous_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="MARQUE_SQLITE_SYNCHRONOUS"):
        sqlite_synchronous({"MARQUE_SQLITE_SYNCHRONOUS": "sometimes"})


def test_offline_sql_for_the_alembic_cli(tmp_path: Path) -> None:
    config = alembic_config(MIGRATIONS, f"sqlite+aiosqlite:///{tmp_path / 'x.db'}")
    out = io.StringIO()
    config.output_buffer = out
    command.upgrade(config, "head", sql=True)
    assert "CREATE TABLE notes" in out.getvalue()


def test_migrate_command(
    database_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MARQUE_LEAD_DATABASE_URL", database_url)
    monkeypatch.setattr(migrate_cli, "migrations_dir", lambda service: MIGRATIONS)
    assert migrate_cli.main(["lead"]) == 0
    assert "at revision 0001" in capsys.readouterr().out


def test_migrate_command_without_migrations(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(migrate_cli, "migrations_dir", lambda service: tmp_path / "none")
    assert migrate_cli.main(["erp-adapter"]) == 0
    assert "nothing to do" in capsys.readouterr().out


def test_alembic_cli_online_opens_its_own_engine(database_url: str) -> None:
    """`alembic upgrade head` without a connection handed over (the plain CLI path)."""
    command.upgrade(alembic_config(MIGRATIONS, database_url), "head")

    async def revision() -> str:
        db = Database(database_url)
        async with db.begin() as conn:
            rev = (await conn.execute(text("SELECT version_num FROM alembic_version"))).scalar_one()
        await db.dispose()
        return str(rev)

    assert asyncio.run(revision()) == "0001"

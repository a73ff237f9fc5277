"""SQLite's page cache and mmap window: configurable, set on every pool connection."""

from __future__ import annotations

from pathlib import Path

import pytest

from mesh.db import SQLITE_CACHE_KIB, Database, sqlite_cache_kib, sqlite_mmap_mib


def test_sizes_from_the_environment() -> None:
    assert sqlite_cache_kib({}) == SQLITE_CACHE_KIB
    assert sqlite_mmap_mib({}) == 0
    assert sqlite_cache_kib({"MARQUE_SQLITE_CACHE_KIB": " 2000 "}) == 2000
    assert sqlite_mmap_mib({"MARQUE_SQLITE_MMAP_MIB": "256"}) == 256
    for bad in ("-1", "1.5", "lots"):
        with pytest.raises(ValueError, match="MARQUE_SQLITE_CACHE_KIB"):
            sqlite_cache_kib({"MARQUE_SQLITE_CACHE_KIB": bad})
        with pytest.raises(ValueError, match="MARQUE_SQLITE_MMAP_MIB"):
            sqlite_mmap_mib({"MARQUE_SQLITE_MMAP_MIB": bad})


@pytest.mark.parametrize(
    ("env", "cache", "mmap"),
    [
        ({}, -SQLITE_CACHE_KIB, 0),
        ({"MARQUE_SQLITE_CACHE_KIB": "4096", "MARQUE_SQLITE_MMAP_MIB": "64"}, -4096, 64 << 20),
    ],
)
async def test_every_connection_gets_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, env: dict[str, str], cache: int, mmap: int
) -> None:
    monkeypatch.delenv("MARQUE_SQLITE_CACHE_KIB", raising=False)
    monkeypatch.delenv("MARQUE_SQLITE_MMAP_MIB", raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'p.db'}")
    try:
        async with db.engine.connect() as a, db.engine.connect() as b:
            for conn in (a, b):
                assert (await conn.exec_driver_sql("PRAGMA cache_size")).scalar_one() == cache
                assert (await conn.exec_driver_sql("PRAGMA mmap_size")).scalar_one() == mmap
    finally:
        await db.dispose()

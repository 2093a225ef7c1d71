"""Shared fixtures: a migrated database on SQLite (always) and PostgreSQL (when configured).

Set VOICEPROMPT_TEST_POSTGRES_URL (``.ci/run`` does) to run every database test on PostgreSQL too;
the tests then get their own throw-away database on that server.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from server.db import create_engine, upgrade
from server.schema import metadata
from server.settings import Settings

PG_URL = os.environ.get("VOICEPROMPT_TEST_POSTGRES_URL", "")


def _pg_admin_dsn() -> str:
    return PG_URL.replace("postgresql+asyncpg://", "postgresql://")


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """A fresh PostgreSQL database for this test session, dropped at the end."""
    if not PG_URL:
        pytest.skip("VOICEPROMPT_TEST_POSTGRES_URL is not set")
    name = f"vp_test_{uuid.uuid4().hex[:10]}"

    async def admin(sql: str) -> None:
        conn = await asyncpg.connect(_pg_admin_dsn())
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    base = _pg_admin_dsn().rsplit("/", 1)[0]
    url = f"{base.replace('postgresql://', 'postgresql+asyncpg://', 1)}/{name}"
    engine = create_engine(url)
    asyncio.run(_migrate_and_dispose(engine))
    yield url
    asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


async def _migrate_and_dispose(engine: AsyncEngine) -> None:
    await upgrade(engine)
    await engine.dispose()


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'voiceprompt.db'}"
    url: str = request.getfixturevalue("pg_database")
    return url


@pytest.fixture
async def engine(db_url: str) -> AsyncIterator[AsyncEngine]:
    """A migrated, empty database."""
    eng = create_engine(db_url)
    if db_url.startswith("sqlite"):
        await upgrade(eng)
    else:
        async with eng.begin() as conn:
            names = ", ".join(f'"{t.name}"' for t in metadata.sorted_tables)
            await conn.execute(sa.text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
    yield eng
    await eng.dispose()


@pytest.fixture
def settings(tmp_path: Path, db_url: str, engine: AsyncEngine) -> Settings:
    """Settings for a throw-away installation: its own data folder and database."""
    return Settings.from_env(
        {
            "VOICEPROMPT_DATA_DIR": str(tmp_path / "var"),
            "VOICEPROMPT_DATABASE_URL": db_url,
            "VOICEPROMPT_PUBLIC_URL": "http://127.0.0.1:8080",
        }
    )

"""Shared fixtures: a migrated database on SQLite (always) and PostgreSQL (when configured).

Set VOICEPROMPT_TEST_POSTGRES_URL (``.ci/run`` does) to run every database test on PostgreSQL too;
the tests then get their own throw-away database on that server.
"""

from __future__ import annotations

import asyncio
import gc
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from server.db.engine import create_engine, upgrade
from server.db.schema import metadata
from server.settings import Settings
from tests.support.fleet import fresh_database

# Fixtures shared by many test modules, loaded once for the whole suite.
pytest_plugins = ["tests.support.server", "tests.support.s3_server"]

PG_URL = os.environ.get("VOICEPROMPT_TEST_POSTGRES_URL", "")


@pytest.fixture(autouse=True)
def _collector_sees_only_this_test() -> None:
    """Freeze what earlier tests left behind, so the garbage collector's full passes walk only
    what this test makes. Without it the session holds over a million objects by its end and a
    full pass took up to 0.6 s: long enough to push a webhook past its database budget (a test
    then hears the <Say> fallback), and an earlier test's leftovers were finalised, with their
    warnings, in the middle of a later one."""
    gc.freeze()


@pytest.fixture(scope="session")
def pg_database(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A fresh, migrated PostgreSQL database for this test session, dropped at the end."""
    if not PG_URL:
        pytest.skip("VOICEPROMPT_TEST_POSTGRES_URL is not set")
    with fresh_database(PG_URL, tmp_path_factory.mktemp("db")) as url:
        asyncio.run(_migrate_and_dispose(create_engine(url)))
        yield url


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

"""Database engine and migrations: SQLite by default, PostgreSQL for production and CI."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import event
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from server.errors import ConfigError
from server.settings import Settings

MIGRATIONS = Path(__file__).with_name("migrations")


def create_engine(url: str) -> AsyncEngine:
    """An async engine; SQLite gets foreign keys, WAL and a busy timeout so workers can share it."""
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(url, connect_args={"timeout": 30})

        @event.listens_for(engine.sync_engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):  # type: ignore[no-untyped-def]
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        return engine
    if url.startswith(("postgresql+asyncpg://", "postgresql://", "postgres://")):
        url = url.replace("postgres://", "postgresql://", 1)
        if url.startswith("postgresql://"):
            url = url.replace("postgresql://", "postgresql+asyncpg://", 1)
        return create_async_engine(url, pool_pre_ping=True)
    raise ConfigError(
        f"unsupported database URL {url.split('://')[0]}://...: use sqlite+aiosqlite:///FILE "
        "or postgresql://USER@HOST/DB"
    )


def _alembic_config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg


def _upgrade(connection: Connection, revision: str) -> None:
    cfg = _alembic_config()
    cfg.attributes["connection"] = connection
    command.upgrade(cfg, revision)


async def upgrade(engine: AsyncEngine, revision: str = "heads") -> None:
    """Apply migrations up to ``revision`` (idempotent)."""
    async with engine.begin() as conn:
        await conn.run_sync(_upgrade, revision)


def _current(connection: Connection) -> tuple[str, ...]:
    return tuple(sorted(MigrationContext.configure(connection).get_current_heads()))


async def current_revisions(engine: AsyncEngine) -> tuple[str, ...]:
    """The migrations the database is at (one per branch; usually one)."""
    async with engine.connect() as conn:
        return await conn.run_sync(_current)


def head_revisions() -> tuple[str, ...]:
    return tuple(sorted(ScriptDirectory.from_config(_alembic_config()).get_heads()))


async def ensure_schema(settings: Settings, engine: AsyncEngine) -> None:
    """Migrate the embedded SQLite database on use; PostgreSQL is migrated explicitly."""
    if settings.database_url == "" or settings.resolved_database_url.startswith("sqlite"):
        await upgrade(engine)
        return
    current, head = await current_revisions(engine), head_revisions()
    if current != head:
        raise ConfigError(
            f"the database is at migration {', '.join(current) or 'none'}, the code needs "
            f"{', '.join(head)}: "
            "run `voiceprompt db upgrade`"
        )

"""Opening the pieces a command or the server needs: engine (migrated), storage, catalogue."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine

from server.db.engine import create_engine, ensure_schema
from server.settings import Settings
from server.tenants import TenantStore
from voicebank.catalogue import Catalogue
from voicebank.check_store import CheckStore
from voicebank.storage import open_storage
from voicebank.storage.base import Storage


@dataclass(frozen=True)
class Runtime:
    settings: Settings
    engine: AsyncEngine
    storage: Storage
    catalogue: Catalogue
    checks: CheckStore  # the clips' latest fetch checks
    tenants: TenantStore


def media_base_url(settings: Settings) -> str:
    return settings.media_base_url or f"{settings.public_url}/media"


def make_storage(settings: Settings) -> Storage:
    if settings.resolved_storage.startswith("s3://"):
        # Without a CDN, S3 objects are fetched from the bucket's own URL, not from /media/.
        return open_storage(
            settings.resolved_storage,
            media_base_url=settings.media_base_url,
            s3_endpoint_url=settings.s3_endpoint_url,
        )
    return open_storage(settings.resolved_storage, media_base_url=media_base_url(settings))


@asynccontextmanager
async def open_runtime(settings: Settings, *, migrate: bool = True) -> AsyncIterator[Runtime]:
    engine = create_engine(settings.resolved_database_url)
    try:
        if migrate:
            await ensure_schema(settings, engine)
        storage = make_storage(settings)
        catalogue = Catalogue(engine, storage)
        yield Runtime(settings, engine, storage, catalogue, CheckStore(engine), TenantStore(engine))
    finally:
        await engine.dispose()

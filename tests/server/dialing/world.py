"""What the dispatcher's tests share: a settable clock, a tenant and its reminders in a real
database, and a fake Twilio (in process, or HTTP on loopback) to count the calls at."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Generic, TypeVar

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from server.db.schema import reminders
from server.reminders import ReminderStore
from server.settings import Settings
from server.tenants import Tenant, TenantStore

CALLER = "+14155550100"
NUMBERS = [f"+1415555{n:04d}" for n in range(200, 300)]
ALL_DAY: dict[str, Any] = {"calling_hours_start": "00:00", "calling_hours_end": "24:00"}

F = TypeVar("F")


class Clock:
    def __init__(self, now: datetime | None = None) -> None:
        self.now = now or datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


def make_settings(twilio: Mapping[str, str], **env: str) -> Settings:
    """Settings for dialing ``NUMBERS`` (allow-listed) with the ``twilio`` variables."""
    return Settings.from_env(
        {
            **twilio,
            "VOICEPROMPT_PUBLIC_URL": "https://voice.example.com",
            "VOICEPROMPT_DIAL_ALLOWLIST": ",".join(NUMBERS),
            "VOICEPROMPT_CPS": "100",
            "VOICEPROMPT_TWILIO_TIMEOUT": "1",
            "VOICEPROMPT_ENV": "test",
            **env,
        }
    )


@dataclass
class World(Generic[F]):
    engine: AsyncEngine
    fake: F
    settings: Settings
    tenant: Tenant
    clock: Clock

    @classmethod
    async def create(cls, engine: AsyncEngine, fake: F, settings: Settings) -> World[F]:
        tenant, _ = await TenantStore(engine).create(
            Tenant(slug="smile", name="Smile Dental", caller_id=CALLER, **ALL_DAY)
        )
        return cls(engine, fake, settings, tenant, Clock())

    async def tenant_named(self, slug: str, **fields: Any) -> Tenant:
        t, _ = await TenantStore(self.engine).create(
            Tenant(slug=slug, name=slug.title(), caller_id=CALLER, **fields)
        )
        return t

    async def reminder(self, to: str, *, tenant: Tenant | None = None, hours: float = 3) -> int:
        at = self.clock.now + timedelta(hours=hours)
        r = await ReminderStore(self.engine).create(tenant or self.tenant, to, at, "Doctor Grey")
        return r.id

    async def row(self, rid: int) -> Any:
        async with self.engine.connect() as conn:
            return (await conn.execute(sa.select(reminders).where(reminders.c.id == rid))).one()

    async def events(self, rid: int) -> list[str]:
        return [e.kind for e in await ReminderStore(self.engine).events(rid)]

    async def set(self, rid: int, **values: Any) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(reminders.update().where(reminders.c.id == rid).values(**values))

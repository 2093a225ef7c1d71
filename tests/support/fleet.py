"""Several real worker processes (``python -m server.dialing.worker``) over one database and
the fake Twilio: shared by the crash test and ``bench/dispatch.py``.

Creates a throw-away PostgreSQL database (or SQLite file), seeds a tenant and many due
reminders to distinct allow-listed numbers, starts, kills and restarts workers, and reads back
what happened for the checks.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import sqlalchemy as sa

from server.db.engine import create_engine, upgrade
from server.db.schema import reminders
from server.tenants import Tenant, TenantStore
from tests.support.fake_twilio import FakeTwilio, RemoteFake, twilio_env

ROOT = Path(__file__).resolve().parents[2]  # the repository
CALLER = "+14155550100"


def numbers(n: int) -> list[str]:
    """``n`` distinct valid US numbers (many numbers: per-number spacing never serialises)."""
    return [f"+1{212 + i // 10000}555{i % 10000:04d}" for i in range(n)]


@contextmanager
def fresh_database(admin_url: str | None, tmp: Path) -> Iterator[str]:
    """A new empty PostgreSQL database on ``admin_url``'s server (dropped after), or a SQLite
    file in ``tmp`` without one. Yields its async URL."""
    if not admin_url:
        yield f"sqlite+aiosqlite:///{tmp / 'fleet.db'}"
        return
    dsn = admin_url.replace("postgresql+asyncpg://", "postgresql://")
    name = f"vp_fleet_{uuid.uuid4().hex[:10]}"

    async def admin(sql: str) -> None:
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    try:
        base = dsn.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://", 1)
        yield f"{base}/{name}"
    finally:
        asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


async def seed(url: str, to: list[str]) -> None:
    """Migrate, then one tenant calling all day and a reminder due now for each number."""
    engine = create_engine(url)
    try:
        await upgrade(engine)
        tenant, _ = await TenantStore(engine).create(
            Tenant(
                slug="fleet",
                name="Fleet Dental",
                caller_id=CALLER,
                calling_hours_start="00:00",
                calling_hours_end="24:00",
            )
        )
        now = datetime.now(UTC)
        async with engine.begin() as conn:
            tid = (await conn.execute(sa.text("select id from tenants"))).scalar_one()
            await conn.execute(
                reminders.insert(),
                [
                    {
                        "tenant_id": tid,
                        "to_number": number,
                        "appointment_at": now + timedelta(hours=3),
                        "status": "pending",
                        "created_at": now,
                        "updated_at": now,
                    }
                    for number in to
                ],
            )
        assert tenant.caller_id == CALLER
    finally:
        await engine.dispose()


class Monitor:
    """Reads the fleet's database from a synchronous test with one engine (one event loop)."""

    def __init__(self, url: str) -> None:
        self._runner = asyncio.Runner()
        self.engine = create_engine(url)

    def close(self) -> None:
        self._runner.run(self.engine.dispose())
        self._runner.close()

    def __enter__(self) -> Monitor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    UNSETTLED = sa.or_(
        reminders.c.status == "pending",
        sa.and_(reminders.c.status == "dialing", reminders.c.call_sid.is_(None)),
    )

    def unsettled(self) -> int:
        """Reminders not yet dialed (pending) or dialing without a CallSid."""
        query = sa.select(sa.func.count()).where(self.UNSETTLED)
        return int(self._runner.run(self._scalar(query)))

    def unsettled_rows(self) -> list[dict[str, Any]]:
        return self._runner.run(self._rows(sa.select(reminders).where(self.UNSETTLED)))

    def outcome(self) -> list[dict[str, Any]]:
        query = sa.select(
            reminders.c.id,
            reminders.c.to_number,
            reminders.c.status,
            reminders.c.call_sid,
            reminders.c.attempts,
            reminders.c.last_error,
        )
        return self._runner.run(self._rows(query))

    async def _scalar(self, query: Any) -> Any:
        async with self.engine.connect() as conn:
            return (await conn.execute(query)).scalar_one()

    async def _rows(self, query: Any) -> list[dict[str, Any]]:
        async with self.engine.connect() as conn:
            return [dict(r._mapping) for r in await conn.execute(query)]


@dataclass
class Fleet:
    """Worker processes with one environment; restarts any that die."""

    env: dict[str, str]
    size: int
    log_dir: Path
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    deaths: Counter[str] = field(default_factory=Counter)
    started: int = 0
    kill_times: list[float] = field(default_factory=list)

    @classmethod
    def for_(
        cls,
        url: str,
        fake: FakeTwilio | RemoteFake,
        to: list[str],
        *,
        size: int,
        cps: float,
        log_dir: Path,
        crash: str = "",
        timeout: float = 2.0,
    ) -> Fleet:
        env = {
            **{
                k: v for k, v in os.environ.items() if not k.startswith(("VOICEPROMPT_", "TWILIO_"))
            },
            **twilio_env(fake),
            "VOICEPROMPT_ENV": "test",
            "VOICEPROMPT_DATABASE_URL": url,
            "VOICEPROMPT_DATA_DIR": str(log_dir / "var"),
            "VOICEPROMPT_PUBLIC_URL": "https://voice.example.com",
            "VOICEPROMPT_CPS": str(cps),
            "VOICEPROMPT_DIAL_ALLOWLIST": ",".join(to),
            "VOICEPROMPT_TWILIO_TIMEOUT": str(timeout),
            "PYTHONPATH": str(ROOT),
            "VOICEPROMPT_LOG_LEVEL": os.environ.get("VOICEPROMPT_LOG_LEVEL", "WARNING"),
        }
        if crash:
            env["VOICEPROMPT_TEST_CRASH"] = crash
        return cls(env, size, log_dir)

    def spawn(self) -> subprocess.Popen[bytes]:
        self.started += 1
        log = open(self.log_dir / f"worker-{self.started}.log", "wb")  # noqa: SIM115 - child owns it
        proc = subprocess.Popen(
            [sys.executable, "-m", "server.dialing.worker"],
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        return proc

    def start(self) -> None:
        self.procs = [self.spawn() for _ in range(self.size)]

    def restart_dead(self) -> None:
        for i, proc in enumerate(self.procs):
            code = proc.poll()
            if code is not None:
                self.deaths["crash hook" if code == 99 else f"exit {code}"] += 1
                self.procs[i] = self.spawn()

    def kill_one(self, index: int) -> None:
        proc = self.procs[index]
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            self.kill_times.append(time.time())
            self.deaths["SIGKILL"] += 1
            self.procs[index] = self.spawn()

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 15
        for proc in self.procs:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

"""Clip health in the service: the ClipGuard webhooks ask, the periodic check and
GET /api/voicebank/health, on moto's S3 server and on a local folder."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from server.app import create_app
from server.calls.guard import ClipGuard
from server.db.engine import create_engine
from server.errors import ConfigError
from server.keys import monitor_key, runtime_key
from server.settings import Settings
from server.tenants import Tenant
from server.web.health import Monitor
from tests.support.s3_server import (
    S3,
    closed_port,
    sqlite_url,
    stock,
)
from voicebank.catalogue import Catalogue, ClipRecord
from voicebank.check_store import CheckStore
from voicebank.checks import Checker, CheckResult, open_session
from voicebank.storage.local import LocalStorage

ADMIN = {"Authorization": "Bearer admin-token"}


@pytest.fixture
async def bank(s3: S3, engine) -> tuple[Catalogue, list[ClipRecord]]:
    catalogue = Catalogue(engine, s3.storage())
    return catalogue, await stock(catalogue, ["digits/6", "digits/7"])


def _delete(s3: S3, record: ClipRecord) -> None:
    s3.client.delete_object(Bucket=s3.bucket, Key=s3.object_key(record.storage_key))


async def _settled(guard: ClipGuard) -> None:
    """Let the guard's background writes (fresh results to the catalogue) finish."""
    while guard._tasks:
        await asyncio.sleep(0.01)


async def test_the_guard_plays_checked_clips_and_speaks_failed_ones(bank, s3: S3):
    catalogue, (six, seven) = bank
    ids = [str(six.id), str(seven.id), "not-a-clip"]
    async with open_session() as session:
        guard = ClipGuard(catalogue, session, max_age_s=3600)
        # Never checked: checked now, within the budget, and the results are kept.
        assert await guard.unavailable(ids) == set()
        await _settled(guard)
        stored = await guard.checks.latest()
        assert {k: v.ok for k, v in stored.items()} == {six.id: True, seven.id: True}

        _delete(s3, seven)
        # A young good check is trusted: no request per call (the periodic check finds it).
        assert await guard.unavailable(ids) == set()
        monitor = Monitor(catalogue, Checker(session), guard, 3600)
        run = await monitor.run_once()
        assert (run.checked, run.failed) == (2, 1)
        assert await guard.unavailable(ids) == {str(seven.id)}
        assert "not found (404)" in guard.reason(str(seven.id)) and guard.reason(str(six.id)) == ""
        await guard.close()


async def test_a_stale_clip_is_checked_afresh_and_spoken_if_it_fails(s3: S3, sqlite_engine):
    catalogue = Catalogue(sqlite_engine, s3.storage())
    six, seven = await stock(catalogue, ["digits/6", "digits/7"])
    async with open_session() as session:
        monitor_guard = ClipGuard(catalogue, session, max_age_s=3600)
        await Monitor(catalogue, Checker(session), monitor_guard, 3600).run_once()
        _delete(s3, seven)
        later = datetime.now(UTC) + timedelta(days=2)
        guard = ClipGuard(catalogue, session, max_age_s=86400, now=lambda: later)
        assert await guard.unavailable([str(six.id), str(seven.id)]) == {str(seven.id)}
        await _settled(guard)
    assert (await guard.checks.latest())[seven.id].ok is False  # the fresh result is stored


async def test_a_dry_run_guard_records_nothing(s3: S3, sqlite_engine):
    catalogue = Catalogue(sqlite_engine, s3.storage())
    (six,) = await stock(catalogue, ["digits/6"])
    async with open_session() as session:
        guard = ClipGuard(catalogue, session, max_age_s=3600, record=False)
        assert await guard.unavailable([str(six.id)]) == set()
        await _settled(guard)
    assert await CheckStore(catalogue.engine).latest() == {}


async def test_a_fresh_check_that_takes_too_long_lets_the_clip_play(s3: S3, sqlite_engine):
    catalogue = Catalogue(sqlite_engine, s3.storage())
    (six,) = await stock(catalogue, ["digits/6"])
    held: list[asyncio.StreamWriter] = []

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)  # a CDN that accepts the connection and never answers

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    cdn = Catalogue(catalogue.engine, s3.storage(media_base_url=f"http://127.0.0.1:{port}/vp"))
    try:
        async with open_session() as session:
            guard = ClipGuard(cdn, session, max_age_s=3600, budget_s=0.1)
            started = time.monotonic()
            assert await guard.unavailable([str(six.id)]) == set()  # inconclusive: it plays
            assert time.monotonic() - started < 0.5
            # But a clip whose last check failed stays spoken while the fresh one is pending.
            await guard.checks.record([_failed(six.id, datetime.now(UTC) - timedelta(days=3))])
            stale = ClipGuard(cdn, session, max_age_s=3600, budget_s=0.1)
            assert await stale.unavailable([str(six.id)]) == {str(six.id)}
            await guard.close()
            await stale.close()
    finally:
        for writer in held:
            writer.close()
        server.close()
        await server.wait_closed()


def _failed(clip_id: int, when: datetime) -> CheckResult:
    return CheckResult(clip_id, "http://x", False, 404, "not found (404)", when)


async def test_the_guard_never_fails_a_webhook_when_the_database_is_down(s3: S3, sqlite_engine):
    catalogue = Catalogue(sqlite_engine, s3.storage())
    (six,) = await stock(catalogue, ["digits/6"])
    down = create_engine(f"postgresql+asyncpg://nobody@127.0.0.1:{closed_port()}/gone")
    try:
        async with open_session() as session:
            guard = ClipGuard(Catalogue(down, catalogue.storage), session, max_age_s=3600)
            assert await guard.unavailable([str(six.id)]) == set()
            await guard.close()
    finally:
        await down.dispose()


async def test_on_a_local_folder_the_guard_looks_at_the_file(sqlite_engine, tmp_path):
    storage = LocalStorage(tmp_path / "media", "https://voice.example.com/media")
    catalogue = Catalogue(sqlite_engine, storage)
    (six,) = await stock(catalogue, ["digits/6"])
    guard = ClipGuard(catalogue, None, max_age_s=3600)  # no HTTP client: nothing is fetched
    assert await guard.unavailable([str(six.id)]) == set()
    storage.path(six.storage_key).unlink()
    guard._last.clear()  # (otherwise noticed within LOCAL_TTL_S)
    assert await guard.unavailable([str(six.id)]) == {str(six.id)}
    assert "gone from the media folder" in guard.reason(str(six.id))


# -- the service ------------------------------------------------------------------------------
async def _app(aiohttp_client: Any, s3: S3, tmp_path: Path, db_url: str, **env: str) -> Any:
    settings = Settings.from_env(
        {
            "VOICEPROMPT_DATA_DIR": str(tmp_path / "var"),
            "VOICEPROMPT_DATABASE_URL": db_url,
            "VOICEPROMPT_ADMIN_TOKEN": "admin-token",
            "VOICEPROMPT_STORAGE": s3.uri,
            "VOICEPROMPT_S3_ENDPOINT_URL": s3.endpoint,
            **env,
        }
    )
    return await aiohttp_client(create_app(settings))


async def test_health_reports_counts_failures_and_the_last_run(
    aiohttp_client, s3: S3, tmp_path, db_url, engine
):
    client = await _app(aiohttp_client, s3, tmp_path, db_url)
    rt = client.app[runtime_key]
    _, seven, _ = await stock(rt.catalogue, ["digits/6", "digits/7", "digits/8"])
    _, key = await rt.tenants.create(Tenant(slug="smile", name="Smile Dental"))

    resp = await client.get("/api/voicebank/health", headers=ADMIN)
    body = await resp.json()
    assert resp.status == 200
    assert (body["clips"], body["ok"], body["failed"], body["never_checked"]) == (3, 0, 0, 3)
    assert body["last_run"] is None and body["interval_s"] == 3600

    _delete(s3, seven)
    await client.app[monitor_key].run_once()
    body = await (await client.get("/api/voicebank/health", headers=ADMIN)).json()
    assert (body["clips"], body["ok"], body["failed"], body["never_checked"]) == (3, 2, 1, 0)
    (failing,) = body["failing"]
    assert failing["clip_id"] == seven.id and failing["transcript"] == "seven"
    assert failing["status"] == 404 and "not found" in failing["reason"]
    assert body["last_run"]["checked"] == 3 and body["last_run"]["failed"] == 1
    assert body["last_checked_at"] is not None

    tenant_view = await client.get(
        "/api/voicebank/health?voice=allison", headers={"Authorization": f"Bearer {key}"}
    )
    assert (await tenant_view.json())["clips"] == 3  # shared clips: every tenant uses them
    assert (await client.get("/api/voicebank/health")).status == 401


async def test_the_periodic_check_runs_in_the_background(aiohttp_client, s3: S3, tmp_path):
    db_url = sqlite_url(tmp_path)
    client = await _app(aiohttp_client, s3, tmp_path, db_url, VOICEPROMPT_CHECK_INTERVAL="0.2")
    await stock(client.app[runtime_key].catalogue, ["digits/6"])
    # A run may start before the clip exists; the next one (0.2 s later) must check it.
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        body = await (await client.get("/api/voicebank/health", headers=ADMIN)).json()
        if body["ok"] == 1:
            break
        await asyncio.sleep(0.05)
    assert body["ok"] == 1 and body["last_run"]["checked"] >= 1
    assert client.app[monitor_key].last_run is not None


def test_check_and_slurp_settings():
    s = Settings.from_env({})
    assert (s.check_interval, s.check_max_age, s.check_concurrency) == (3600, 86400, 32)
    assert (s.slurp_max_bytes, s.slurp_timeout, s.slurp_allow_private) == (20 * 2**20, 10, False)
    s = Settings.from_env(
        {
            "VOICEPROMPT_CHECK_INTERVAL": "0",
            "VOICEPROMPT_CHECK_MAX_AGE": "600",
            "VOICEPROMPT_SLURP_MAX_MB": "5",
            "VOICEPROMPT_SLURP_TIMEOUT": "2.5",
            "VOICEPROMPT_SLURP_ALLOW_PRIVATE": "yes",
        }
    )
    assert (s.check_interval, s.check_max_age) == (0, 600)
    assert (s.slurp_max_bytes, s.slurp_timeout, s.slurp_allow_private) == (5 * 2**20, 2.5, True)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"VOICEPROMPT_CHECK_INTERVAL": "hourly"}, "VOICEPROMPT_CHECK_INTERVAL='hourly' is not"),
        ({"VOICEPROMPT_CHECK_MAX_AGE": "0"}, "VOICEPROMPT_CHECK_MAX_AGE='0' is outside"),
        ({"VOICEPROMPT_SLURP_MAX_MB": "500"}, "VOICEPROMPT_SLURP_MAX_MB='500' is outside"),
        ({"VOICEPROMPT_SLURP_ALLOW_PRIVATE": "maybe"}, "is not true or false"),
    ],
)
def test_bad_check_and_slurp_settings_name_the_variable(env, message):
    with pytest.raises(ConfigError, match=message):
        Settings.from_env(env)

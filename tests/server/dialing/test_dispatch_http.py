"""The dispatcher through the real twilio client over HTTP to the fake Twilio on loopback
(tests/support/fake_twilio.py): the API log of its requests and its route, the dispatcher inside
the app, and the CLI's remind, call, worker and log."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from click.testing import CliRunner

from server.app import create_app
from server.cli.main import main
from server.dialing.apilog import ApiLog
from server.dialing.dialer import add_do_not_call
from server.dialing.dispatcher import DispatchConfig, Dispatcher
from server.dialing.twilio import open_client
from server.keys import dispatcher_key
from server.runtime import open_runtime
from server.tenants import Tenant, TenantStore
from tests.server.dialing.world import ALL_DAY, CALLER, NUMBERS, World, make_settings
from tests.support.fake_twilio import FakeTwilio, FakeTwilioThread, twilio_env

ADMIN = "admin-token"


@pytest.fixture
async def world(engine):
    fake = FakeTwilio()
    await fake.start()
    yield await World.create(engine, fake, make_settings(twilio_env(fake)))
    await fake.stop()


async def run_once(w: World[FakeTwilio], *, lanes: int = 2) -> Any:
    async with open_client(w.settings, ApiLog(w.engine)) as calls:
        d = Dispatcher(
            w.engine, w.settings, calls, clock=w.clock, config=DispatchConfig(lanes=lanes)
        )
        return await d.run(once=True)


async def test_a_request_stopped_before_it_leaves_is_logged_as_not_sent(world):
    rid = await world.reminder(NUMBERS[0])
    async with open_client(world.settings, ApiLog(world.engine)) as calls:
        d = Dispatcher(world.engine, world.settings, calls, clock=world.clock)
        await d.plan(world.clock.now)
        claimed = await d.claim(world.clock.now)
        assert claimed is not None and not claimed.do_not_call
        await add_do_not_call(world.engine, "smile", NUMBERS[0])
        result = await d.dial_claimed(claimed)
    assert result.result == "refused" and world.fake.posts() == []
    row = await world.row(rid)
    assert row.status == "failed" and "do-not-call" in row.last_error
    (entry,) = await ApiLog(world.engine).for_reminder(rid)
    assert entry.status is None and (entry.error or "").startswith("not sent: NowOnDoNotCall")


async def test_log_route_is_scoped_to_the_tenant(world, aiohttp_client, tmp_path):
    rid = await world.reminder(NUMBERS[0])
    neighbour = await world.reminder(NUMBERS[1])  # dialed too: its entry must not show up
    assert await run_once(world) == {"dialed": 2}
    sid = (await world.row(rid)).call_sid
    other_sid = (await world.row(neighbour)).call_sid
    other, other_key = await TenantStore(world.engine).create(
        Tenant(slug="other", name="Other", caller_id=CALLER)
    )
    smile_key = await TenantStore(world.engine).rotate_key("smile")
    settings = replace(
        world.settings,
        data_dir=tmp_path,
        database_url=str(world.engine.url.render_as_string(hide_password=False)),
        admin_token=ADMIN,
    )
    async with open_runtime(settings, migrate=False) as rt:
        client = await aiohttp_client(create_app(settings, runtime=rt))

        async def get(path: str, token: str | None) -> Any:
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            return await client.get(path, headers=headers)

        for token in (ADMIN, smile_key):
            resp = await get(f"/api/reminders/{rid}/log", token)
            assert resp.status == 200
            body = await resp.json()
            # This reminder's one request, as sent and as answered.
            (entry,) = body["log"]
            assert (entry["method"], entry["status"], entry["reminder_id"]) == ("POST", 201, rid)
            assert entry["url"].endswith(
                f"/Accounts/{world.settings.twilio_account_sid}/Calls.json"
            )
            assert entry["request"]["To"] == NUMBERS[0] and entry["request"]["From"] == CALLER
            assert json.loads(entry["response_body"])["sid"] == sid
            text = json.dumps(body)
            assert other_sid not in text and NUMBERS[1] not in text
            assert world.fake.auth_token not in text and "Authorization" not in text
        for key, status in ((other_key, 403), (None, 401)):
            resp = await get(f"/api/reminders/{rid}/log", key)
            text = await resp.text()
            assert resp.status == status, key
            assert sid not in text and NUMBERS[0] not in text and "Calls.json" not in text
        assert (await get("/api/reminders/9999/log", ADMIN)).status == 404
        assert (await get("/api/reminders/x/log", ADMIN)).status == 404
        await client.close()


async def test_the_app_runs_one_dispatcher_when_asked(world, aiohttp_client, tmp_path):
    rid = await world.reminder(NUMBERS[0])
    url = world.engine.url.render_as_string(hide_password=False)
    settings = replace(world.settings, data_dir=tmp_path, database_url=url)
    async with open_runtime(settings, migrate=False) as rt:
        plain = await aiohttp_client(create_app(settings, runtime=rt, worker=False))
        # No worker unless asked: none started (not only "none has dialed yet").
        assert dispatcher_key not in plain.app
        await asyncio.sleep(0.3)
        assert world.fake.posts() == []
        dialing = await aiohttp_client(create_app(settings, runtime=rt, worker=True))
        assert isinstance(dialing.app[dispatcher_key], Dispatcher)
        for _ in range(100):
            if (await world.row(rid)).call_sid:
                break
            await asyncio.sleep(0.05)
        # Stop the apps (and the dispatcher) while the runtime's engine is still open.
        await dialing.close()
        await plain.close()
    row = await world.row(rid)
    assert row.call_sid in world.fake.calls and len(world.fake.posts()) == 1


def test_cli_remind_call_worker_and_log(settings):
    with FakeTwilioThread() as fake:
        env = {
            "VOICEPROMPT_DATA_DIR": str(settings.data_dir),
            "VOICEPROMPT_DATABASE_URL": settings.database_url,
            "VOICEPROMPT_DIAL_ALLOWLIST": ",".join(NUMBERS[:3]),
            **twilio_env(fake),
        }
        cli = CliRunner(env=env)

        def ok(*args: str) -> str:
            result = cli.invoke(main, list(args))
            assert result.exit_code == 0, result.output + result.stderr
            return result.output

        def fails(*args: str) -> str:
            result = cli.invoke(main, list(args))
            assert result.exit_code == 2, result.output
            assert result.stderr.startswith("error: ") and "Traceback" not in result.stderr
            return result.stderr

        ok("tenant", "create", "smile", "--name", "Smile Dental", "--caller-id", CALLER)
        out = ok(
            "remind",
            "--tenant",
            "smile",
            "--to",
            "(415) 555-0200",
            "--at",
            "2031-03-04T15:00",
            "--provider",
            "Doctor Grey",
        )
        assert out.startswith("created reminder 1: +14155550200 for Smile Dental")
        assert "first call from 2031-03-03 15:00 EST" in out
        ok("remind", "--tenant", "smile", "--to", "415 555 0999", "--at", "2031-03-04T15:00")
        assert "not in VOICEPROMPT_DIAL_ALLOWLIST" in fails("call", "--reminder", "2")
        assert fake.requests == []
        out = ok("call", "--reminder", "1")
        assert out.startswith("reminder 1: call CA")
        assert "reminder 1 is dialing" in fails("call", "--reminder", "1")
        assert "no reminder 7" in fails("call", "--reminder", "7")
        log = ok("log", "--reminder", "1")
        assert "POST " in log and "-> 201" in log and "To: +14155550200" in log
        assert fake.auth_token not in log
        entries = json.loads(ok("log", "--reminder", "1", "--json"))
        assert entries[0]["request"]["Url"].endswith("/twilio/voice/1")
        assert ok("log", "--reminder", "2") == "no Twilio requests for reminder 2\n"
        assert "purged 0 entries older than 14 days" in ok("log", "--purge")
        ok("dnc", "add", "--tenant", "smile", "--number", "415 555 0201")
        assert ok("dnc", "list", "--tenant", "smile").strip() == "+14155550201"
        asyncio.run(_all_day(settings.database_url))
        soon = (datetime.now(UTC) + timedelta(hours=2)).isoformat()
        ok("remind", "--tenant", "smile", "--to", "415 555 0201", "--at", soon)
        # Reminder 1 (dialed) and 2 (failed) are done; 3 is due, on the do-not-call list.
        assert "worker done: 1 refused" in ok("worker", "--once")
        assert len(fake.posts()) == 1


async def _all_day(url: str) -> None:
    from server.db.engine import create_engine

    engine = create_engine(url)
    try:
        await TenantStore(engine).update("smile", ALL_DAY)
    finally:
        await engine.dispose()

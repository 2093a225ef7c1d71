"""The dispatcher on SQLite and PostgreSQL with the real twilio client and the fake Twilio:
claims, planning and calling hours, retries, per-number spacing, the CPS budget across workers,
reconciliation after a crash, the API log route and the CLI."""

from __future__ import annotations

import asyncio
import json
import math
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from server.app import create_app
from server.cli.main import main
from server.db.schema import reminders
from server.dialing.apilog import ApiLog
from server.dialing.dialer import add_do_not_call
from server.dialing.dispatch import DispatchConfig, Dispatcher, DispatchError
from server.dialing.pacing import ARRIVAL_JITTER_S, Pacing
from server.dialing.twilio import open_client
from server.errors import ConfigError
from server.keys import dispatcher_key
from server.reminders import ReminderStore
from server.runtime import open_runtime
from server.settings import Settings
from server.tenants import Tenant, TenantStore
from tests.support.fake_twilio import FakeTwilio, FakeTwilioThread, max_per_second, twilio_env

CALLER = "+14155550100"
NUMBERS = [f"+1415555{n:04d}" for n in range(200, 300)]
ALL_DAY: dict[str, Any] = {"calling_hours_start": "00:00", "calling_hours_end": "24:00"}
ADMIN = "admin-token"


class Clock:
    def __init__(self, now: datetime | None = None) -> None:
        self.now = now or datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


@dataclass
class World:
    engine: Any
    fake: FakeTwilio
    settings: Settings
    tenant: Tenant
    clock: Clock

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


def make_settings(fake: FakeTwilio, **env: str) -> Settings:
    return Settings.from_env(
        {
            **twilio_env(fake),
            "VOICEPROMPT_PUBLIC_URL": "https://voice.example.com",
            "VOICEPROMPT_DIAL_ALLOWLIST": ",".join(NUMBERS),
            "VOICEPROMPT_CPS": "100",
            "VOICEPROMPT_TWILIO_TIMEOUT": "1",
            "VOICEPROMPT_ENV": "test",
            **env,
        }
    )


@pytest.fixture
async def world(engine):
    fake = FakeTwilio()
    await fake.start()
    settings = make_settings(fake)
    tenant, _ = await TenantStore(engine).create(
        Tenant(slug="smile", name="Smile Dental", caller_id=CALLER, **ALL_DAY)
    )
    yield World(engine, fake, settings, tenant, Clock())
    await fake.stop()


async def run_once(w: World, *, settings: Settings | None = None, lanes: int = 2, **kw: Any):
    async with open_client(settings or w.settings, ApiLog(w.engine)) as client:
        d = Dispatcher(
            w.engine,
            settings or w.settings,
            client,
            clock=w.clock,
            config=DispatchConfig(lanes=lanes),
            **kw,
        )
        return await d.run(once=True)


async def test_a_worker_dials_each_due_reminder_once_and_stores_the_sid(world):
    ids = [await world.reminder(n) for n in NUMBERS[:5]]
    counts = await run_once(world)
    assert counts == {"dialed": 5}
    for rid, number in zip(ids, NUMBERS, strict=False):
        row = await world.row(rid)
        assert row.status == "dialing" and row.attempts == 1 and row.claimed_by is None
        assert world.fake.calls[row.call_sid]["to"] == number
        assert (await world.events(rid))[-2:] == ["dialing", "dialed"]
    assert await run_once(world) == {}  # nothing due any more
    assert len(world.fake.posts()) == 5


async def test_claims_are_atomic_across_workers(world):
    ids = {await world.reminder(n) for n in NUMBERS[:40]}
    async with open_client(world.settings, None) as client:
        workers = [
            Dispatcher(world.engine, world.settings, client, worker_id=f"w{i}", clock=world.clock)
            for i in range(4)
        ]
        await workers[0].plan(world.clock.now)

        async def drain(d: Dispatcher) -> list[int]:
            got = []
            while (r := await d.claim(world.clock.now)) is not None:
                got.append(r.id)
            return got

        claims = await asyncio.gather(*(drain(d) for d in workers))
    flat = [rid for got in claims for rid in got]
    assert sorted(flat) == sorted(ids) and len(set(flat)) == len(flat)


async def test_the_cps_budget_holds_across_workers(world):
    for n in NUMBERS[:45]:
        await world.reminder(n)
    settings = replace(world.settings, cps=20.0)
    await asyncio.gather(*(run_once(world, settings=settings, lanes=3) for _ in range(3)))
    times = sorted(r.at for r in world.fake.posts())
    assert len(times) == 45 and world.fake.placed_per_number().most_common(1)[0][1] == 1
    assert max_per_second(times) <= 21  # 20 * 1.05
    # Throughput is bench/dispatch.py's business (worker processes); here, three dispatchers
    # share one event loop, so only a gross under-use of the budget is an error.
    assert (len(times) - 1) / (times[-1] - times[0]) >= 0.6 * 20


@pytest.mark.parametrize("cps", [0.5, 1, 2, 5, 10, 20, 30, 50, 100, 250])
def test_late_sends_cannot_push_a_second_over_the_tolerance(cps):
    # Slots `interval` apart, each send up to `grace` late and its arrival up to the jitter
    # later: the densest second holds the slots of an open stretch 1 s + grace + jitter long.
    p = Pacing.for_cps(cps)
    worst = math.ceil((1 + p.grace + ARRIVAL_JITTER_S) / p.interval)
    assert worst <= max(1, math.floor(cps * 1.05))
    assert p.grace >= 0.04  # room for a busy event loop
    assert 1 / p.interval >= 0.93 * cps  # and most of the budget used


async def test_a_number_off_the_allowlist_is_refused_without_a_request(world):
    rid = await world.reminder("+14155550999")
    async with open_client(world.settings, None) as client:
        result = await Dispatcher(world.engine, world.settings, client).dial_now(rid)
    assert result.result == "refused" and "VOICEPROMPT_DIAL_ALLOWLIST" in result.detail
    assert world.fake.requests == []
    row = await world.row(rid)
    assert row.status == "failed" and "allowlist" in row.last_error.lower()
    assert "refused" in await world.events(rid)


async def test_the_do_not_call_list_is_never_dialed(world):
    rid = await world.reminder(NUMBERS[0])
    await add_do_not_call(world.engine, "smile", NUMBERS[0], "asked us not to")
    assert await run_once(world) == {"refused": 1}
    assert world.fake.requests == []
    assert "do-not-call" in (await world.row(rid)).last_error


async def test_a_number_listed_after_the_claim_is_not_dialed_either(world):
    rid = await world.reminder(NUMBERS[0])
    async with open_client(world.settings, ApiLog(world.engine)) as client:
        d = Dispatcher(world.engine, world.settings, client, clock=world.clock)
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


async def test_first_call_waits_for_calling_hours_across_dst(world):
    # Saturday 7 March 2026, 21:00 EST; the appointment is Sunday 15:00 EDT. 24 h before has
    # passed, but it is after hours: the call waits for Sunday 08:00 EDT, which is 12:00 UTC.
    world.clock.now = datetime(2026, 3, 8, 2, 0, tzinfo=UTC)
    tenant = await world.tenant_named("dst", timezone="America/New_York")
    rid = await world.reminder(NUMBERS[0], tenant=tenant, hours=17)
    assert await run_once(world) == {}
    assert (await world.row(rid)).next_attempt_at.replace(tzinfo=UTC) == datetime(
        2026, 3, 8, 12, 0, tzinfo=UTC
    )
    world.clock.now = datetime(2026, 3, 8, 11, 59, tzinfo=UTC)
    assert await run_once(world) == {}
    world.clock.now = datetime(2026, 3, 8, 12, 0, tzinfo=UTC)
    assert await run_once(world) == {"dialed": 1}


async def test_a_reminder_claimed_after_hours_is_put_back_to_the_next_window(world):
    world.clock.now = datetime(2026, 12, 1, 0, 59, tzinfo=UTC)  # 19:59 EST
    tenant = await world.tenant_named("late", timezone="America/New_York")
    rid = await world.reminder(NUMBERS[0], tenant=tenant, hours=20)
    async with open_client(world.settings, None) as client:
        d = Dispatcher(world.engine, world.settings, client, clock=world.clock)
        await d.plan(world.clock.now)
        claimed = await d.claim(world.clock.now)
        assert claimed is not None
        world.clock.now = datetime(2026, 12, 1, 1, 1, tzinfo=UTC)  # 20:01 EST: a backlog
        result = await d.dial_claimed(claimed)
    assert result.result == "rescheduled" and world.fake.requests == []
    row = await world.row(rid)
    assert row.status == "pending" and row.claimed_by is None
    assert row.next_attempt_at.replace(tzinfo=UTC) == datetime(2026, 12, 1, 13, 0, tzinfo=UTC)


async def test_too_late_to_call_fails_the_reminder(world):
    world.clock.now = datetime(2026, 12, 2, 3, 0, tzinfo=UTC)  # 22:00 EST
    tenant = await world.tenant_named("late", timezone="America/New_York")
    rid = await world.reminder(NUMBERS[0], tenant=tenant, hours=9)  # 07:00 EST
    assert await run_once(world) == {}
    row = await world.row(rid)
    assert row.status == "failed" and "no calling hours" in row.last_error


async def test_no_answer_is_retried_once_then_stops(world):
    rid = await world.reminder(NUMBERS[0], hours=20)
    store = ReminderStore(world.engine)
    assert await run_once(world) == {"dialed": 1}
    first = await world.row(rid)
    # The status callback (webhooks.py) records the outcome.
    await store.record(rid, "status", {}, status="no_answer", outcome="no_answer")
    world.clock.now += timedelta(minutes=1)
    assert await run_once(world) == {}  # requeued, not yet due
    row = await world.row(rid)
    assert row.status == "pending" and row.call_sid is None
    # One retry after 30 minutes, but never sooner than 60 minutes after the last call.
    due = first.dial_started_at.replace(tzinfo=UTC) + timedelta(minutes=60)
    assert row.next_attempt_at.replace(tzinfo=UTC) == due
    world.clock.now = due
    assert await run_once(world) == {"dialed": 1}
    assert (await world.row(rid)).attempts == 2
    await store.record(rid, "status", {}, status="busy", outcome="busy")
    world.clock.now += timedelta(hours=2)
    assert await run_once(world) == {}
    row = await world.row(rid)
    assert row.status == "busy" and row.attempts == 2  # max_attempts reached: no third call
    kinds = await world.events(rid)
    assert kinds.count("retry_scheduled") == 1 and kinds.count("dialed") == 2
    assert len(world.fake.posts()) == 2


async def test_max_attempts_is_the_tenants(world):
    tenant = await world.tenant_named("once", max_attempts=1, **ALL_DAY)
    rid = await world.reminder(NUMBERS[0], tenant=tenant)
    await run_once(world)
    await ReminderStore(world.engine).record(rid, "status", {}, status="no_answer")
    world.clock.now += timedelta(hours=2)
    assert await run_once(world) == {}
    assert (await world.row(rid)).status == "no_answer"


async def test_spacing_holds_across_reminders_and_tenants(world):
    other = await world.tenant_named("quick", min_spacing_minutes=10, **ALL_DAY)
    a = await world.reminder(NUMBERS[0])
    b = await world.reminder(NUMBERS[0], tenant=other)
    counts = await run_once(world, lanes=1)  # one lane: a (the older) goes first
    assert counts == {"dialed": 1, "rescheduled": 1}
    assert world.fake.placed_per_number()[NUMBERS[0]] == 1
    dialed = await world.row(a)
    waiting = await world.row(b)
    # "quick" allows 10 minutes, but the first call was smile's, which asked for 60.
    assert waiting.next_attempt_at.replace(tzinfo=UTC) == dialed.dial_started_at.replace(
        tzinfo=UTC
    ) + timedelta(minutes=60)
    world.clock.now += timedelta(minutes=59)
    assert await run_once(world) == {}
    world.clock.now += timedelta(minutes=1)
    assert await run_once(world) == {"dialed": 1}


async def test_manual_dial_respects_spacing(world):
    a = await world.reminder(NUMBERS[0])
    b = await world.reminder(NUMBERS[0])
    async with open_client(world.settings, None) as client:
        d = Dispatcher(world.engine, world.settings, client, clock=world.clock)
        assert (await d.dial_now(a)).result == "dialed"
        with pytest.raises(DispatchError, match="called less than"):
            await d.dial_now(b)
        with pytest.raises(DispatchError, match="reminder .* is dialing"):
            await d.dial_now(a)
    assert (await world.row(b)).status == "pending" and len(world.fake.posts()) == 1


async def test_permanent_twilio_errors_fail_the_reminder(world):
    from tests.support.fake_twilio import Answer

    world.fake.answer_number(NUMBERS[0], Answer.error(21214))
    rid = await world.reminder(NUMBERS[0])
    assert await run_once(world) == {"failed": 1}
    row = await world.row(rid)
    assert row.status == "failed" and row.last_error.startswith("Twilio error 21214: ")
    assert len(world.fake.posts()) == 1


async def dying_worker(w: World, rid: int, *, age: float = 30.0) -> None:
    """What a worker that died between the request and storing the SID leaves behind."""
    started = w.clock.now - timedelta(seconds=age)
    await w.set(
        rid,
        status="dialing",
        attempts=1,
        dial_started_at=started,
        lease_until=started + timedelta(seconds=5),
        claimed_by="dead-worker",
    )


@pytest.mark.parametrize("twilio_status", ["queued", "completed"])
async def test_reconcile_adopts_the_call_a_dead_worker_placed(world, twilio_status):
    rid = await world.reminder(NUMBERS[0])
    await dying_worker(world, rid)
    sid = world.fake.add_call(NUMBERS[0], CALLER, status=twilio_status)
    world.fake.add_call(NUMBERS[1], CALLER)  # another number: not ours
    assert await run_once(world) == {}
    row = await world.row(rid)
    assert row.call_sid == sid and row.status == "dialing" and row.attempts == 1
    assert "adopted" in await world.events(rid)
    assert world.fake.posts() == []  # never re-dialed


@pytest.mark.parametrize("calls", [0, 2])
async def test_reconcile_without_exactly_one_call_needs_review(world, calls):
    rid = await world.reminder(NUMBERS[0])
    await dying_worker(world, rid)
    for _ in range(calls):
        world.fake.add_call(NUMBERS[0], CALLER)
    await run_once(world)
    row = await world.row(rid)
    assert row.status == "needs_review" and row.call_sid is None
    assert ("no call" if calls == 0 else "2 calls") in row.last_error
    assert world.fake.posts() == []


async def test_reconcile_leaves_a_live_lease_alone_and_retries_when_twilio_is_down(world):
    rid = await world.reminder(NUMBERS[0])
    await dying_worker(world, rid, age=1)  # lease still running
    await run_once(world)
    assert (await world.row(rid)).status == "dialing" and world.fake.lists() == []
    world.clock.now += timedelta(seconds=10)
    world.fake.list_failures = 1
    await run_once(world)
    row = await world.row(rid)
    assert row.status == "dialing" and row.call_sid is None and row.claimed_by is None
    assert row.lease_until.replace(tzinfo=UTC) > world.clock.now  # asks again in a minute
    assert world.fake.posts() == []


def test_crash_points_are_test_only():
    with pytest.raises(ConfigError, match="only allowed when VOICEPROMPT_ENV=test"):
        Settings.from_env({"VOICEPROMPT_TEST_CRASH": "after_request=1"})
    s = Settings.from_env(
        {"VOICEPROMPT_ENV": "test", "VOICEPROMPT_TEST_CRASH": "after_request=0.5"}
    )
    assert s.test_crash == (("after_request", 0.5),)


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

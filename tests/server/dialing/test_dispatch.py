"""The dispatcher on SQLite and PostgreSQL against the in-process fake of Twilio
(tests/support/fake_calls.py): claims, planning and calling hours, retries, per-number spacing,
the CPS budget across workers, Twilio's errors, and reconciliation after a crash.

Through the real twilio client over HTTP (the API log, the app, the CLI):
test_dispatch_http.py."""

from __future__ import annotations

import asyncio
import math
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from server.dialing.dialer import DialPolicy, add_do_not_call
from server.dialing.dispatcher import DispatchConfig, Dispatcher, DispatchError
from server.dialing.pacing import ARRIVAL_JITTER_S, Pacing
from server.dialing.twilio import ApiUnreachable
from server.errors import ConfigError
from server.reminders import ReminderStore
from server.settings import Settings
from tests.server.dialing.world import ALL_DAY, CALLER, NUMBERS, World, make_settings
from tests.support.fake_calls import FakeCalls, rejected
from tests.support.fake_twilio import ACCOUNT_SID, AUTH_TOKEN, max_per_second

TWILIO = {"TWILIO_ACCOUNT_SID": ACCOUNT_SID, "TWILIO_AUTH_TOKEN": AUTH_TOKEN}
# Retries of one dial without the real backoff's seconds.
QUICK = DialPolicy(base_delay=0.01, max_delay=0.02)


@pytest.fixture
async def world(engine) -> World[FakeCalls]:
    return await World.create(engine, FakeCalls(), make_settings(TWILIO))


def dispatcher(w: World[FakeCalls], *, settings: Settings | None = None, **kw: Any) -> Dispatcher:
    return Dispatcher(w.engine, settings or w.settings, w.fake, clock=w.clock, **kw)


async def run_once(
    w: World[FakeCalls], *, settings: Settings | None = None, lanes: int = 2, **kw: Any
):
    config = DispatchConfig(lanes=lanes, policy=QUICK)
    return await dispatcher(w, settings=settings, config=config, **kw).run(once=True)


async def test_a_worker_dials_each_due_reminder_once_and_stores_the_sid(world):
    ids = [await world.reminder(n) for n in NUMBERS[:5]]
    counts = await run_once(world)
    assert counts == {"dialed": 5}
    for rid, number in zip(ids, NUMBERS, strict=False):
        row = await world.row(rid)
        assert row.status == "dialing" and row.attempts == 1 and row.claimed_by is None
        assert world.fake.calls[row.call_sid].to == number
        assert (await world.events(rid))[-2:] == ["dialing", "dialed"]
    assert await run_once(world) == {}  # nothing due any more
    # One request per reminder, from the tenant's number, answered at the reminder's own URL.
    sent = {r.params["to"]: r.params for r in world.fake.creates()}
    assert len(world.fake.creates()) == 5 and sorted(sent) == sorted(NUMBERS[:5])
    for rid, number in zip(ids, NUMBERS, strict=False):
        assert sent[number]["from_"] == CALLER
        assert sent[number]["url"] == f"https://voice.example.com/twilio/voice/{rid}"


async def test_claims_are_atomic_across_workers(world):
    ids = {await world.reminder(n) for n in NUMBERS[:40]}
    workers = [dispatcher(world, worker_id=f"w{i}") for i in range(4)]
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
    times = sorted(r.at for r in world.fake.creates())
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
    result = await dispatcher(world).dial_now(rid)
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
    d = dispatcher(world)
    await d.plan(world.clock.now)
    claimed = await d.claim(world.clock.now)
    assert claimed is not None and not claimed.do_not_call
    await add_do_not_call(world.engine, "smile", NUMBERS[0])
    result = await d.dial_claimed(claimed)
    assert result.result == "refused" and world.fake.requests == []
    row = await world.row(rid)
    assert row.status == "failed" and "do-not-call" in row.last_error
    assert row.attempts == 0 and world.fake.calls == {}


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
    assert world.fake.requests == []
    world.clock.now = datetime(2026, 3, 8, 12, 0, tzinfo=UTC)
    assert await run_once(world) == {"dialed": 1}
    assert world.fake.placed_per_number() == {NUMBERS[0]: 1}


async def test_a_reminder_claimed_after_hours_is_put_back_to_the_next_window(world):
    world.clock.now = datetime(2026, 12, 1, 0, 59, tzinfo=UTC)  # 19:59 EST
    tenant = await world.tenant_named("late", timezone="America/New_York")
    rid = await world.reminder(NUMBERS[0], tenant=tenant, hours=20)
    d = dispatcher(world)
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
    assert world.fake.requests == []


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
    assert len(world.fake.creates()) == 2


async def test_max_attempts_is_the_tenants(world):
    tenant = await world.tenant_named("once", max_attempts=1, **ALL_DAY)
    rid = await world.reminder(NUMBERS[0], tenant=tenant)
    await run_once(world)
    await ReminderStore(world.engine).record(rid, "status", {}, status="no_answer")
    world.clock.now += timedelta(hours=2)
    assert await run_once(world) == {}
    assert (await world.row(rid)).status == "no_answer"
    assert len(world.fake.creates()) == 1


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
    assert world.fake.placed_per_number()[NUMBERS[0]] == 2


async def test_manual_dial_respects_spacing(world):
    a = await world.reminder(NUMBERS[0])
    b = await world.reminder(NUMBERS[0])
    d = dispatcher(world)
    assert (await d.dial_now(a)).result == "dialed"
    with pytest.raises(DispatchError, match="called less than"):
        await d.dial_now(b)
    with pytest.raises(DispatchError, match="reminder .* is dialing"):
        await d.dial_now(a)
    assert (await world.row(b)).status == "pending" and len(world.fake.creates()) == 1


async def test_permanent_twilio_errors_fail_the_reminder(world):
    world.fake.fail_number(NUMBERS[0], rejected(21214))
    rid = await world.reminder(NUMBERS[0])
    assert await run_once(world) == {"failed": 1}
    row = await world.row(rid)
    assert row.status == "failed" and row.last_error.startswith("Twilio error 21214: ")
    assert len(world.fake.creates()) == 1 and world.fake.calls == {}


async def test_rate_limited_requests_are_retried_and_dial_once(world):
    world.fake.fail_next(rejected(20429), rejected(20429))
    rid = await world.reminder(NUMBERS[0])
    assert await run_once(world) == {"dialed": 1}
    row = await world.row(rid)
    assert row.status == "dialing" and row.attempts == 1 and row.call_sid in world.fake.calls
    assert len(world.fake.creates()) == 3 and world.fake.lists() == []  # a 429 placed nothing
    assert world.fake.placed_per_number() == {NUMBERS[0]: 1}


async def test_a_call_placed_despite_an_error_is_adopted_not_redialed(world):
    world.fake.fail_next(ApiUnreachable("no answer from Twilio", sent=True), placed=True)
    rid = await world.reminder(NUMBERS[0])
    assert await run_once(world) == {"dialed": 1}
    row = await world.row(rid)
    (sid,) = world.fake.calls
    assert row.call_sid == sid and row.status == "dialing"
    assert len(world.fake.creates()) == 1 and world.fake.lists() != []


async def test_bad_credentials_postpone_the_reminder_without_a_call(world):
    world.fake.fail_next(rejected(20003))
    rid = await world.reminder(NUMBERS[0])
    assert await run_once(world) == {"postponed": 1}
    row = await world.row(rid)
    assert row.status == "pending" and row.attempts == 0 and row.claimed_by is None
    assert row.next_attempt_at.replace(tzinfo=UTC) == world.clock.now + timedelta(minutes=1)
    assert "20003" in row.last_error and world.fake.calls == {}
    world.clock.now += timedelta(minutes=1)
    assert await run_once(world) == {"dialed": 1}
    assert world.fake.placed_per_number() == {NUMBERS[0]: 1}


async def dying_worker(w: World[FakeCalls], rid: int, *, age: float = 30.0) -> None:
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
    assert world.fake.creates() == []  # never re-dialed


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
    assert world.fake.creates() == []


async def test_reconcile_leaves_a_live_lease_alone_and_retries_when_twilio_is_down(world):
    rid = await world.reminder(NUMBERS[0])
    await dying_worker(world, rid, age=1)  # lease still running
    await run_once(world)
    assert (await world.row(rid)).status == "dialing" and world.fake.lists() == []
    world.clock.now += timedelta(seconds=10)
    world.fake.fail_lists(rejected(20500))
    await run_once(world)
    row = await world.row(rid)
    assert row.status == "dialing" and row.call_sid is None and row.claimed_by is None
    assert row.lease_until.replace(tzinfo=UTC) > world.clock.now  # asks again in a minute
    assert len(world.fake.lists()) == 1 and world.fake.creates() == []


async def test_a_dial_twilio_cannot_account_for_is_reconciled_not_redialed(world):
    # The create request fails after Twilio placed the call, and Twilio cannot be asked then.
    world.fake.fail_next(rejected(20500), placed=True)
    world.fake.fail_lists(rejected(20500))
    rid = await world.reminder(NUMBERS[0])
    assert await run_once(world) == {"unknown": 1}
    row = await world.row(rid)
    assert row.status == "dialing" and row.call_sid is None
    assert "could not ask Twilio" in row.last_error
    world.clock.now += timedelta(seconds=1)
    assert await run_once(world) == {}
    (sid,) = world.fake.calls
    row = await world.row(rid)
    assert row.call_sid == sid and row.status == "dialing" and row.attempts == 1
    assert "adopted" in await world.events(rid)
    assert len(world.fake.creates()) == 1


def test_crash_points_are_test_only():
    with pytest.raises(ConfigError, match="only allowed when VOICEPROMPT_ENV=test"):
        Settings.from_env({"VOICEPROMPT_TEST_CRASH": "after_request=1"})
    s = Settings.from_env(
        {"VOICEPROMPT_ENV": "test", "VOICEPROMPT_TEST_CRASH": "after_request=0.5"}
    )
    assert s.test_crash == (("after_request", 0.5),)


async def test_answers_are_prepared_before_the_call_is_placed(world):
    ids = [await world.reminder(n) for n in NUMBERS[:3]]
    seen: list[tuple[int, int]] = []  # (reminder, calls placed when it was prepared)

    async def prepare(rid: int) -> None:
        seen.append((rid, len(world.fake.creates())))

    assert await run_once(world, prepare=prepare) == {"dialed": 3}
    assert sorted(rid for rid, _ in seen) == sorted(ids)
    # Each reminder was prepared before its own request left: never after its call rang.
    order = {r.params["to"]: i for i, r in enumerate(world.fake.creates())}
    numbers = {rid: n for rid, n in zip(ids, NUMBERS, strict=False)}
    for rid, placed in seen:
        assert placed <= order[numbers[rid]]


async def test_a_failing_or_slow_preparation_never_stops_the_call(world, monkeypatch):
    import server.dialing.attempt

    monkeypatch.setattr(server.dialing.attempt, "PREPARE_BUDGET_S", 0.05)
    broken, slow = await world.reminder(NUMBERS[0]), await world.reminder(NUMBERS[1])

    async def prepare(rid: int) -> None:
        if rid == broken:
            raise RuntimeError("the voice bank is away")
        await asyncio.sleep(10)

    assert await run_once(world, prepare=prepare) == {"dialed": 2}
    assert len(world.fake.creates()) == 2
    for rid in (broken, slow):
        assert (await world.row(rid)).status == "dialing"

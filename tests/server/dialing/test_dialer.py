"""Placing one call: the real twilio client over HTTP to the fake Twilio on loopback.

What is sent per AMD mode, each class of error and what a retry does about it, the backoff, the
safety checks, and the API log of every exchange.
"""

from __future__ import annotations

import json
import socket
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from server.dialing.apilog import MASK, ApiLog, redact
from server.dialing.dialer import (
    DialOutcome,
    DialPolicy,
    DialRefused,
    call_params,
    check_number,
    place_call,
)
from server.dialing.twilio import for_reminder, open_client
from server.reminders import ReminderStore
from server.settings import Settings
from server.tenants import Tenant, TenantStore
from tests.support.fake_twilio import AUTH_TOKEN, Answer, FakeTwilio, twilio_env

TO = "+14155550134"
CALLER = "+14155550100"
PUBLIC = "https://voice.example.com"
TENANT = Tenant(slug="smile", name="Smile Dental", caller_id=CALLER)


@pytest.fixture
async def fake():
    f = FakeTwilio()
    await f.start()
    yield f
    await f.stop()


def make_settings(fake: FakeTwilio, **env: str) -> Settings:
    return Settings.from_env(
        {
            **twilio_env(fake),
            "VOICEPROMPT_PUBLIC_URL": PUBLIC,
            "VOICEPROMPT_DIAL_ALLOWLIST": f"{TO},+14155550135",
            "VOICEPROMPT_TWILIO_TIMEOUT": "0.5",
            **env,
        }
    )


class Recorder:
    """Stand-ins for the dispatcher's gate and for asyncio.sleep that record their calls."""

    def __init__(self) -> None:
        self.gates: list[int] = []
        self.sleeps: list[float] = []

    async def gate(self, attempt: int) -> None:
        self.gates.append(attempt)

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)


DEFAULT_POLICY = DialPolicy()


async def dial(fake, *, tenant=TENANT, settings=None, policy=DEFAULT_POLICY, rand=lambda: 0.5):
    settings = settings or make_settings(fake)
    rec = Recorder()
    async with open_client(settings, None) as calls:
        result = await place_call(
            calls,
            call_params(settings, 7, TO, tenant),
            settings=settings,
            started_at=datetime.now(UTC),
            gate=rec.gate,
            policy=policy,
            rand=rand,
            sleep=rec.sleep,
        )
    return result, rec


@pytest.mark.parametrize(
    ("mode", "detection", "timeout"),
    [
        ("off", None, None),
        ("enable", "Enable", "10"),
        ("detect-message-end", "DetectMessageEnd", "30"),
    ],
)
async def test_parameters_sent_per_amd_mode(fake, mode, detection, timeout):
    result, rec = await dial(fake, tenant=replace(TENANT, amd_mode=mode))
    assert result.outcome is DialOutcome.PLACED and result.call_sid in fake.calls
    assert rec.gates == [1] and rec.sleeps == []
    (post,) = fake.posts()
    assert post.path == f"/2010-04-01/Accounts/{fake.account_sid}/Calls.json"
    assert post.form["To"] == [TO] and post.form["From"] == [CALLER]
    assert post.form["Url"] == [f"{PUBLIC}/twilio/voice/7"]
    assert post.form["Method"] == ["POST"]
    assert post.form["StatusCallback"] == [f"{PUBLIC}/twilio/status?reminder=7"]
    assert post.form["StatusCallbackEvent"] == ["initiated", "ringing", "answered", "completed"]
    assert post.form["StatusCallbackMethod"] == ["POST"]
    assert post.form.get("MachineDetection") == ([detection] if detection else None)
    assert post.form.get("MachineDetectionTimeout") == ([timeout] if timeout else None)
    # Synchronous AMD: the answer webhook gets AnsweredBy, so no AsyncAmd parameters.
    assert not {k for k in post.form if k.startswith("AsyncAmd")}


async def test_rate_limited_requests_are_retried_with_exponential_backoff(fake):
    fake.answer_next(Answer.error(20429), Answer.error(20429))
    result, rec = await dial(fake, rand=lambda: 1.0)
    assert result.outcome is DialOutcome.PLACED and result.requests == 3
    assert len(fake.posts()) == 3 and fake.lists() == []  # a 429 was never processed
    assert rec.gates == [1, 2, 3]  # every request waits for its own CPS slot
    assert rec.sleeps == [0.5, 1.0]


async def test_backoff_has_jitter_and_is_bounded(fake):
    fake.answer_number(TO, Answer.error(20429))
    policy = DialPolicy(max_tries=6, base_delay=0.5, max_delay=2.0)
    result, rec = await dial(fake, policy=policy, rand=lambda: 0.0)
    assert result.outcome is DialOutcome.RETRY_LATER and "20429" in (result.reason or "")
    assert len(fake.posts()) == 6
    assert rec.sleeps == [0.25, 0.5, 1.0, 1.0, 1.0]  # half of min(cap, base * 2^n), no less


async def test_a_server_error_that_placed_the_call_is_adopted_not_redialed(fake):
    fake.answer_next(Answer.error(20500, create=True))
    result, _ = await dial(fake)
    assert result.outcome is DialOutcome.PLACED and result.adopted
    assert len(fake.posts()) == 1 and fake.placed_per_number()[TO] == 1
    assert result.call_sid in fake.calls
    queries = [r.query for r in fake.lists()]
    assert all(q["To"] == [TO] for q in queries)
    assert {"StartTime>"} <= set(queries[0]) and queries[1]["Status"] == ["queued"]


async def test_a_server_error_without_a_call_is_retried(fake):
    fake.answer_next(Answer.error(20500))
    result, rec = await dial(fake)
    assert result.outcome is DialOutcome.PLACED and not result.adopted
    assert len(fake.posts()) == 2 and fake.placed_per_number()[TO] == 1
    assert len(fake.lists()) == 2 and len(rec.sleeps) == 1


async def test_a_slow_answer_times_out_and_the_call_is_found(fake):
    fake.answer_next(Answer(delay=0.8))  # the call is placed, the answer comes too late
    result, _ = await dial(fake)
    assert result.outcome is DialOutcome.PLACED and result.adopted
    assert len(fake.posts()) == 1 and fake.placed_per_number()[TO] == 1


async def test_a_dropped_connection_is_treated_as_maybe_sent(fake):
    fake.answer_next(Answer(drop=True))
    result, _ = await dial(fake)
    assert result.outcome is DialOutcome.PLACED and result.adopted
    assert fake.placed_per_number()[TO] == 1


async def test_when_twilio_cannot_say_the_dial_is_left_unknown(fake):
    fake.answer_next(Answer.error(20500, create=True))
    fake.list_failures = 10
    result, _ = await dial(fake)
    assert result.outcome is DialOutcome.UNKNOWN and "could not ask Twilio" in (result.reason or "")
    assert len(fake.posts()) == 1


async def test_connection_refused_is_retried_then_postponed_without_asking(fake):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here once closed
    settings = make_settings(fake, VOICEPROMPT_TWILIO_API_URL=f"http://127.0.0.1:{port}")
    result, rec = await dial(fake, settings=settings)
    assert result.outcome is DialOutcome.RETRY_LATER and "cannot connect" in (result.reason or "")
    assert rec.gates == [1, 2, 3, 4] and len(rec.sleeps) == 3


@pytest.mark.parametrize(
    "code", [21211, 21214, 21215, 21217, 21210, 21212, 21216, 13224, 21401, 21408]
)
async def test_number_and_permission_errors_fail_with_twilios_reason(fake, code):
    fake.answer_number(TO, Answer.error(code))
    result, rec = await dial(fake)
    assert result.outcome is DialOutcome.FAILED and result.error_code == code
    assert result.reason is not None and result.reason.startswith(f"Twilio error {code}: ")
    assert "Unable to create record" not in result.reason
    assert len(fake.posts()) == 1 and rec.sleeps == []  # never retried


async def test_bad_credentials_postpone_without_failing_the_reminder(fake):
    settings = replace(make_settings(fake), twilio_auth_token="wrong")
    result, _ = await dial(fake, settings=settings)
    assert result.outcome is DialOutcome.RETRY_LATER and "20003" in (result.reason or "")
    assert len(fake.posts()) == 1


@pytest.mark.parametrize(
    ("number", "env", "reason"),
    [
        ("4155550134", "development", "not_e164"),
        ("+1 415 555 0134", "development", "not_e164"),
        ("+14155550199", "development", "not_allowlisted"),
        ("+14155550199", "test", "not_allowlisted"),
    ],
)
def test_numbers_refused_before_any_request(fake, number, env, reason):
    with pytest.raises(DialRefused) as info:
        check_number(make_settings(fake, VOICEPROMPT_ENV=env), number)
    assert info.value.reason == reason
    if reason == "not_allowlisted":
        assert "VOICEPROMPT_DIAL_ALLOWLIST" in str(info.value)


def test_production_dials_numbers_off_the_allowlist(fake):
    check_number(make_settings(fake, VOICEPROMPT_ENV="production"), "+14155550199")


def test_a_tenant_without_caller_id_cannot_call(fake):
    with pytest.raises(DialRefused, match="no caller_id"):
        call_params(make_settings(fake), 7, TO, replace(TENANT, caller_id=None))


def test_redaction():
    params = {"To": TO, "SipAuthPassword": "pw", "Url": f"https://x/?t={AUTH_TOKEN}", "E": ["a"]}
    assert redact(params, [AUTH_TOKEN]) == {
        "To": TO,
        "SipAuthPassword": MASK,
        "Url": f"https://x/?t={MASK}",
        "E": ["a"],
    }


async def test_every_exchange_is_logged_with_its_reminder_and_no_secrets(fake, engine):
    tenant, _ = await TenantStore(engine).create(TENANT)
    reminder = await ReminderStore(engine).create(
        tenant, TO, datetime(2031, 3, 4, 15, 0, tzinfo=UTC), "Doctor Grey"
    )
    settings = make_settings(fake)
    api_log = ApiLog(engine, secrets=[AUTH_TOKEN])
    fake.answer_next(Answer.error(20500))
    rec = Recorder()
    async with open_client(settings, api_log) as calls:
        with for_reminder(reminder.id):
            result = await place_call(
                calls,
                call_params(settings, reminder.id, TO, tenant),
                settings=settings,
                started_at=datetime.now(UTC),
                gate=rec.gate,
                sleep=rec.sleep,
            )
        with for_reminder(None):  # outside any reminder: logged without one
            await calls.list(to=TO, limit=1)
    assert result.outcome is DialOutcome.PLACED
    entries = await api_log.for_reminder(reminder.id)
    assert [(e.method, e.status) for e in entries] == [
        ("POST", 500),
        ("GET", 200),
        ("GET", 200),
        ("POST", 201),
    ]
    assert entries[0].request["To"] == TO and entries[0].request["StatusCallbackEvent"] == [
        "initiated",
        "ringing",
        "answered",
        "completed",
    ]
    assert json.loads(entries[3].response_body or "")["sid"] == result.call_sid
    assert "StartTime>" in entries[1].request
    everything = json.dumps([e.public_dict() for e in entries])
    assert AUTH_TOKEN not in everything and "Authorization" not in everything
    assert "Basic " not in everything


async def test_purge_keeps_fourteen_days(engine):
    api_log = ApiLog(engine)
    now = datetime.now(UTC)
    for age in (15, 13, 0):
        await api_log.start(
            method="GET",
            url="u",
            request={},
            reminder_id=None,
            started_at=now - timedelta(days=age),
        )
    assert await api_log.purge(now) == 1
    assert await api_log.purge(now, days=1) == 1

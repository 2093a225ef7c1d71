"""Twilio's webhooks, driven over real loopback HTTP with signed requests, as Twilio sends them.

Every answer is parsed with ElementTree and checked for its structure: which verbs, in which
order, how many passes of the message (counted by the "hello" clip that opens it), where the
menu and the skip-to-beep tone are. Events are written behind the answer (the outbox), so tests
drain it before they look at statuses and events.
"""

from __future__ import annotations

import asyncio
import logging
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

import server.calls.answers
import server.calls.outbox
import server.calls.webhooks
from server.calls.guard import LOCAL_TTL_S
from server.calls.outbox import Outbox, running
from server.calls.signature import sign
from server.keys import guard_key
from server.reminders import Reminder
from server.tenants import AMD_MODES
from tests.support.server import (
    PUBLIC_URL,
    Env,
    MakeEnv,
    database_down,
)

ANSWERED_BY = [
    "human",
    "unknown",
    None,  # AMD off: Twilio sends no AnsweredBy at all
    "machine_start",
    "machine_end_beep",
    "machine_end_silence",
    "machine_end_other",
    "fax",
]
MACHINES = {"machine_start", "machine_end_beep", "machine_end_silence", "machine_end_other"}
# A skip-to-beep tone helps only while a greeting may still be playing.
GREETING_MAY_PLAY = {None, "unknown", "machine_start"}
MESSAGE_WORDS = "Hello. Your appointment with Doctor Grey is at three p.m."


def kids(el: ET.Element) -> list[str]:
    return [child.tag for child in el]


def plays(el: ET.Element) -> list[str]:
    """URLs of the <Play> clips below ``el``, in order (tones have no URL)."""
    return [p.text or "" for p in el.iter("Play") if p.text]


def spoken(el: ET.Element) -> str:
    return " ".join(s.text or "" for s in el.iter("Say"))


def all_text(el: ET.Element) -> str:
    """Every word and attribute of the document, for "is this word anywhere?" checks."""
    parts: list[str] = []
    for node in el.iter():
        parts.append(node.text or "")
        parts.extend(node.attrib.values())
    return " ".join(parts).lower()


def gather_of(root: ET.Element) -> ET.Element:
    found = root.findall("Gather")
    assert len(found) == 1, ET.tostring(root)
    return found[0]


def call(
    answered_by: str | None = None, sid: str = "CA00000000000000000000000000000001"
) -> dict[str, str]:
    params = {"CallSid": sid, "AccountSid": "AC" + "0" * 32, "CallStatus": "in-progress"}
    if answered_by is not None:
        params["AnsweredBy"] = answered_by
    return params


def voice_path(rid: int) -> str:
    return f"/twilio/voice/{rid}"


def menu_urls(env: Env, rid: int, **state: int) -> tuple[str, str]:
    """The Gather action and the no-input Redirect the person view should point at."""
    q = {"tries": 0, "replays": 0, "repeats": 0, **state}
    action = (
        f"{PUBLIC_URL}/twilio/gather/{rid}?state=menu"
        f"&tries={q['tries']}&replays={q['replays']}&repeats={q['repeats']}"
    )
    return action, action + "&noinput=1"


def assert_person_view(env: Env, root: ET.Element, rid: int, loops: int, **state: int) -> None:
    """The message ``loops`` times with the menu after each pass, inside one Gather, then the
    Redirect to the no-input step."""
    body = [t for t in kids(root) if t not in ("Play", "Pause")]
    assert body == ["Gather", "Redirect"], kids(root)
    assert kids(root)[-2:] == ["Gather", "Redirect"]
    gather = gather_of(root)
    action, noinput = menu_urls(env, rid, **state)
    assert gather.get("numDigits") == "1"
    assert gather.get("input") == "dtmf"
    assert gather.get("action") == action
    redirect = root.find("Redirect")
    assert redirect is not None and redirect.text == noinput
    assert redirect.get("method") == "POST"
    urls = plays(gather)
    hello, press = env.url("hello"), env.url("vm-press")
    assert urls.count(hello) == loops
    # The menu (four keys, each "press ...") after every pass, so the first pass already says it.
    assert urls.count(press) == 4 * loops
    starts = [i for i, u in enumerate(urls) if u == hello]
    for k, start in enumerate(starts):
        end = starts[k + 1] if k + 1 < len(starts) else len(urls)
        assert urls[start:end].count(press) == 4
    for key in ("digits/1", "digits/5", "digits/9", "digits/star"):
        assert urls.count(env.url(key)) == loops


def assert_voicemail_view(env: Env, root: ET.Element, loops: int) -> None:
    assert "Gather" not in kids(root) and root.find(".//Gather") is None
    assert "Redirect" not in kids(root)
    assert kids(root)[-1] == "Hangup"
    assert "press" not in all_text(root)
    urls = plays(root)
    assert env.url("vm-press") not in urls
    # A machine hears the message at least twice, even when people get it once.
    assert urls.count(env.url("hello")) == max(loops, 2)
    assert urls.count(env.url("goodbye")) == max(loops, 2)
    assert urls[0] == env.url("hello")


def assert_tone(root: ET.Element, expected: bool, digit: str) -> None:
    tones = [p for p in root.iter("Play") if "digits" in p.attrib]
    if not expected:
        assert tones == [], ET.tostring(root)
        return
    first = root[0]
    assert first.tag == "Play" and first.get("digits") == digit and not (first.text or "").strip()
    assert len(tones) == 1
    assert root[1].tag == "Pause"  # the box answers the tone with its beep: let it


# --- the call URL ------------------------------------------------------------------------------


# Every skip-to-beep setting and loop count, each AMD mode in turn; the last combination once
# more in every mode, to show the mode changes nothing in the answer.
COMBINATIONS = [
    (skip, loops, AMD_MODES[(2 * loops + skip) % len(AMD_MODES)])
    for skip in (False, True)
    for loops in (1, 2, 3)
] + [(True, 2, mode) for mode in AMD_MODES]


@pytest.mark.parametrize("answered_by", ANSWERED_BY, ids=lambda v: v or "absent")
async def test_answer_for_every_amd_mode_skip_setting_and_loop_count(
    env: Env, reminder: Reminder, answered_by: str | None
) -> None:
    path = voice_path(reminder.id)
    same_setting: set[bytes] = set()
    for i, (skip, loops, mode) in enumerate(COMBINATIONS):
        digit = "*" if loops == 3 else "#"
        await env.set_tenant(amd_mode=mode, skip_to_beep=skip, loops=loops, beep_digit=digit)
        resp = await env.webhook(path, call(answered_by, env.new_call_sid()))
        raw = await resp.read()
        label = f"{answered_by=} {skip=} {loops=} {mode=}"
        assert resp.status == 200 and resp.content_type == "text/xml", label
        assert raw.startswith(b"<?xml"), label
        root = ET.fromstring(raw)
        assert root.tag == "Response"
        if i >= len(COMBINATIONS) - len(AMD_MODES):
            same_setting.add(raw)
        if answered_by == "fax":
            assert kids(root) == ["Hangup"], label
            continue
        assert_tone(root, skip and answered_by in GREETING_MAY_PLAY, digit)
        if answered_by in MACHINES:
            assert_voicemail_view(env, root, loops)
        else:
            assert_person_view(env, root, reminder.id, loops)
    # The AMD mode is a dialing parameter: the answer depends on AnsweredBy only.
    assert len(same_setting) == 1

    got = await env.fetch(reminder.id)
    expected = {"fax": "fax", **dict.fromkeys(MACHINES, "voicemail_left")}
    assert got.status == expected.get(answered_by or "", "in_progress")
    assert got.answered_by == answered_by
    answered = await env.events(reminder.id, "answered")
    assert len(answered) == len(COMBINATIONS)
    assert answered[-1].detail["answered_by"] == answered_by


async def test_an_unknown_answered_by_that_says_machine_never_hears_press(
    env: Env, reminder: Reminder
) -> None:
    root = await env.twiml(voice_path(reminder.id), call("machine_end_something_new"))
    assert_voicemail_view(env, root, env.tenant.loops)


async def test_the_same_call_url_request_twice_gets_the_same_answer(
    env: Env, reminder: Reminder
) -> None:
    first = await env.webhook(voice_path(reminder.id), call("human"))
    again = await env.webhook(voice_path(reminder.id), call("human"))
    assert await first.read() == await again.read()
    # One call, one "answered" event; another call for the same reminder is another event.
    other = "CA" + "f" * 32
    await env.webhook(voice_path(reminder.id), call("human", other))
    answered = await env.events(reminder.id, "answered")
    assert [e.call_sid for e in answered] == ["CA00000000000000000000000000000001", other]


async def test_an_unknown_reminder_gets_an_apology_not_an_error(env: Env) -> None:
    root = await env.twiml(voice_path(999_999), call("human"))
    assert kids(root) == ["Say", "Hangup"]
    assert "sorry" in spoken(root).lower()


# --- keypresses -------------------------------------------------------------------------------


async def answer_person(env: Env, rid: int, sid: str) -> ET.Element:
    root = await env.twiml(voice_path(rid), call("human", sid))
    assert_person_view(env, root, rid, env.tenant.loops)
    return root


async def press(env: Env, root: ET.Element, digits: str, sid: str) -> ET.Element:
    """What Twilio does after a key: POST Digits to the Gather's action URL."""
    action = gather_of(root).get("action") or ""
    return await env.twiml(env.relative(action), {**call("human", sid), "Digits": digits})


async def time_out(env: Env, root: ET.Element, sid: str) -> ET.Element:
    """What Twilio does when nobody presses anything: follow the Redirect."""
    redirect = root.find("Redirect")
    assert redirect is not None and redirect.text
    return await env.twiml(env.relative(redirect.text), call("human", sid))


@pytest.mark.parametrize(
    ("digit", "status", "clips"),
    [
        ("1", "confirmed", ["auth-thankyou", "goodbye"]),
        ("5", "cancelled", ["goodbye"]),
        ("9", "contact_requested", ["auth-thankyou", "goodbye"]),
    ],
)
async def test_a_decision_key_thanks_hangs_up_and_records_it(
    env: Env, reminder: Reminder, digit: str, status: str, clips: list[str]
) -> None:
    sid = env.new_call_sid()
    root = await press(env, await answer_person(env, reminder.id, sid), digit, sid)
    assert kids(root)[-1] == "Hangup"
    assert root.find(".//Gather") is None and root.find("Redirect") is None
    urls = plays(root)
    assert [u for u in urls if u in {env.url(c) for c in clips}] == [env.url(c) for c in clips]
    assert env.url("hello") not in urls  # not the message again
    got = await env.fetch(reminder.id)
    assert (got.status, got.outcome, got.call_sid) == (status, status, sid)
    [event] = await env.events(reminder.id, "keypress")
    assert event.detail["digits"] == digit
    assert event.call_sid == sid


async def test_the_repeat_key_plays_the_message_again(env: Env, reminder: Reminder) -> None:
    sid = env.new_call_sid()
    await env.set_tenant(loops=3)
    root = await press(env, await answer_person(env, reminder.id, sid), "*", sid)
    assert_person_view(env, root, reminder.id, 3, repeats=1)
    root = await press(env, root, "*", sid)
    assert_person_view(env, root, reminder.id, 3, repeats=2)
    got = await env.fetch(reminder.id)
    assert got.status == "in_progress"


async def test_other_keys_get_sorry_and_the_menu_three_times_at_most(
    env: Env, reminder: Reminder
) -> None:
    sid = env.new_call_sid()
    root = await answer_person(env, reminder.id, sid)
    for tries, key in enumerate(("7", "#"), start=1):
        root = await press(env, root, key, sid)
        gather = gather_of(root)
        action, noinput = menu_urls(env, reminder.id, tries=tries)
        assert gather.get("action") == action
        redirect = root.find("Redirect")
        assert redirect is not None and redirect.text == noinput
        assert kids(root) == ["Gather", "Redirect"]
        assert "sorry" in spoken(gather).lower()
        urls = plays(gather)
        assert urls.count(env.url("vm-press")) == 4  # the menu once, without the message
        assert env.url("hello") not in urls
    root = await press(env, root, "0", sid)
    assert kids(root)[-1] == "Hangup" and root.find(".//Gather") is None
    assert plays(root)[-1] == env.url("goodbye")
    got = await env.fetch(reminder.id)
    assert got.status == "heard_no_keypress"
    keys = [e.detail["digits"] for e in await env.events(reminder.id, "keypress")]
    assert keys == ["7", "#", "0"]


async def test_no_input_plays_the_message_once_more_then_goodbye(
    env: Env, reminder: Reminder
) -> None:
    sid = env.new_call_sid()
    root = await time_out(env, await answer_person(env, reminder.id, sid), sid)
    assert_person_view(env, root, reminder.id, env.tenant.loops, replays=1)
    assert (await env.fetch(reminder.id)).status == "in_progress"
    root = await time_out(env, root, sid)
    assert kids(root)[-1] == "Hangup" and root.find(".//Gather") is None
    assert plays(root)[-1] == env.url("goodbye")
    got = await env.fetch(reminder.id)
    assert (got.status, got.outcome) == ("heard_no_keypress", "heard_no_keypress")
    assert len(await env.events(reminder.id, "no_input")) == 2


async def test_a_key_after_no_input_still_counts(env: Env, reminder: Reminder) -> None:
    sid = env.new_call_sid()
    root = await time_out(env, await answer_person(env, reminder.id, sid), sid)
    await press(env, root, "1", sid)
    assert (await env.fetch(reminder.id)).status == "confirmed"


async def test_a_repeated_gather_request_is_one_event_and_the_same_answer(
    env: Env, reminder: Reminder
) -> None:
    sid = env.new_call_sid()
    root = await answer_person(env, reminder.id, sid)
    first = await press(env, root, "1", sid)
    again = await press(env, root, "1", sid)
    assert ET.tostring(first) == ET.tostring(again)
    assert len(await env.events(reminder.id, "keypress")) == 1
    assert (await env.fetch(reminder.id)).status == "confirmed"


# --- status and AMD callbacks -----------------------------------------------------------------


async def status_callback(
    env: Env, rid: int | None, sid: str, status: str, seq: int, **extra: str
) -> None:
    path = "/twilio/status" + (f"?reminder={rid}" if rid is not None else "")
    params = {
        "CallSid": sid,
        "CallStatus": status,
        "SequenceNumber": str(seq),
        "Timestamp": f"Thu, 26 Nov 2026 10:00:0{seq} +0000",
        **extra,
    }
    resp = await env.webhook(path, params)
    body = await resp.read()
    assert resp.status == 200 and resp.content_type == "text/xml", body
    assert body.startswith(b"<?xml") and ET.fromstring(body).tag == "Response"


@pytest.mark.parametrize(
    ("call_status", "answered_by", "outcome"),
    [
        ("no-answer", None, "no_answer"),
        ("busy", None, "busy"),
        ("failed", None, "failed"),
        ("canceled", None, "call_canceled"),
        ("completed", None, "heard_no_keypress"),
        ("completed", "human", "heard_no_keypress"),
        ("completed", "machine_end_beep", "voicemail_left"),
        ("completed", "fax", "fax"),
    ],
)
async def test_final_statuses_become_outcomes(
    env: Env, reminder: Reminder, call_status: str, answered_by: str | None, outcome: str
) -> None:
    sid = env.new_call_sid()
    extra = {"AnsweredBy": answered_by} if answered_by else {}
    await status_callback(env, reminder.id, sid, "initiated", 0)
    await status_callback(env, reminder.id, sid, "ringing", 1)
    assert (await env.fetch(reminder.id)).status == "in_progress"
    await status_callback(env, reminder.id, sid, call_status, 2, CallDuration="31", **extra)
    got = await env.fetch(reminder.id)
    assert (got.status, got.outcome, got.call_sid) == (outcome, outcome, sid)
    events = await env.events(reminder.id, "status")
    assert [e.detail["CallStatus"] for e in events] == ["initiated", "ringing", call_status]


async def test_a_voicemail_left_by_the_flow_stands_when_completed_lacks_answered_by(
    env: Env, reminder: Reminder
) -> None:
    sid = env.new_call_sid()
    await env.twiml(voice_path(reminder.id), call("machine_end_beep", sid))
    await env.drain()
    # Found by its CallSid (the callback URL carries no reminder id).
    await status_callback(env, None, sid, "completed", 5)
    got = await env.fetch(reminder.id)
    assert got.status == "voicemail_left"


async def test_repeated_status_callbacks_are_stored_once(env: Env, reminder: Reminder) -> None:
    sid = env.new_call_sid()
    for _ in range(3):
        await status_callback(env, reminder.id, sid, "ringing", 1)
        await status_callback(env, reminder.id, sid, "no-answer", 2)
    events = await env.events(reminder.id, "status")
    assert [e.detail["CallStatus"] for e in events] == ["ringing", "no-answer"]
    assert (await env.fetch(reminder.id)).status == "no_answer"


async def test_out_of_order_callbacks_do_not_regress_the_status(
    env: Env, reminder: Reminder
) -> None:
    sid = env.new_call_sid()
    await answer_person(env, reminder.id, sid)
    await status_callback(env, reminder.id, sid, "completed", 4, CallDuration="40")
    for seq, late in ((1, "ringing"), (0, "initiated"), (2, "in-progress"), (3, "answered")):
        await status_callback(env, reminder.id, sid, late, seq)
    got = await env.fetch(reminder.id)
    assert (got.status, got.outcome) == ("heard_no_keypress", "heard_no_keypress")
    assert len(await env.events(reminder.id, "status")) == 5


async def test_a_late_answered_event_does_not_regress_a_final_status(
    env: Env, reminder: Reminder, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The answer's event waits in the outbox (database slow) while "completed" is stored."""
    monkeypatch.setattr(server.calls.outbox, "RETRY_S", 0.02)
    sid = env.new_call_sid()
    real = env.outbox.store

    class Unavailable:
        async def record(self, *args: Any, **kwargs: Any) -> bool:
            raise ConnectionError("database unavailable")

    env.outbox.store = Unavailable()  # type: ignore[assignment]
    await answer_person(env, reminder.id, sid)
    await status_callback(env, reminder.id, sid, "completed", 3, CallDuration="40")
    env.outbox.store = real
    got = await env.fetch(reminder.id)
    assert (got.status, got.outcome) == ("heard_no_keypress", "heard_no_keypress")
    assert len(await env.events(reminder.id, "answered")) == 1


async def test_a_decision_is_never_overwritten_by_a_later_callback(
    env: Env, reminder: Reminder
) -> None:
    sid = env.new_call_sid()
    await press(env, await answer_person(env, reminder.id, sid), "1", sid)
    await status_callback(env, reminder.id, sid, "completed", 4, AnsweredBy="machine_end_beep")
    await status_callback(env, reminder.id, sid, "failed", 5)
    await status_callback(env, reminder.id, sid, "ringing", 1)
    await env.twiml(voice_path(reminder.id), call("machine_end_beep", sid))  # a stray retry
    await post_amd(env, reminder.id, sid, "machine_end_beep")
    got = await env.fetch(reminder.id)
    assert (got.status, got.outcome) == ("confirmed", "confirmed")


async def post_amd(env: Env, rid: int | None, sid: str, answered_by: str) -> None:
    path = "/twilio/amd" + (f"?reminder={rid}" if rid is not None else "")
    params = {"CallSid": sid, "AnsweredBy": answered_by, "MachineDetectionDuration": "4210"}
    resp = await env.webhook(path, params)
    body = await resp.read()
    assert resp.status == 200 and resp.content_type == "text/xml" and body.startswith(b"<?xml")
    assert ET.fromstring(body).tag == "Response"


async def test_asynchronous_amd_results_are_stored_once_and_used_later(
    env: Env, reminder: Reminder
) -> None:
    sid = env.new_call_sid()
    await answer_person(env, reminder.id, sid)  # async AMD: the call URL had no AnsweredBy yet
    await env.drain()
    for _ in range(2):
        await post_amd(env, None, sid, "machine_end_silence")  # found by CallSid
    [event] = await env.events(reminder.id, "amd")
    assert event.detail == {
        "AnsweredBy": "machine_end_silence",
        "MachineDetectionDuration": "4210",
    }
    assert (await env.fetch(reminder.id)).answered_by == "machine_end_silence"
    await status_callback(env, reminder.id, sid, "completed", 3)
    assert (await env.fetch(reminder.id)).status == "voicemail_left"


# --- signatures -------------------------------------------------------------------------------


def webhook_paths(rid: int) -> list[str]:
    return [
        voice_path(rid),
        f"/twilio/gather/{rid}?state=menu&tries=0&replays=0&repeats=0",
        f"/twilio/status?reminder={rid}",
        f"/twilio/amd?reminder={rid}",
    ]


async def test_unsigned_wrongly_signed_and_replayed_requests_are_refused_and_logged(
    env: Env, reminder: Reminder, caplog: pytest.LogCaptureFixture
) -> None:
    other = await env.reminder()
    params = {**call("human"), "Digits": "1", "CallStatus": "completed"}
    loopback = str(env.client.make_url("/")).rstrip("/")
    for path in webhook_paths(reminder.id):
        target = path.replace(f"/{reminder.id}", f"/{other.id}").replace(
            f"={reminder.id}", f"={other.id}"
        )
        attempts: list[dict[str, Any]] = [
            {"unsigned": True},
            {"signature": "bm90IGEgc2lnbmF0dXJl"},
            {"signed_url": PUBLIC_URL + target},  # replayed to another URL
            {"signed_url": loopback + path},  # the URL the app sees, not the public one
            {"signed_url": PUBLIC_URL + path + ("&x=1" if "?" in path else "?x=1")},
            {"signed_url": PUBLIC_URL.replace("https", "http") + path},
        ]
        for how in attempts:
            caplog.clear()
            with caplog.at_level(logging.WARNING, logger="voiceprompt.webhooks"):
                resp = await env.webhook(path, params, **how)
            assert resp.status == 403, (path, how)
            assert any("refused" in r.getMessage() for r in caplog.records), (path, how)
        # Tampered parameters under a good signature for the original ones.
        good = env.settings.public_url + path
        sig = sign(env.settings.twilio_auth_token or "", good, params)
        resp = await env.webhook(path, {**params, "Digits": "5"}, signature=sig)
        assert resp.status == 403
        # ...and the same request correctly signed goes through.
        resp = await env.webhook(path, params)
        assert resp.status == 200, path
    await env.drain()
    assert (await env.fetch(other.id)).status == "pending"


async def test_without_an_auth_token_every_webhook_is_refused(make_env: MakeEnv) -> None:
    env = await make_env(TWILIO_AUTH_TOKEN="")
    rem = await env.reminder()
    for path in webhook_paths(rem.id):
        resp = await env.client.post(path, data=call("human"), headers={})
        assert resp.status == 403


async def test_signature_checking_can_be_switched_off_in_development(make_env: MakeEnv) -> None:
    env = await make_env(VOICEPROMPT_VALIDATE_SIGNATURES="false", VOICEPROMPT_ENV="development")
    rem = await env.reminder()
    resp = await env.webhook(voice_path(rem.id), call("human"), unsigned=True)
    assert resp.status == 200
    assert_person_view(env, ET.fromstring(await resp.read()), rem.id, env.tenant.loops)


# --- failures never reach the callee ----------------------------------------------------------


async def test_a_deleted_clip_is_spoken_and_alerted(env: Env, reminder: Reminder) -> None:
    env.clip_path("hello").unlink()
    for answered_by in ("human", "machine_end_beep"):
        began = time.perf_counter()
        root = await env.twiml(voice_path(reminder.id), call(answered_by, env.new_call_sid()))
        assert time.perf_counter() - began < 1.0
        urls = plays(root)
        assert env.url("hello") not in urls
        assert env.url("your") in urls  # the other clips still play
        says = [s.text or "" for s in root.iter("Say")]
        assert sum(1 for s in says if s.lower().startswith("hello")) == env.tenant.loops
    alerts = await env.events(reminder.id, "alert")
    assert len(alerts) == 2
    assert alerts[0].detail["reason"] == "clip unavailable"
    assert alerts[0].detail["clips"] == [
        {
            "clip_id": str(env.clips["hello"].id),
            "text": env.clips["hello"].transcript,
            "why": "not found: the file is gone from the media folder",
        }
    ]


async def test_a_clip_deleted_while_serving_is_noticed_within_the_ttl(
    env: Env, reminder: Reminder
) -> None:
    """Found clips are trusted for LOCAL_TTL_S (no stat per clip per call), then checked again."""
    guard = env.app[guard_key]
    start = datetime.now(UTC)
    now = [start]
    guard.now = lambda: now[0]
    path = voice_path(reminder.id)
    assert env.url("hello") in plays(await env.twiml(path, call("human")))
    env.clip_path("hello").unlink()
    now[0] = start + timedelta(seconds=LOCAL_TTL_S / 2)
    assert env.url("hello") in plays(await env.twiml(path, call("human")))
    now[0] = start + timedelta(seconds=LOCAL_TTL_S * 1.5)
    root = await env.twiml(path, call("human"))
    assert env.url("hello") not in plays(root) and "Hello." in spoken(root)
    assert len(await env.events(reminder.id, "alert")) == 1


async def test_the_outbox_writes_in_batches_and_drops_only_what_cannot_be_written(
    env: Env, reminder: Reminder
) -> None:
    other = await env.reminder()
    await env.store.record(reminder.id, "status", {}, dedupe_key="status:CA1:ringing:1")
    outbox = env.outbox
    outbox.add(reminder.id, "note", {"n": 1})
    outbox.add(reminder.id, "status", {"n": 2}, dedupe_key="status:CA1:ringing:1")  # a repeat
    outbox.add(999_999, "note", {"n": 3})  # no such reminder
    outbox.add(other.id, "note", {"n": 4}, status="in_progress")
    for n in range(5, 5 + server.calls.outbox.BATCH + 3):  # more than one batch
        outbox.add(reminder.id, "note", {"n": n})
    await env.drain()
    assert len(outbox) == 0
    notes = [e.detail["n"] for e in await env.events(reminder.id, "note")]
    assert notes == [1, *range(5, 5 + server.calls.outbox.BATCH + 3)]
    assert len(await env.events(reminder.id, "status")) == 1
    assert [e.detail for e in await env.events(other.id, "note")] == [{"n": 4}]
    assert (await env.fetch(other.id)).status == "in_progress"


async def test_the_outbox_groups_events_and_stops_at_shutdown(env: Env, reminder: Reminder) -> None:
    outbox = Outbox(env.store)
    writes: list[int] = []
    record_many = env.store.record_many

    async def counting(events: Any) -> None:
        writes.append(len(events))
        await record_many(events)

    env.store.record_many = counting  # type: ignore[method-assign]
    before = asyncio.all_tasks()
    async with running(outbox):
        (writer,) = asyncio.all_tasks() - before
        for n in range(5):  # a burst of webhooks: one transaction, not five
            outbox.add(reminder.id, "note", {"n": n})
            await asyncio.sleep(0)
        await asyncio.sleep(server.calls.outbox.LINGER_S * 3)
        outbox.add(reminder.id, "note", {"n": 5})
        await outbox.drain()  # written at once, then the server stops with nothing queued
    assert writer.done()  # the writer stopped rather than being left behind
    assert writes == [5, 1]
    # drain() does not wait for the linger (shutdown, tests): with an hour's linger it returns
    # at once.
    server.calls.outbox.LINGER_S, linger = 3600.0, server.calls.outbox.LINGER_S
    try:
        async with running(outbox):
            outbox.add(reminder.id, "note", {"n": 6})
            await asyncio.sleep(0)
            async with asyncio.timeout(2):
                await outbox.drain()
    finally:
        server.calls.outbox.LINGER_S = linger
    assert writes == [5, 1, 1]
    notes = [e.detail["n"] for e in await env.events(reminder.id, "note")]
    assert notes == list(range(7))


@pytest.fixture
def fast_retries(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(server.calls.outbox, "RETRY_S", 0.02)
    yield


async def timed(env: Env, path: str, params: dict[str, str]) -> tuple[float, int, str, bytes]:
    began = time.perf_counter()
    resp = await env.webhook(path, params)
    body = await resp.read()
    return time.perf_counter() - began, resp.status, resp.content_type, body


@pytest.mark.parametrize("how", ["never-answers", "closed-port"])
async def test_a_database_gone_mid_call_still_gets_valid_twiml_within_a_second(
    env: Env, reminder: Reminder, how: str, fast_retries: None
) -> None:
    sid = env.new_call_sid()
    root = await answer_person(env, reminder.id, sid)
    action = env.relative(gather_of(root).get("action") or "")
    fresh = await env.reminder()  # never answered: no words were built for it
    await env.drain()
    requests: list[tuple[str, dict[str, str], str | None]] = [
        (action, {**call("human", sid), "Digits": "1"}, MESSAGE_WORDS),
        (voice_path(reminder.id), call("machine_end_beep", sid), MESSAGE_WORDS),
        (voice_path(fresh.id), call("human"), None),
        (f"/twilio/status?reminder={reminder.id}", {"CallSid": sid, "CallStatus": "busy"}, ""),
        (f"/twilio/amd?reminder={reminder.id}", {"CallSid": sid, "AnsweredBy": "human"}, ""),
    ]
    async with database_down(env, how):
        # All at once, as calls keep coming while the database is away.
        results = await asyncio.gather(*(timed(env, path, params) for path, params, _ in requests))
    for (path, _, expected), (elapsed, status, content_type, body) in zip(
        requests, results, strict=True
    ):
        assert elapsed < 1.0, (path, elapsed)
        assert status == 200 and content_type == "text/xml", (path, status, body)
        assert body.startswith(b"<?xml"), body
        root = ET.fromstring(body)
        assert root.tag == "Response"
        if expected == "":  # a callback: an empty answer
            assert len(root) == 0
        elif expected:
            assert kids(root) == ["Say", "Hangup"] and spoken(root) == expected
        else:
            assert kids(root) == ["Say", "Hangup"] and "sorry" in spoken(root).lower()
    # Once the database is back, what happened meanwhile is written.
    errors = {e.detail["path"]: e for e in await env.events(reminder.id, "error")}
    assert sorted(errors) == sorted([f"/twilio/gather/{reminder.id}", voice_path(reminder.id)])
    # The key pressed while the database was away is kept, to be replayed.
    keypress = errors[f"/twilio/gather/{reminder.id}"]
    assert keypress.detail["digits"] == "1" and keypress.call_sid == sid
    assert keypress.detail["query"] == action.split("?", 1)[1]
    assert len(await env.events(fresh.id, "error")) == 1
    [queued] = await env.events(reminder.id, "status")
    assert queued.detail["CallStatus"] == "busy"
    assert [e.detail for e in await env.events(reminder.id, "amd")] == [{"AnsweredBy": "human"}]


async def test_any_exception_while_planning_gets_the_message_or_an_apology(
    env: Env, reminder: Reminder, monkeypatch: pytest.MonkeyPatch
) -> None:
    sid = env.new_call_sid()
    await answer_person(env, reminder.id, sid)
    fresh = await env.reminder()

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("planner bug")

    monkeypatch.setattr(server.calls.answers, "build_plan", broken)
    root = await env.twiml(voice_path(reminder.id), call("machine_end_beep", sid))
    assert kids(root) == ["Say", "Hangup"] and spoken(root) == MESSAGE_WORDS
    root = await env.twiml(voice_path(fresh.id), call("human"))
    assert kids(root) == ["Say", "Hangup"] and "sorry" in spoken(root).lower()
    [error] = await env.events(fresh.id, "error")
    assert "planner bug" in error.detail["error"]


async def test_concurrent_answers_are_each_whole(env: Env, reminder: Reminder) -> None:
    """Thirty concurrent answers for one reminder: every one is whole and valid."""
    results = await asyncio.gather(
        *(env.twiml(voice_path(reminder.id), call("human", env.new_call_sid())) for _ in range(30))
    )
    for root in results:
        assert_person_view(env, root, reminder.id, env.tenant.loops)


async def test_an_unknown_reminder_does_not_hold_up_later_events(
    env: Env, reminder: Reminder
) -> None:
    """Its error event cannot be stored (no such reminder): it is dropped, not retried for ever
    in front of every other event."""
    root = await env.twiml(voice_path(999_999), call("human"))
    assert "sorry" in spoken(root).lower()
    resp = await env.webhook(voice_path(2**31), call("human"))  # no id of ours: not a call URL
    assert resp.status == 404
    await answer_person(env, reminder.id, env.new_call_sid())
    assert len(await env.events(reminder.id, "answered")) == 1


async def test_a_machine_hears_the_message_twice_when_people_hear_it_once(
    env: Env, reminder: Reminder
) -> None:
    await env.set_tenant(loops=1)
    person = await env.twiml(voice_path(reminder.id), call("human", env.new_call_sid()))
    assert plays(person).count(env.url("hello")) == 1
    machine = await env.twiml(voice_path(reminder.id), call("machine_end_beep", env.new_call_sid()))
    assert plays(machine).count(env.url("hello")) == 2


async def test_a_machine_still_hears_the_words_twice_when_the_database_is_gone(
    env: Env, reminder: Reminder, fast_retries: None
) -> None:
    sid = env.new_call_sid()
    first = await env.twiml(voice_path(reminder.id), call("machine_end_beep", sid))
    assert_voicemail_view(env, first, env.tenant.loops)
    await env.drain()
    async with database_down(env, "closed-port"):
        root = await env.twiml(voice_path(reminder.id), call("machine_end_beep", sid))
    assert kids(root) == ["Say", "Pause", "Say", "Hangup"]
    words = [s.text for s in root.iter("Say")]
    assert words[0] == words[1] and words[0]

"""Stitched delivery, one voice per sentence, and the preview as the call: through the webhooks,
with the real Asterisk voice, local storage and the app's own /media/ route."""

from __future__ import annotations

import asyncio
import io
import time
import xml.etree.ElementTree as ET

import numpy as np
import soundfile as sf

from server.calls.answers import Call
from server.calls.preview import preview_call
from server.calls.voices import VoiceCache
from server.keys import audio_key
from tests.support.server import STITCHED, Env, MakeEnv

# Every word recorded by the test voice (tests/support/server.py SOUNDS): three sentences, one
# with a comma, so each becomes one stitched file.
RECORDED = "Hello, hello. Your {appointment:time} is at {appointment:time}. Goodbye."
RATE = 22050


def first_pass(doc: str) -> list[ET.Element]:
    """The verbs of the first pass of the message (up to the first loop pause)."""
    root = ET.fromstring(doc)
    gather = root.find("Gather")
    verbs = list(gather if gather is not None else root)
    out: list[ET.Element] = []
    for verb in verbs:
        if verb.tag == "Pause" and out:
            break
        out.append(verb)
    return out


async def decoded(env: Env, url: str) -> np.ndarray:
    resp = await env.client.get(env.relative(url))
    assert resp.status == 200, url
    assert resp.content_type == "audio/mpeg"
    assert "immutable" in resp.headers["Cache-Control"]
    samples, rate = sf.read(io.BytesIO(await resp.read()), dtype="float64")
    assert rate == RATE
    return np.asarray(samples, dtype=np.float64)


def trailing_silence_ms(x: np.ndarray, floor: float = 10 ** (-50 / 20)) -> int:
    loud = np.flatnonzero(np.abs(x) > floor)
    return round(1000 * (x.size - 1 - loud[-1]) / RATE) if loud.size else 0


def leading_silence_ms(x: np.ndarray, floor: float = 10 ** (-50 / 20)) -> int:
    loud = np.flatnonzero(np.abs(x) > floor)
    return round(1000 * loud[0] / RATE) if loud.size else 0


def longest_inner_silence_ms(x: np.ndarray, floor: float = 10 ** (-50 / 20)) -> int:
    loud = np.flatnonzero(np.abs(x) > floor)
    gaps = np.diff(loud)
    return round(1000 * int(gaps.max()) / RATE) if gaps.size else 0


async def stitched_env(make_env: MakeEnv) -> Env:
    from dataclasses import replace

    tenant = replace(STITCHED, template_human=RECORDED, template_voicemail=RECORDED)
    return await make_env(tenant=tenant)


async def test_a_recorded_sentence_plays_as_one_file_with_its_pauses_inside(
    make_env: MakeEnv,
) -> None:
    env = await stitched_env(make_env)
    reminder = await env.reminder()
    doc = await env.settled(reminder.id)
    verbs = first_pass(doc)
    # The message's three sentences, then the menu: its sentences have unrecorded words, so the
    # fallback voice says them, whole and in one <Say> (it pauses at each full stop itself).
    assert [v.tag for v in verbs] == ["Play"] * 3 + ["Say"], doc
    assert (verbs[3].text or "").count(". ") == 3
    urls = [v.text or "" for v in verbs[:3]]
    assert all("/media/clips/sentences/" in u for u in urls), urls
    hello, appointment, goodbye = [await decoded(env, u) for u in urls]
    # The comma pause inside "Hello, hello." and the full stop's pause at its end survive:
    # <Pause> could not say either (whole seconds; under 700 ms it was dropped).
    assert longest_inner_silence_ms(hello) >= 200
    assert trailing_silence_ms(hello) >= 400
    assert trailing_silence_ms(appointment) >= 400
    # The last sentence of a pass has no pause of its own: the loop pause follows.
    assert trailing_silence_ms(goodbye) < 200
    # A machine gets the same sentence files (a voicemail pass has no menu).
    machine = [v.text for v in first_pass(await env.settled(reminder.id, "machine_end_beep"))]
    assert machine == urls


async def test_a_sentence_is_rendered_once_however_many_calls_say_it(make_env: MakeEnv) -> None:
    env = await stitched_env(make_env)
    audio = env.app[audio_key]
    reminders = [await env.reminder() for _ in range(4)]
    first = await env.settled(reminders[0].id)
    rendered = audio.stitcher.renders
    assert rendered >= 3  # the three sentences of the message, plus the menu's recorded ones
    for r in reminders[1:]:
        assert await env.answer(r.id) == first.replace(
            f"/twilio/gather/{reminders[0].id}", f"/twilio/gather/{r.id}"
        )
    assert audio.stitcher.renders == rendered


async def test_one_voice_per_sentence_never_alternating_inside_one(make_env: MakeEnv) -> None:
    # The default test template: "Your appointment with Doctor Grey is at three p.m." has
    # unrecorded words ("appointment", the name), so the fallback voice says all of it.
    env = await make_env(tenant=STITCHED)
    reminder = await env.reminder()
    verbs = first_pass(await env.settled(reminder.id))
    assert [v.tag for v in verbs][:2] == ["Play", "Say"]
    assert (verbs[1].text or "").startswith("Your appointment with Doctor Grey is at three p.m")
    # Word by word, the same sentence alternates between the actor and text-to-speech.
    await env.set_tenant(fallback="word", delivery="clips")
    words = first_pass(await env.answer(reminder.id))
    tags = [v.tag for v in words if v.tag != "Pause"]
    switches = sum(a != b for a, b in zip(tags, tags[1:], strict=False))
    assert switches >= 2, tags


async def test_a_deleted_sentence_file_is_rendered_again_within_the_answer(
    make_env: MakeEnv,
) -> None:
    env = await stitched_env(make_env)
    reminder = await env.reminder()
    urls = [v.text or "" for v in first_pass(await env.settled(reminder.id)) if v.tag == "Play"]
    assert len(urls) == 3
    storage = env.runtime.storage
    for url in urls:
        storage.path(url.rsplit("/media/", 1)[1]).unlink()  # type: ignore[attr-defined]
    started = time.monotonic()
    again = [v.text or "" for v in first_pass(await env.answer(reminder.id)) if v.tag == "Play"]
    assert time.monotonic() - started < 1.0
    assert again == urls
    for url in again:
        assert (await decoded(env, url)).size > 0


async def test_the_preview_is_the_call(make_env: MakeEnv) -> None:
    env = await stitched_env(make_env)
    reminder = await env.reminder()
    doc = await env.settled(reminder.id)
    audio = env.app[audio_key]
    view = await VoiceCache(env.runtime.catalogue).get(env.tenant.voice, env.tenant.slug)
    subject = Call(
        reminder.id, env.tenant, reminder.appointment_at, reminder.provider, view, reminder.values
    )
    preview = await preview_call(audio, env.settings.public_url, subject, "human")
    # The same document as the call URL answered, so the same audio: the line, played.
    assert preview.answer.twiml == doc
    call_audio = await audio.play(doc)
    assert preview.playback is not None and call_audio.skipped == ()
    mp3, rate = sf.read(io.BytesIO(preview.mp3), dtype="int16")
    assert abs(mp3.size / rate * 1000 - call_audio.duration_ms) <= 0.02 * call_audio.duration_ms
    # Message and menu, each pass: the menu's words are heard too.
    heard = [h.verb for h in call_audio.heard]
    assert heard.count("play") >= 2 * 3


async def test_concurrent_first_calls_render_each_sentence_once(make_env: MakeEnv) -> None:
    env = await stitched_env(make_env)
    audio = env.app[audio_key]
    reminders = [await env.reminder() for _ in range(6)]
    docs = await asyncio.gather(*(env.answer(r.id) for r in reminders))
    assert all(d.startswith("<?xml") for d in docs)
    while audio._background:  # renders that outlived an answer's budget finish on their own
        await asyncio.sleep(0.05)
    settled = await env.answer(reminders[0].id)
    sentences = {
        p.text for p in ET.fromstring(settled).iter("Play") if "/sentences/" in (p.text or "")
    }
    # However the six answers interleaved, each sentence was rendered exactly once.
    assert audio.stitcher.renders == len(sentences) >= 3


async def test_the_pause_after_a_said_sentence_leads_the_next_recorded_one(
    make_env: MakeEnv,
) -> None:
    from dataclasses import replace

    said_first = "Your appointment with {provider} is at {appointment:time}. Hello, hello."
    env = await make_env(tenant=replace(STITCHED, template_human=said_first))
    reminder = await env.reminder()
    verbs = first_pass(await env.settled(reminder.id))
    assert [v.tag for v in verbs][:2] == ["Say", "Play"]
    hello = await decoded(env, verbs[1].text or "")
    # A <Say> carries no pause after it and <Pause> has whole seconds only: the full stop's
    # pause is the head of the next stitched file.
    assert 400 <= leading_silence_ms(hello) <= 700

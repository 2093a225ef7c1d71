"""voicebank.render: Plan -> MP3 from cached clips, real pauses, fades, TTS, no process per run."""

from __future__ import annotations

import subprocess
from collections import Counter

import numpy as np
import pytest

from prompts.models import ClipSegment, PauseSegment, Plan, SaySegment, Segment, Variant
from tests.support.audio import clip, decode, wav_bytes
from voicebank import levels, pcm
from voicebank.errors import ClipUnavailable, VoiceBankError
from voicebank.ingest import ingest_bytes
from voicebank.render import RENDER_RATE, Renderer
from voicebank.tts import EspeakTts, PlaceholderTts, Tts, default_tts, parse_wav_stream

RATE = RENDER_RATE
# lameenc writes no gapless tag: decoders add its delay (~1100 samples at 22.05 kHz, ~50 ms)
# and pad the last frame (up to 1152 samples, ~52 ms).
ENCODER_SLACK_MS = 110


@pytest.fixture(scope="module")
def masters() -> dict[str, bytes]:
    return {
        name: ingest_bytes(wav_bytes(clip(ms, f0=f0)), f"{name}.wav").master
        for name, ms, f0 in (("hello", 500, 120.0), ("at", 250, 180.0), ("three", 700, 150.0))
    }


class Store:
    """load_master for tests: counts every load."""

    def __init__(self, masters: dict[str, bytes]) -> None:
        self.masters = masters
        self.loads: Counter[str] = Counter()

    def __call__(self, clip_id: str) -> bytes:
        self.loads[clip_id] += 1
        return self.masters[clip_id]


def _clip(clip_id: str) -> ClipSegment:
    return ClipSegment(clip_id, clip_id, Variant.ANY, 0)


def _plan(*segments: Segment, loops: int = 1, loop_pause_ms: int = 0) -> Plan:
    return Plan(tuple(segments), loops, loop_pause_ms, "", (), 0)


def _n(ms: float) -> int:
    return round(RATE * ms / 1000)


def test_render_duration_is_the_sum_of_the_segments(masters):
    store = Store(masters)
    renderer = Renderer(store, tts=PlaceholderTts())
    plan = _plan(
        _clip("hello"),
        PauseSegment(300),
        _clip("at"),
        SaySegment("Doctor Who", 0),
        _clip("three"),
        loops=2,
        loop_pause_ms=1000,
    )
    expected = sum(
        renderer.clip_pcm(s.clip_id).size
        if isinstance(s, ClipSegment)
        else renderer.tts.speak(s.text).size
        if isinstance(s, SaySegment)
        else _n(s.ms)
        for s in plan.looped_segments()
    )
    audio = renderer.render_pcm(plan)
    assert audio.dtype == np.int16 and audio.size == expected
    mp3 = renderer.render(plan)
    decoded, rate = decode(mp3)
    assert rate == RATE
    extra_ms = 1000 * (decoded.size - expected) / RATE
    assert -5 <= extra_ms <= ENCODER_SLACK_MS


def test_pauses_are_really_silent_and_joins_are_faded(masters):
    renderer = Renderer(Store(masters), tts=PlaceholderTts())
    plan = _plan(_clip("hello"), PauseSegment(500), _clip("three"))
    audio = renderer.render_pcm(plan)
    first = renderer.clip_pcm("hello").size
    assert not audio[first : first + _n(500)].any()  # digital silence, every sample
    # Every piece starts and ends faded: no step at the joins.
    for edge in (0, first - 1, first + _n(500), audio.size - 1):
        assert abs(int(audio[edge])) < 200
    # And still silent after MP3 (away from the codec's pre-echo at the pause's edges).
    decoded, _ = decode(renderer.render(plan))
    delay = _n(50)  # ~ the encoder delay: content arrives about this late
    middle = decoded[delay + first + _n(100) : delay + first + _n(400)]
    assert levels.peak_dbfs(middle) < -60


def test_loops_repeat_the_pass_with_the_loop_pause(masters):
    renderer = Renderer(Store(masters), tts=PlaceholderTts())
    one = renderer.render_pcm(_plan(_clip("hello"), _clip("at")))
    two = renderer.render_pcm(_plan(_clip("hello"), _clip("at"), loops=2, loop_pause_ms=700))
    assert np.array_equal(two, np.concatenate((one, np.zeros(_n(700), np.int16), one)))


@pytest.mark.parametrize("engine", ["espeak", "placeholder"])
def test_say_segments_are_audible(masters, engine):
    tts: Tts = PlaceholderTts()
    if engine == "espeak":
        if not EspeakTts.available():
            pytest.skip("espeak-ng is not installed")
        tts = EspeakTts()
    renderer = Renderer(Store(masters), tts=tts)
    audio = renderer.render_pcm(
        _plan(PauseSegment(200), SaySegment("Doctor Smithers", 0), PauseSegment(200))
    )
    said = pcm.from_int16(audio[_n(200) : audio.size - _n(200)])
    assert said.size > _n(400)  # about as long as the words, not a blip
    assert abs(levels.integrated_lufs(said, RATE) - (-19.0)) <= 1.5  # level with the clips
    assert levels.peak_dbfs(said) <= -1.0


def test_each_clip_is_loaded_and_decoded_once(masters):
    store = Store(masters)
    renderer = Renderer(store, tts=PlaceholderTts())
    plan = _plan(
        _clip("hello"), _clip("at"), _clip("hello"), _clip("three"), loops=3, loop_pause_ms=500
    )
    first = renderer.render(plan)
    for _ in range(20):
        assert renderer.render(plan) == first
    assert store.loads == {"hello": 1, "at": 1, "three": 1}
    assert renderer.cache_info().misses == 3


def test_cache_is_bounded(masters):
    store = Store(masters)
    renderer = Renderer(store, tts=PlaceholderTts(), cache_size=2)
    for _ in range(2):
        renderer.render_pcm(_plan(_clip("hello"), _clip("at"), _clip("three")))
    assert renderer.cache_info().currsize == 2
    assert sum(store.loads.values()) > 3  # evicted clips come back from storage


def test_warm_render_starts_no_process(masters, monkeypatch):
    tts: Tts = EspeakTts() if EspeakTts.available() else PlaceholderTts()
    renderer = Renderer(Store(masters), tts=tts)
    plan = _plan(
        _clip("hello"), SaySegment("on Tuesday", 0), _clip("three"), loops=2, loop_pause_ms=800
    )
    warm = renderer.render(plan)  # the first render may run espeak-ng once per text

    def no_process(*args, **kwargs):
        raise AssertionError(f"a process was started: {args!r}")

    monkeypatch.setattr(subprocess, "Popen", no_process)
    assert renderer.render(plan) == warm
    renderer.render_pcm(plan)
    if isinstance(tts, EspeakTts):  # the trap works: a new text would have to run espeak-ng
        with pytest.raises(AssertionError, match="a process was started"):
            renderer.render(_plan(SaySegment("a text never spoken before", 0)))


def test_missing_clip_names_the_clip(masters):
    renderer = Renderer(Store(masters), tts=PlaceholderTts())
    with pytest.raises(ClipUnavailable, match="'nope'") as info:
        renderer.render(_plan(_clip("hello"), _clip("nope")))
    assert isinstance(info.value, VoiceBankError)
    assert info.value.clip_id == "nope"


def test_unreadable_master_names_the_clip(masters):
    renderer = Renderer(lambda clip_id: b"not flac", tts=PlaceholderTts())
    with pytest.raises(ClipUnavailable, match="'broken'.*not readable audio"):
        renderer.render_pcm(_plan(_clip("broken")))


def test_failed_load_is_retried_next_time(masters):
    calls = Counter[str]()

    def flaky(clip_id: str) -> bytes:
        calls[clip_id] += 1
        if calls[clip_id] == 1:
            raise OSError("storage hiccup")
        data: bytes = masters[clip_id]
        return data

    renderer = Renderer(flaky, tts=PlaceholderTts())
    with pytest.raises(ClipUnavailable):
        renderer.render_pcm(_plan(_clip("hello")))
    assert renderer.render_pcm(_plan(_clip("hello"))).size > 0


def test_empty_plan_and_wav_preview(masters):
    renderer = Renderer(Store(masters), tts=PlaceholderTts())
    assert renderer.render_pcm(_plan()).size == 0
    wav = renderer.render_wav(_plan(_clip("at"), PauseSegment(100)))
    audio, rate = decode(wav)
    assert rate == RATE and audio.size == renderer.clip_pcm("at").size + _n(100)


def test_cached_pcm_is_read_only(masters):
    renderer = Renderer(Store(masters), tts=PlaceholderTts())
    with pytest.raises(ValueError):
        renderer.clip_pcm("hello")[0] = 1


def test_placeholder_lasts_about_as_long_as_the_words():
    tts = PlaceholderTts()
    short, long_ = tts.speak("Bob"), tts.speak("your appointment with Doctor Hibbert tomorrow")
    assert 0.25 < short.size / RATE < 0.8
    assert 2.5 < long_.size / RATE < 4.0
    assert tts.speak("Bob") is short  # cached


def test_default_tts_without_espeak_is_the_placeholder(monkeypatch):
    monkeypatch.setattr("shutil.which", lambda name: None)
    assert isinstance(default_tts(), PlaceholderTts)


def test_espeak_failure_falls_back_or_raises(monkeypatch):
    from voicebank.errors import TtsError

    broken = EspeakTts(executable="/nonexistent/espeak-ng")
    with pytest.raises(TtsError):
        broken.speak("hello")
    with_fallback = EspeakTts(executable="/nonexistent/espeak-ng", fallback=PlaceholderTts())
    assert with_fallback.speak("hello").size > 0


def test_parse_wav_stream_ignores_bogus_sizes():
    data = bytearray(wav_bytes(np.full(100, 0.25)))
    data[4:8] = data[40:44] = b"\x00\xf0\xff\x7f"  # what espeak-ng --stdout writes to a pipe
    samples, rate = parse_wav_stream(bytes(data))
    assert rate == 22050 and samples.size == 100 and samples[0] == 8192

"""voicebank.tts: the stand-in voice matches a female actor, is level, cached, bounded, replaceable.

The engine tests run festival and espeak-ng when installed (CI installs both) and skip otherwise;
the plumbing (process, timeout, errors, cache, WAV parsing) runs everywhere against a fake
``text2wave`` that writes its WAV the way festival does on a pipe.
"""

from __future__ import annotations

import math
import stat
import struct
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from voicebank import levels, pcm
from voicebank.errors import TtsError
from voicebank.tts import (
    MAX_TEXT_CHARS,
    RENDER_RATE,
    EspeakTts,
    FestivalTts,
    PlaceholderTts,
    Tts,
    default_tts,
    median_pitch_hz,
    parse_wav_stream,
    pitch_track,
    semitones,
)

ACTOR = Path("/usr/share/asterisk/sounds/en")
# Whole sentences the demo actor (Allison) recorded: her pitch, and the stand-in's on the same text.
ACTOR_PROMPTS = {
    "conf-placeintoconf": "You will now be placed into the conference.",
    "agent-pass": "Please enter your password followed by the pound key.",
    "pls-hold-while-try": "Please hold while we try to connect you.",
    "vm-msgforwarded": "Your message has been successfully forwarded.",
}
SENTENCE = "This is a reminder from Smile Dental about your appointment with Doctor Benedict."

needs_festival = pytest.mark.skipif(
    not FestivalTts.available(), reason="festival + festvox-us-slt-hts are not installed"
)
needs_espeak = pytest.mark.skipif(not EspeakTts.available(), reason="espeak-ng is not installed")

FAKE_TEXT2WAVE = """\
import math, struct, sys, time

text = sys.stdin.read()
if "(voice_broken)" in sys.argv:
    sys.stderr.write("SIOD ERROR: unbound variable : voice_broken\\n")
    sys.exit(0)  # festival exits 0 after a Scheme error
if "slowly" in text:
    time.sleep(30)
rate = 16000
n = int(rate * (0.2 + 0.04 * len(text)))
env = [min(1.0, i / 800, (n - i) / 800) for i in range(n)]
data = struct.pack(
    f"<{n}h", *(int(9000 * e * math.sin(2 * math.pi * 210 * i / rate)) for i, e in enumerate(env))
)


def header(size):
    return (
        b"RIFF" + struct.pack("<I", size + 36) + b"WAVEfmt "
        + struct.pack("<IHHIIHH", 16, 1, 1, rate, 2 * rate, 2, 16)
        + b"data" + struct.pack("<I", size)
    )


out = sys.stdout.buffer
out.write(header(0) + data + header(len(data)))  # festival on a pipe: the finished header last
"""


@pytest.fixture(scope="module")
def fake_text2wave(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("bin") / "text2wave"
    path.write_text(f"#!{sys.executable}\n{FAKE_TEXT2WAVE}")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


@pytest.fixture
def runs(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """Every command voicebank.tts runs, in order."""
    seen: list[list[str]] = []
    real: Callable[..., Any] = subprocess.run

    def counting(cmd: list[str], *args: Any, **kwargs: Any) -> Any:
        seen.append(list(cmd))
        return real(cmd, *args, **kwargs)

    monkeypatch.setattr(subprocess, "run", counting)
    return seen


@pytest.fixture(scope="module")
def actor_pitch() -> float:
    if not ACTOR.is_dir():
        pytest.skip("the demo actor's recordings (asterisk-core-sounds-en-wav) are not installed")
    tracks = []
    for name in ACTOR_PROMPTS:
        x, rate = sf.read(ACTOR / f"{name}.wav", dtype="float64")
        tracks.append(pitch_track(x, int(rate)))
    return float(np.median(np.concatenate(tracks)))


def _pitch(audio: np.ndarray) -> float:
    return median_pitch_hz(pcm.from_int16(audio), RENDER_RATE)


def _pitch_on_actor_prompts(tts: Tts) -> float:
    tracks = [
        pitch_track(pcm.from_int16(tts.speak(t)), RENDER_RATE) for t in ACTOR_PROMPTS.values()
    ]
    return float(np.median(np.concatenate(tracks)))


# --- the voice ----------------------------------------------------------------------------------


def test_pitch_track_finds_a_known_fundamental():
    rate = 16000
    t = np.arange(rate) / rate
    harmonics = [np.sin(2 * np.pi * 210.0 * k * t) / k for k in range(1, 8)]
    voice = np.sum(harmonics, axis=0)  # buzzy, like a voice
    assert median_pitch_hz(0.3 * voice, rate) == pytest.approx(210.0, rel=0.01)
    assert pitch_track(np.zeros(rate), rate).size == 0  # silence is unvoiced
    assert math.isnan(median_pitch_hz(np.zeros(100), rate))


@needs_festival
def test_festival_speaks_at_the_actors_pitch(actor_pitch):
    tts = FestivalTts()
    same_text = semitones(_pitch_on_actor_prompts(tts), actor_pitch)  # measured: -2.2
    assert abs(same_text) <= 3.0, f"{same_text:+.1f} semitones from the actor on her sentences"
    reminder = semitones(_pitch(tts.speak(SENTENCE)), actor_pitch)  # measured: -2.7
    assert abs(reminder) <= 3.0, f"{reminder:+.1f} semitones from the actor on a reminder"


@needs_espeak
def test_espeak_stand_in_is_the_female_variant(actor_pitch):
    assert abs(semitones(_pitch_on_actor_prompts(EspeakTts()), actor_pitch)) <= 3.0  # -0.5
    # The metric tells voices apart: espeak's default is a man an octave down.
    assert semitones(_pitch(EspeakTts(voice="en-us").speak(SENTENCE)), actor_pitch) < -6.0


@needs_festival
def test_festival_is_level_with_the_clips_and_ends_without_a_click():
    x = pcm.from_int16(FestivalTts().speak(SENTENCE))
    assert 2.0 < x.size / RENDER_RATE < 8.0
    assert abs(levels.integrated_lufs(x, RENDER_RATE) - (-19.0)) <= 1.0
    assert levels.peak_dbfs(x) <= -1.0
    # festival appends its finished WAV header to a pipe: read as samples it was a full-scale
    # click in the last millisecond. The tail must be the trimmed, faded silence.
    assert np.max(np.abs(x[-round(RENDER_RATE * 0.005) :])) < 0.01


@needs_festival
def test_warm_festival_text_starts_no_process(monkeypatch):
    tts = FestivalTts()
    first = tts.speak("on Tuesday")

    def no_process(*args, **kwargs):
        raise AssertionError(f"a process was started: {args!r}")

    monkeypatch.setattr(subprocess, "Popen", no_process)
    assert tts.speak("on  Tuesday ") is first  # same text once whitespace is collapsed
    with pytest.raises(AssertionError, match="a process was started"):
        tts.speak("a text never spoken before")


# --- choosing the engine ------------------------------------------------------------------------


@needs_festival
def test_default_is_festival_when_installed():
    tts = default_tts()
    assert isinstance(tts, FestivalTts)
    assert tts.label.startswith("festival cmu_us_slt_arctic_hts")


def test_default_falls_back_without_festival():
    tts = default_tts(festival="/nonexistent/text2wave")
    if EspeakTts.available():
        assert isinstance(tts, EspeakTts)
        assert tts.voice == "en-us+f2"
    else:
        assert isinstance(tts, PlaceholderTts)
    chime = default_tts(festival="/nonexistent/text2wave", executable="/nonexistent/espeak-ng")
    assert isinstance(chime, PlaceholderTts)


def test_festival_without_its_voice_is_not_available(fake_text2wave):
    assert not FestivalTts.available(fake_text2wave, voice="no_such_voice_hts")
    assert not FestivalTts.available("/nonexistent/text2wave")


def test_festival_settings_are_checked():
    with pytest.raises(ValueError, match="voice name"):
        FestivalTts(voice="slt) (system 'ls')")
    with pytest.raises(ValueError, match="speed"):
        FestivalTts(speed=3.0)
    assert "-r" not in " ".join(FestivalTts()._command())
    assert '("-r" 1.100)' in " ".join(FestivalTts(speed=1.1)._command())


# --- the process: once per text, bounded in length and time, clear errors -----------------------


def test_cache_returns_the_same_array_without_a_second_process(fake_text2wave, runs):
    tts = FestivalTts(executable=fake_text2wave)
    first = tts.speak("Smile Dental")
    assert tts.speak("Smile   Dental") is first
    assert len(runs) == 1
    assert runs[0][:3] == [fake_text2wave, "-eval", "(voice_cmu_us_slt_arctic_hts)"]
    assert not first.flags.writeable
    tts.speak("Doctor Benedict")
    assert len(runs) == 2
    assert tts.cache_info().hits == 1


def test_fake_engine_output_is_levelled_and_unclicked(fake_text2wave):
    x = pcm.from_int16(FestivalTts(executable=fake_text2wave).speak("Smile Dental"))
    assert abs(levels.integrated_lufs(x, RENDER_RATE) - (-19.0)) <= 1.0
    assert np.max(np.abs(x[-round(RENDER_RATE * 0.005) :])) < 0.01  # appended header dropped


def test_overlong_text_is_refused_without_a_process(fake_text2wave, runs):
    long_text = "word " * (MAX_TEXT_CHARS // 5 + 1)
    for tts in (
        FestivalTts(executable=fake_text2wave),
        FestivalTts(executable=fake_text2wave, fallback=PlaceholderTts()),
        EspeakTts(executable=fake_text2wave),
        PlaceholderTts(),
    ):
        with pytest.raises(TtsError, match=f"over the limit of {MAX_TEXT_CHARS}"):
            tts.speak(long_text)
    assert runs == []
    assert FestivalTts(executable=fake_text2wave).speak("x" * MAX_TEXT_CHARS).size > 0


def test_slow_engine_times_out_with_a_clear_error(fake_text2wave):
    tts = FestivalTts(executable=fake_text2wave, timeout_s=0.5)
    with pytest.raises(TtsError, match=r"festival took longer than 0\.5 s"):
        tts.speak("say this slowly")
    fallback = FestivalTts(executable=fake_text2wave, timeout_s=0.5, fallback=PlaceholderTts())
    assert fallback.speak("say this slowly").size > 0


def test_scheme_error_with_exit_0_is_a_failure(fake_text2wave):
    with pytest.raises(TtsError, match="SIOD ERROR"):
        FestivalTts(executable=fake_text2wave, voice="broken").speak("hello")
    with pytest.raises(TtsError, match="festival could not run"):
        FestivalTts(executable="/nonexistent/text2wave").speak("hello")


def test_empty_text_is_silence_without_a_process(fake_text2wave, runs):
    assert FestivalTts(executable=fake_text2wave).speak("  \n ").size == 0
    assert runs == []


# --- reading a WAV from a pipe ------------------------------------------------------------------


def _header(size: int, rate: int = 16000) -> bytes:
    return (
        b"RIFF"
        + struct.pack("<I", size + 36)
        + b"WAVEfmt "
        + struct.pack("<IHHIIHH", 16, 1, 1, rate, 2 * rate, 2, 16)
        + b"data"
        + struct.pack("<I", size)
    )


def test_parse_wav_stream_drops_a_finished_header_appended_after_the_samples():
    body = np.arange(1, 101, dtype="<i2").tobytes()
    samples, rate = parse_wav_stream(_header(0) + body + _header(len(body)), "festival")
    assert rate == 16000 and samples.size == 100 and samples[-1] == 100
    # Samples that merely look like a header elsewhere, or a header of another size, are kept.
    kept, _ = parse_wav_stream(_header(0) + body + _header(len(body) - 2), "festival")
    assert kept.size == 100 + 22


def test_parse_wav_stream_names_the_writer():
    with pytest.raises(TtsError, match="festival did not write a WAV file"):
        parse_wav_stream(b"SIOD ERROR", "festival")

"""voicebank.ingest: accepted formats, every rejection reason, trimming, levels, delivery MP3.

How edges are measured (the brief's 10-20 ms lead / 30-50 ms trail):
* synthetic clips have sharp, known edges, so the output is measured with an independent
  yardstick: pydub's ``detect_leading_silence`` at -45 dBFS with 1 ms chunks, forwards and on
  the reversed signal;
* real recordings have soft onsets and decaying tails that a fixed -45 dBFS misses (it would
  call the last 100 ms of a fading "seventh" silence), so they are measured with the
  pipeline's relative definition of speech: ``levels.find_speech`` on the master, i.e. 5 ms
  RMS at 40 dB under the clip's loudest 5 ms (or 10 dB over its floor).
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import numpy as np
import pytest
from scipy.signal import welch

from tests.support.audio import (
    RATE,
    asterisk_digits,
    asterisk_sound,
    clip,
    clipped,
    decode,
    encode_as,
    leading_silence_ms,
    noise,
    silence,
    speech_like,
    trailing_silence_ms,
    wav_bytes,
)
from voicebank import encode, levels
from voicebank.errors import IngestError, VoiceBankError
from voicebank.ingest import (
    ACCEPTED_FORMATS,
    MASTER_RATE,
    IngestLimits,
    ProcessedClip,
    clipped_fraction,
    ingest_bytes,
)


def _speech_bounds_ok(c: ProcessedClip) -> None:
    assert 10 <= c.lead_ms <= 20, c
    assert 30 <= c.trail_ms <= 50, c


# -- accepted formats ------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ACCEPTED_FORMATS)
def test_each_accepted_format(fmt, tmp_path):
    x = clip(800, lead_ms=300, trail_ms=300, rate=44100)
    data = encode_as(x, 44100, fmt, tmp_path)
    c = ingest_bytes(data, f"hello.{fmt}")
    assert c.original_format == fmt
    assert c.original is data
    assert c.sample_rate == MASTER_RATE == 22050
    master, rate = decode(c.master)
    assert rate == MASTER_RATE and master.ndim == 1
    # 800 ms of speech + 15 ms + 40 ms; lossy codecs smear the edges by a few ms.
    assert abs(c.duration_ms - 855) <= 25
    assert abs(levels.integrated_lufs(master, rate) + 19.0) <= 1.0


def test_format_comes_from_the_content_not_the_name(tmp_path):
    data = encode_as(clip(600), RATE, "mp3", tmp_path)
    c = ingest_bytes(data, "really-an-mp3.wav")
    assert c.original_format == "mp3"


def test_headerless_mp3_with_leading_junk_is_found_by_its_frames(tmp_path):
    data = b"\x00" * 100 + encode_as(clip(600), RATE, "mp3", tmp_path)
    assert ingest_bytes(data, "old-encoder.mp3").original_format == "mp3"
    with pytest.raises(IngestError, match="unknown format"):
        ingest_bytes(data, "old-encoder.wav")  # only a .mp3 name earns the frame search


def test_stereo_and_float_wav_become_mono():
    x = clip(600)
    stereo = np.stack((x, 0.5 * x), axis=1)
    c = ingest_bytes(wav_bytes(stereo, RATE, "FLOAT"), "stereo.wav")
    assert c.original_channels == 2
    master, _ = decode(c.master)
    assert master.ndim == 1


def test_resampling_is_anti_aliased():
    # 48 kHz speech plus a loud 15 kHz whistle: above the master's 11.025 kHz Nyquist, so a
    # resampler without a filter (pydub.set_frame_rate) folds it to 22.05 - 15 = 7.05 kHz at
    # nearly full level. With soxr the 7.05 kHz band must look as it does without the whistle.
    rate = 48000
    x = clip(900, rate=rate, peak_dbfs=-12.0)
    t = np.arange(x.size) / rate
    whistled = x + 0.1 * np.sin(2 * np.pi * 15000 * t)

    def band_at_7k(samples):
        master, _ = decode(ingest_bytes(wav_bytes(samples, rate), "w.wav").master)
        f, p = welch(master, MASTER_RATE, nperseg=2048)
        return 10 * np.log10(p[np.argmin(np.abs(f - 7050))] / p[(f > 100) & (f < 3000)].max())

    assert band_at_7k(whistled) - band_at_7k(x) < 3.0


# -- rejections ------------------------------------------------------------------------------


def _clipped_wav() -> bytes:
    return wav_bytes(clipped(clip(800)), RATE)


REJECTIONS = [
    ("empty", lambda: b"", "empty file"),
    ("corrupt", lambda: wav_bytes(clip(500))[:12] + b"junk" * 100, "corrupt"),
    ("corrupt-flac", lambda: b"fLaC" + b"\x00\x01garbage" * 50, "corrupt"),
    ("unknown", lambda: b"Dear voice bank, this is not audio.\n" * 20, "unknown format"),
    ("raw-mp3-junk", lambda: bytes(4096) + b"\xff\xfb\x90\x00", "unknown format"),
    ("aiff", lambda: b"FORM\x00\x00\x10\x00AIFFCOMM" + bytes(64), "unknown format"),
    ("silent", lambda: wav_bytes(silence(1000)), "silent"),
    ("hiss", lambda: wav_bytes(noise(1500, -30.0)), "silent"),
    ("clipped", _clipped_wav, "clipped"),
    ("too-short", lambda: wav_bytes(clip(100)), "too short"),
    ("too-long", lambda: wav_bytes(clip(31_000, lead_ms=100, trail_ms=100)), "too long"),
]


@pytest.mark.parametrize(("name", "make", "reason"), REJECTIONS, ids=[r[0] for r in REJECTIONS])
def test_rejections_name_the_file_and_the_reason(name, make, reason):
    filename = f"{name}.wav"
    with pytest.raises(IngestError) as info:
        ingest_bytes(make(), filename)
    err = info.value
    assert isinstance(err, VoiceBankError)
    assert err.filename == filename
    assert err.reason.startswith(reason), err.reason
    assert str(err).startswith(f"{filename}: {reason}")


def test_too_large_is_checked_before_decoding():
    with pytest.raises(IngestError, match=r"big\.wav: too large: .* \(limit 0 MB\)"):
        ingest_bytes(wav_bytes(clip(500)), "big.wav", limits=IngestLimits(max_bytes=1000))


def test_clipping_message_gives_the_share_of_samples():
    with pytest.raises(IngestError) as info:
        ingest_bytes(_clipped_wav(), "greeting.wav")
    assert "% of samples at full scale" in str(info.value)
    assert str(info.value).startswith("greeting.wav: clipped: ")


def test_clipping_is_measured_on_the_original_and_ignores_natural_peaks():
    x = clip(800, peak_dbfs=-0.05)  # peak-normalised to full scale: a few samples touch it
    assert clipped_fraction(x[:, None], 0.985) < 0.001
    c = ingest_bytes(wav_bytes(x), "hot-but-clean.wav")
    assert c.peak_dbfs <= -1.0
    flat = clipped(clip(800), 9.0)  # 9 dB of overdrive: flat tops on every loud cycle
    assert clipped_fraction(flat[:, None], 0.985) > 0.001


# -- trimming --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("lead", "trail", "noise_dbfs"),
    [(300, 300, None), (800, 50, None), (0, 0, None), (400, 600, -65.0), (250, 250, -55.0)],
)
def test_trimming_bounds_on_the_output(lead, trail, noise_dbfs):
    x = clip(700, lead_ms=lead, trail_ms=trail, noise_dbfs=noise_dbfs, peak_dbfs=-10.0)
    c = ingest_bytes(wav_bytes(x), "t.wav")
    master, rate = decode(c.master)
    # Independent yardstick (module docstring): -45 dBFS, 1 ms chunks.
    assert 10 <= leading_silence_ms(master, rate) <= 20
    assert 30 <= trailing_silence_ms(master, rate) <= 50
    _speech_bounds_ok(c)
    assert c.speech_ms == pytest.approx(700, abs=6)


def test_trimming_keeps_a_soft_onset():
    # A 60 ms fade-in from nothing (like an "h" or "f") stays: the threshold is 40 dB under
    # the peak, not a fixed level.
    x = clip(700, lead_ms=300, trail_ms=300, attack_ms=60.0)
    c = ingest_bytes(wav_bytes(x), "soft.wav")
    assert c.speech_ms >= 680


# -- levels ----------------------------------------------------------------------------------


@pytest.mark.parametrize("peak_dbfs", [-40.0, -20.0, -6.0, -0.5])
def test_loudness_and_peak(peak_dbfs):
    c = ingest_bytes(wav_bytes(clip(900, peak_dbfs=peak_dbfs)), "l.wav")
    master, rate = decode(c.master)
    assert abs(levels.integrated_lufs(master, rate) - (-19.0)) <= 1.0
    assert c.loudness_method == "integrated"
    assert abs(c.lufs + 19.0) <= 1.0
    assert levels.peak_dbfs(master) <= -1.0
    assert c.peak_dbfs <= -1.0


def test_target_is_a_parameter():
    c = ingest_bytes(wav_bytes(clip(900)), "l.wav", target_lufs=-23.0)
    master, rate = decode(c.master)
    assert abs(levels.integrated_lufs(master, rate) + 23.0) <= 1.0


def test_peaky_clip_is_soft_limited_not_turned_down():
    # Speech with a few sharp transients: gaining it to -16 LUFS pushes them over -1 dBFS.
    x = clip(1200, peak_dbfs=-24.0)
    for at in (400, 700, 1000):
        x[round(RATE * at / 1000) : round(RATE * at / 1000) + 40] += 0.12 * np.hanning(40)
    c = ingest_bytes(wav_bytes(x), "peaky.wav", target_lufs=-16.0)
    master, rate = decode(c.master)
    assert c.limited_db > 0.5
    assert levels.peak_dbfs(master) <= -1.0
    assert abs(levels.integrated_lufs(master, rate) + 16.0) <= 1.0


def test_short_clip_is_rms_matched():
    c = ingest_bytes(wav_bytes(clip(250)), "yes.wav")
    assert c.duration_ms < 400
    assert c.loudness_method == "rms"
    master, rate = decode(c.master)
    speech = master[round(rate * c.lead_ms / 1000) : master.size - round(rate * c.trail_ms / 1000)]
    assert abs(levels.ungated_lufs(speech, rate) + 19.0) <= 1.0
    assert levels.peak_dbfs(master) <= -1.0


# -- delivery --------------------------------------------------------------------------------


def test_mp3_is_gapless_mono_22k_and_content_addressed():
    c = ingest_bytes(wav_bytes(clip(800)), "g.wav")
    assert c.sha256 == hashlib.sha256(c.mp3).hexdigest()
    assert encode.gapless_tag(c.mp3) is not None
    decoded, rate = decode(c.mp3)
    master, _ = decode(c.master)
    assert rate == 22050
    # The LAME tag tells the decoder to drop delay and padding: same length within a few ms.
    assert abs(decoded.size - master.size) <= round(0.003 * rate)
    # Same input, same bytes: re-uploading a take does not create a new object.
    assert ingest_bytes(wav_bytes(clip(800)), "again.wav").sha256 == c.sha256


# -- real recordings -------------------------------------------------------------------------


def test_one_real_recording():
    path = asterisk_sound("digits/7")
    c = ingest_bytes(path.read_bytes(), path.name)
    assert c.original_rate == 8000
    _speech_bounds_ok(c)
    assert abs(c.lufs + 19.0) <= 1.0


def test_every_asterisk_digit_is_levelled_and_trimmed():
    """All 94 digits/*.wav: within 1 LU of -19 LUFS, peaks <= -1 dBFS, 10-20 / 30-50 ms edges."""
    paths = asterisk_digits()
    assert len(paths) >= 90
    started = time.perf_counter()
    problems: list[str] = []
    for path in paths:
        c = ingest_bytes(path.read_bytes(), path.name)
        master, rate = decode(c.master)
        if c.loudness_method == "integrated":
            lufs = levels.integrated_lufs(master, rate)
        else:  # under 0.4 s: the ungated level of the speech is what was matched
            speech = levels.find_speech(master, rate)
            assert speech is not None
            lufs = levels.ungated_lufs(master[speech.start : speech.end], rate)
        found = levels.find_speech(master, rate)
        assert found is not None
        lead = 1000 * found.start / rate
        trail = 1000 * (master.size - found.end) / rate
        if not (
            abs(lufs + 19.0) <= 1.0
            and levels.peak_dbfs(master) <= -1.0
            and 10 <= lead <= 20
            and 30 <= trail <= 50
        ):
            problems.append(f"{path.name}: {lufs:.2f} LUFS, lead {lead:.1f}, trail {trail:.1f}")
    assert not problems, problems
    assert time.perf_counter() - started < 30


def test_ingest_is_fast_enough(tmp_path: Path):
    data = wav_bytes(clip(1500))
    ingest_bytes(data, "warm.wav")
    started = time.perf_counter()
    ingest_bytes(data, "timed.wav")
    assert time.perf_counter() - started < 0.5


def test_speech_like_fixture_is_what_the_docstring_says():
    x = speech_like(500)
    assert levels.peak_dbfs(x) == pytest.approx(-6.0, abs=0.01)

"""Synthetic test audio and access to the Asterisk recordings, shared by the audio tests.

All generators return mono float64 PCM (full scale 1.0). ``speech_like`` is a voiced-sounding
signal (a 140 Hz harmonic series with a 4 Hz syllable rhythm and a little breath noise) whose
start and end are known exactly, so tests can compare measured edges with the truth.
"""

from __future__ import annotations

import io
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from numpy.typing import NDArray

Float = NDArray[np.float64]
RATE = 22050
ASTERISK_DIR = Path("/usr/share/asterisk/sounds/en")


def ms(n_ms: float, rate: int = RATE) -> int:
    return round(rate * n_ms / 1000.0)


def silence(duration_ms: float, rate: int = RATE) -> Float:
    return np.zeros(ms(duration_ms, rate))


def noise(duration_ms: float, level_dbfs: float, rate: int = RATE, seed: int = 1) -> Float:
    """White noise with an RMS of ``level_dbfs``."""
    rng = np.random.default_rng(seed)
    return rng.normal(0.0, 10 ** (level_dbfs / 20), ms(duration_ms, rate))


def speech_like(
    duration_ms: float,
    rate: int = RATE,
    *,
    peak_dbfs: float = -6.0,
    f0: float = 140.0,
    attack_ms: float = 3.0,
    seed: int = 0,
) -> Float:
    """Speech-ish burst: harmonics with 1/k roll-off, syllable envelope, sharp known edges.

    The syllable rhythm never drops below -14 dB of the peak inside the burst, so a detector
    sees one phrase from the first sample to the last; the raised-cosine edges take
    ``attack_ms`` so any sensible threshold finds them within a couple of ms.
    """
    n = ms(duration_ms, rate)
    t = np.arange(n) / rate
    rng = np.random.default_rng(seed)
    vibrato = 1.0 + 0.03 * np.sin(2 * np.pi * 5.0 * t)
    phase = 2 * np.pi * np.cumsum(f0 * vibrato) / rate
    voiced = sum(np.sin(k * phase) / k for k in range(1, 12))
    breath = rng.normal(0.0, 0.05, n)
    envelope = 0.2 + 0.8 * np.abs(np.sin(np.pi * 4.0 * t + 0.6))
    a = ms(attack_ms, rate)
    if a:
        ramp = 0.5 - 0.5 * np.cos(np.pi * np.arange(a) / a)
        envelope[:a] *= ramp
        envelope[n - a :] *= ramp[::-1]
    x: Float = (voiced + breath) * envelope
    scale = 10 ** (peak_dbfs / 20) / float(np.max(np.abs(x)))
    return x * scale


def clip(
    speech_ms: float = 800,
    *,
    lead_ms: float = 300,
    trail_ms: float = 300,
    noise_dbfs: float | None = None,
    rate: int = RATE,
    peak_dbfs: float = -6.0,
    f0: float = 140.0,
    attack_ms: float = 3.0,
) -> Float:
    """Silence (or noise), a speech-like burst, silence: the burst starts at ``lead_ms``."""
    burst = speech_like(speech_ms, rate, peak_dbfs=peak_dbfs, f0=f0, attack_ms=attack_ms)
    x = np.concatenate((silence(lead_ms, rate), burst, silence(trail_ms, rate)))
    if noise_dbfs is not None:
        x = x + noise(1000.0 * x.size / rate, noise_dbfs, rate)
    return x


def clipped(x: Float, overdrive_db: float = 12.0) -> Float:
    """``x`` turned up by ``overdrive_db`` and hard-clipped at full scale."""
    return np.clip(x * 10 ** (overdrive_db / 20), -1.0, 1.0)


def wav_bytes(x: Float | NDArray[np.float64], rate: int = RATE, subtype: str = "PCM_16") -> bytes:
    buf = io.BytesIO()
    sf.write(buf, x, rate, format="WAV", subtype=subtype)
    return buf.getvalue()


def encode_as(x: Float, rate: int, fmt: str, tmp_path: Path) -> bytes:
    """Encode test audio as ``fmt`` (wav, flac, ogg, mp3 with soundfile; m4a with ffmpeg)."""
    if fmt == "m4a":
        if shutil.which("ffmpeg") is None:
            pytest.skip("ffmpeg is not installed")
        src, dst = tmp_path / "src.wav", tmp_path / "out.m4a"
        src.write_bytes(wav_bytes(x, rate))
        subprocess.run(
            ["ffmpeg", "-v", "error", "-y", "-i", str(src), "-c:a", "aac", "-b:a", "96k", str(dst)],
            check=True,
        )
        return dst.read_bytes()
    kinds = {
        "wav": ("WAV", "PCM_16"),
        "flac": ("FLAC", "PCM_16"),
        "ogg": ("OGG", "VORBIS"),
        "mp3": ("MP3", "MPEG_LAYER_III"),
    }
    container, subtype = kinds[fmt]
    buf = io.BytesIO()
    sf.write(buf, x, rate, format=container, subtype=subtype)
    return buf.getvalue()


def decode(data: bytes) -> tuple[Float, int]:
    """Any libsndfile format (FLAC master, MP3) -> mono float and its rate."""
    x, rate = sf.read(io.BytesIO(data), dtype="float64", always_2d=True)
    return x.mean(axis=1), int(rate)


def leading_silence_ms(x: Float, rate: int, threshold_dbfs: float = -45.0) -> int:
    """pydub's detector (1 ms chunks, RMS vs an absolute threshold): an independent yardstick."""
    from pydub import AudioSegment
    from pydub.silence import detect_leading_silence

    pcm16 = np.clip(np.round(x * 32768), -32768, 32767).astype("<i2")
    seg = AudioSegment(data=pcm16.tobytes(), sample_width=2, frame_rate=rate, channels=1)
    return int(detect_leading_silence(seg, silence_threshold=threshold_dbfs, chunk_size=1))


def trailing_silence_ms(x: Float, rate: int, threshold_dbfs: float = -45.0) -> int:
    return leading_silence_ms(x[::-1].copy(), rate, threshold_dbfs)


def asterisk_sound(name: str) -> Path:
    """Path of an Asterisk English sound (e.g. ``digits/1``); skips the test if it is missing."""
    path = ASTERISK_DIR / f"{name}.wav"
    if not path.is_file():
        pytest.skip(
            f"Asterisk sounds not installed ({path}); apt-get install asterisk-core-sounds-en-wav"
        )
    return path


def take_from_sounds(
    names: list[str],
    gap_ms: float = 700,
    *,
    jitter_ms: float = 0,
    noise_dbfs: float | None = None,
    seed: int = 7,
) -> bytes:
    """A "long take" WAV: the Asterisk recordings in order, ``gap_ms`` (+- ``jitter_ms``) of
    silence before, between and after them, optionally over a white-noise floor. 8 kHz."""
    rng = np.random.default_rng(seed)
    parts: list[Float] = []
    rate = 8000
    for name in names:
        x, rate = sf.read(asterisk_sound(name), dtype="float64")
        parts += [silence(gap_ms + rng.uniform(-jitter_ms, jitter_ms), rate), x]
    parts.append(silence(gap_ms, rate))
    take = np.concatenate(parts)
    if noise_dbfs is not None:
        take = take + rng.normal(0.0, 10 ** (noise_dbfs / 20), take.size)
    return wav_bytes(take, rate)


def asterisk_digits() -> list[Path]:
    """Every ``digits/*.wav`` clip (94 in asterisk-core-sounds-en); skips if none are there."""
    paths = sorted((ASTERISK_DIR / "digits").glob("*.wav"))
    if not paths:
        pytest.skip("Asterisk sounds not installed (apt-get install asterisk-core-sounds-en-wav)")
    return paths

"""Ingest one recording: validate, decode, mix to mono, resample, trim, level and encode it.

    bytes --sniff--> format --decode--> float PCM --checks on the original (clipping, length)-->
    mono --soxr--> 22.05 kHz --find speech--> trim to 15 ms lead / 40 ms trail --> gain to the
    target loudness --> soft-limit peaks to -1 dBFS --> FLAC master + gapless MP3

Every rejection is an IngestError naming the file and the reason; nothing is half-processed.

Level policy, in priority order:
1. The master's sample peak never exceeds ``ceiling_dbfs`` (-1 dBFS): guaranteed by the
   limiter, which also works on the 4x-oversampled (true) peak so that peaks between samples,
   which come back after MP3 decoding, stay close to the ceiling too.
2. Loudness within +-1 LU of the target: the clip gets the full gain and the few peaks that
   would cross the ceiling are pulled down by a look-ahead soft limiter (~10 ms gain dips),
   rather than the whole clip being turned down (which research/audio.md §4 shows leaves a
   1.7 LU spread at -16 LUFS). The gain is then re-measured and corrected, since the dips cost
   a little loudness.
3. No more than ``max_limit_db`` of limiting: a clip that would need more (a click, a shout)
   gets less gain instead and ends up quieter than the target; ``lufs`` reports the result.

Loudness is BS.1770 integrated (gated) loudness for clips of 0.4 s and longer; shorter clips
have no complete gating block, so their ungated K-weighted level over the speech is matched
(``loudness_method == "rms"``).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np

from voicebank import encode, levels, pcm
from voicebank.errors import DecodeError, IngestError
from voicebank.pcm import ACCEPTED_FORMATS, MASTER_RATE, Decoded, Float

__all__ = [
    "ACCEPTED_FORMATS",
    "DEFAULT_LIMITS",
    "MASTER_RATE",
    "IngestLimits",
    "ProcessedClip",
    "ingest_bytes",
]


@dataclass(frozen=True)
class IngestLimits:
    """What a single clip must satisfy, and how it is trimmed and levelled."""

    min_duration_ms: int = 150  # of speech, after trimming
    max_duration_ms: int = 30_000  # of the decoded file
    max_bytes: int = 50 * 1024 * 1024
    # Clipping: samples at or above this fraction of full scale (-0.13 dBFS), in runs of at least
    # two (a flat top, not a waveform's natural peak), counted on the original as uploaded.
    clip_level: float = 0.985
    max_clipped_fraction: float = 0.001
    silence_dbfs: float = -60.0  # a sample peak below this is silence, whatever its shape
    # Loudest 5 ms vs the quietest 20 ms: hiss or hum alone scores ~3 dB, speech cut tight with
    # no pause at all still ~15 dB.
    min_snr_db: float = 10.0
    lead_ms: int = 15  # kept before the first speech sample (brief: 10-20 ms)
    trail_ms: int = 40  # kept after the last (brief: 30-50 ms): tails decay slowly
    fade_in_ms: float = 5.0
    fade_out_ms: float = 10.0
    ceiling_dbfs: float = -1.0
    max_limit_db: float = 6.0


DEFAULT_LIMITS = IngestLimits()


@dataclass(frozen=True)
class ProcessedClip:
    """One cleaned clip: the untouched upload, its lossless master and its delivery MP3."""

    filename: str
    original: bytes = field(repr=False)  # bytes stay out of reprs, logs and assertion messages
    original_format: str
    master: bytes = field(repr=False)  # FLAC, mono 16-bit, trimmed and levelled, MASTER_RATE
    mp3: bytes = field(repr=False)  # delivery: MP3 mono, MASTER_RATE, Xing/LAME gapless tag
    sha256: str  # hex sha256 of ``mp3``: its content address
    duration_ms: int
    lufs: float  # measured on the master, by ``loudness_method``
    peak_dbfs: float  # sample peak of the master
    lead_ms: int  # silence before / after speech in the master, as find_speech measures it
    trail_ms: int
    sample_rate: int
    speech_ms: int = 0
    loudness_method: str = "integrated"  # or "rms" for clips under 0.4 s
    gain_db: float = 0.0  # applied before limiting
    limited_db: float = 0.0  # largest gain reduction of the limiter (0 = untouched)
    original_rate: int = 0
    original_channels: int = 0
    span_ms: tuple[int, int] | None = None  # where in the original (a long take) it came from
    threshold_dbfs: float = -60.0  # speech threshold (5 ms RMS) in master levels


def clipped_fraction(samples: Float, level: float) -> float:
    """Largest per-channel fraction of samples >= ``level`` that sit in runs of two or more."""
    worst = 0.0
    for ch in range(samples.shape[1]):
        hot = np.abs(samples[:, ch]) >= level
        if not hot.any():
            continue
        # A sample is in a run if its neighbour on either side is hot too.
        in_run = hot & (np.concatenate(([False], hot[:-1])) | np.concatenate((hot[1:], [False])))
        worst = max(worst, float(in_run.mean()))
    return worst


def decode_upload(
    data: bytes, filename: str, limits: IngestLimits, *, max_duration_ms: float | None = None
) -> tuple[Decoded, str]:
    """Format detection, decoding and the checks made on the original; raises IngestError."""
    if not data:
        raise IngestError(filename, "empty file")
    if len(data) > limits.max_bytes:
        raise IngestError(
            filename,
            f"too large: {len(data) / 2**20:.1f} MB (limit {limits.max_bytes / 2**20:.0f} MB)",
        )
    fmt = pcm.guess_format(data, filename)
    if fmt is None:
        names = ", ".join(f.upper() for f in ACCEPTED_FORMATS)
        raise IngestError(filename, f"unknown format: not one of {names}")
    try:
        decoded = pcm.decode(data, fmt)
    except DecodeError as exc:
        raise IngestError(filename, f"corrupt: not a readable {fmt.upper()} file ({exc})") from exc
    limit_ms = limits.max_duration_ms if max_duration_ms is None else max_duration_ms
    if decoded.duration_ms > limit_ms:
        raise IngestError(
            filename, f"too long: {decoded.duration_ms / 1000:.1f} s (limit {limit_ms / 1000:g} s)"
        )
    clipped = clipped_fraction(decoded.samples, limits.clip_level)
    if clipped > limits.max_clipped_fraction:
        raise IngestError(
            filename,
            f"clipped: {clipped:.1%} of samples at full scale "
            f"(limit {limits.max_clipped_fraction:.1%})",
        )
    return decoded, fmt


def process(
    x: Float,
    *,
    filename: str,
    original: bytes,
    original_format: str,
    target_lufs: float,
    limits: IngestLimits,
    original_rate: int = 0,
    original_channels: int = 0,
    span_ms: tuple[int, int] | None = None,
) -> ProcessedClip:
    """Trim, level and encode mono float PCM at MASTER_RATE; raises IngestError."""
    rate = MASTER_RATE
    peak = levels.peak_dbfs(x)
    if peak < limits.silence_dbfs:
        raise IngestError(filename, f"silent: peak {peak:.1f} dBFS")
    x = x - float(np.mean(x))  # DC offset would bias the envelope and click at every join
    speech = levels.find_speech(x, rate)
    if speech is None or speech.snr_db < limits.min_snr_db:
        snr = 0.0 if speech is None else speech.snr_db
        raise IngestError(
            filename,
            f"silent: no speech above the noise floor (loudest part {snr:.0f} dB above it)",
        )
    speech_ms = speech.duration_ms(rate)
    if speech_ms < limits.min_duration_ms:
        raise IngestError(
            filename,
            f"too short: {speech_ms:.0f} ms of speech (minimum {limits.min_duration_ms} ms)",
        )
    if speech_ms > limits.max_duration_ms:
        raise IngestError(
            filename,
            f"too long: {speech_ms / 1000:.1f} s of speech "
            f"(limit {limits.max_duration_ms / 1000:g} s)",
        )

    y, in_clip = levels.trim(
        x,
        rate,
        speech,
        lead_ms=limits.lead_ms,
        trail_ms=limits.trail_ms,
        fade_in_ms=limits.fade_in_ms,
        fade_out_ms=limits.fade_out_ms,
    )

    levelled = levels.normalize(
        y,
        rate,
        in_clip,
        target_lufs,
        ceiling_dbfs=limits.ceiling_dbfs,
        max_limit_db=limits.max_limit_db,
    )
    if levelled is None:
        raise IngestError(filename, "silent: loudness below the -70 LUFS gate")

    master_pcm = pcm.to_int16(levelled.samples)
    master_float = pcm.from_int16(master_pcm)
    # Re-measure the edges on the master with the threshold that made the cut, moved by the gain:
    # the same criterion in output terms. (A fresh relative threshold would not do on a noisy
    # upload: the master's faded edges are quieter than the noise floor it was judged against.)
    threshold = speech.threshold_db + levelled.gain_db
    final = levels.find_speech(master_float, rate, threshold_db=threshold) or in_clip
    lufs, method = levels.clip_loudness(master_float, rate, in_clip)
    mp3 = encode.mp3_gapless(master_pcm, rate)
    return ProcessedClip(
        filename=filename,
        original=original,
        original_format=original_format,
        master=encode.flac(master_pcm, rate),
        mp3=mp3,
        sha256=hashlib.sha256(mp3).hexdigest(),
        duration_ms=round(1000 * master_pcm.size / rate),
        lufs=round(lufs, 2),
        peak_dbfs=round(levels.peak_dbfs(master_float), 2),
        lead_ms=round(1000 * final.start / rate),
        trail_ms=round(1000 * (master_pcm.size - final.end) / rate),
        sample_rate=rate,
        speech_ms=round(speech_ms),
        loudness_method=method,
        gain_db=round(levelled.gain_db, 2),
        limited_db=round(levelled.limited_db, 2),
        original_rate=original_rate,
        original_channels=original_channels,
        span_ms=span_ms,
        threshold_dbfs=round(threshold, 2),
    )


def ingest_bytes(
    data: bytes, filename: str, *, target_lufs: float = -19.0, limits: IngestLimits = DEFAULT_LIMITS
) -> ProcessedClip:
    """Process one uploaded recording into a ProcessedClip; raises IngestError."""
    decoded, fmt = decode_upload(data, filename, limits)
    x = pcm.resample(pcm.to_mono(decoded.samples), decoded.sample_rate, MASTER_RATE)
    return process(
        x,
        filename=filename,
        original=data,
        original_format=fmt,
        target_lufs=target_lufs,
        limits=limits,
        original_rate=decoded.sample_rate,
        original_channels=decoded.channels,
    )

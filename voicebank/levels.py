"""Levels: loudness (BS.1770 via pyloudnorm), peaks, where speech starts and ends, a soft limiter.

All functions take mono float PCM (full scale 1.0) and its rate, and never modify their input.

Speech detection is relative, not a fixed dBFS: the threshold sits 40 dB below the loudest
5 ms of the clip, but at least 10 dB above its noise floor (its quietest 20 ms), and never
closer than 25 dB to the peak. Clean studio clips keep their soft consonants; a hissy
phone recording is not mistaken for 2 s of speech.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import pyloudnorm
from numpy.typing import NDArray
from scipy.ndimage import minimum_filter1d, uniform_filter1d
from scipy.signal import resample_poly

Float = NDArray[np.float64]

#: BS.1770 integrated loudness is defined over 400 ms gating blocks; below that we match the
#: ungated K-weighted mean square of the speech (the same quantity, without gating).
GATING_BLOCK_S = 0.4
ENVELOPE_MS = 5.0
_FLOOR_DB = -120.0


def dbfs(amplitude: float) -> float:
    """Amplitude (full scale 1.0) -> dBFS, with silence clamped to -120 rather than -inf."""
    return 20.0 * math.log10(amplitude) if amplitude > 1e-6 else _FLOOR_DB


def peak_dbfs(x: Float) -> float:
    """Sample peak in dBFS."""
    return dbfs(float(np.max(np.abs(x)))) if x.size else _FLOOR_DB


def true_peak_envelope(x: Float) -> Float:
    """Per-sample peak of the 4x-oversampled signal (BS.1770 true peak, without the max).

    Limiting this rather than the samples keeps the peaks between samples under the ceiling
    too; they reappear after MP3 decoding and resampling to the phone line's 8 kHz.
    """
    if x.size < 2:
        return np.abs(x)
    over: Float = resample_poly(x, 4, 1)
    tp: Float = np.abs(over[: 4 * x.size]).reshape(x.size, 4).max(axis=1)
    return np.maximum(tp, np.abs(x))


def true_peak_dbfs(x: Float) -> float:
    return dbfs(float(np.max(true_peak_envelope(x)))) if x.size else _FLOOR_DB


def envelope_db(x: Float, rate: int, window_ms: float = ENVELOPE_MS) -> Float:
    """Centred sliding RMS in dBFS, one value per sample (1-sample time resolution)."""
    n = max(1, round(rate * window_ms / 1000.0))
    mean_square = uniform_filter1d(x * x, size=n, mode="constant")
    out: Float = 10.0 * np.log10(np.maximum(mean_square, 1e-12))
    return out


@dataclass(frozen=True)
class Speech:
    """Where speech is in a clip (samples; ``end`` exclusive) and the levels that decided it."""

    start: int
    end: int
    threshold_db: float
    floor_db: float
    peak_db: float

    @property
    def snr_db(self) -> float:
        return self.peak_db - self.floor_db

    def duration_ms(self, rate: int) -> float:
        return 1000.0 * (self.end - self.start) / rate


def noise_floor_db(x: Float, rate: int, window_ms: float = 20.0) -> float:
    """Level of the quietest ``window_ms`` stretch of ``x`` in dBFS.

    The minimum rather than a percentile: a percentile needs a known share of silence, and a clip
    trimmed to 55 ms of padding (our own masters, or an upload cut tight in an editor) has too
    little, so its "floor" would land inside the speech and cut soft consonants.
    """
    n = max(1, round(rate * window_ms / 1000.0))
    if x.size <= n:
        return 10.0 * math.log10(max(float(np.mean(x * x)) if x.size else 0.0, 1e-12))
    c = np.concatenate(([0.0], np.cumsum(x * x)))
    power = (c[n:] - c[:-n]) / n
    return 10.0 * math.log10(max(float(power.min()), 1e-12))


def speech_threshold(x: Float, rate: int, env_db: Float) -> tuple[float, float, float]:
    """(threshold, floor, peak) in dBFS for a clip and its envelope; see the module docstring."""
    peak = float(env_db.max())
    floor = noise_floor_db(x, rate)
    threshold = min(max(peak - 40.0, floor + 10.0), peak - 25.0)
    return threshold, floor, peak


def _runs(mask: NDArray[np.bool_]) -> tuple[NDArray[np.intp], NDArray[np.intp]]:
    edges = np.diff(np.concatenate(([0], mask.astype(np.int8), [0])))
    return np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)


def find_speech(
    x: Float,
    rate: int,
    *,
    threshold_db: float | None = None,
    bridge_ms: float = 200.0,
    min_burst_ms: float = 20.0,
) -> Speech | None:
    """First and last sample of speech, or None when nothing rises above the threshold.

    Runs of envelope above the threshold closer than ``bridge_ms`` form one group (a word with
    a stop closure, a plosive release after a vowel). A group with less than ``min_burst_ms``
    above the threshold, or whose loudest point is 30 dB under the clip's peak, is a click, a
    pop or a breath, and is ignored: it must not stretch the clip's edges.
    """
    if x.size == 0:
        return None
    env = envelope_db(x, rate)
    auto, floor, peak = speech_threshold(x, rate, env)
    if peak < -100.0:
        return None  # digital silence (or dither): nothing to measure against
    thr = auto if threshold_db is None else threshold_db
    starts, ends = _runs(env >= thr)
    if starts.size == 0:
        return None
    bridge = rate * bridge_ms / 1000.0
    min_burst = rate * min_burst_ms / 1000.0
    groups: list[list[int]] = []  # [start, end, samples above threshold]
    for s, e in zip(starts.tolist(), ends.tolist(), strict=True):
        if groups and s - groups[-1][1] < bridge:
            groups[-1][1] = e
            groups[-1][2] += e - s
        else:
            groups.append([s, e, e - s])
    kept = [(s, e) for s, e, n in groups if n >= min_burst and env[s:e].max() >= peak - 30.0]
    if not kept:
        return None
    return Speech(kept[0][0], kept[-1][1], thr, floor, peak)


def _meter(rate: int, block_s: float = GATING_BLOCK_S) -> pyloudnorm.Meter:
    return pyloudnorm.Meter(rate, block_size=block_s)


def integrated_lufs(x: Float, rate: int) -> float:
    """BS.1770-4 gated integrated loudness; needs at least one 400 ms block."""
    return float(_meter(rate).integrated_loudness(x))


def ungated_lufs(x: Float, rate: int) -> float:
    """K-weighted loudness of the whole of ``x`` as one block (no gating): "LUFS-style RMS"."""
    if x.size < 2:
        return -math.inf
    # One block as long as the signal: pyloudnorm then averages K-weighted power over all of
    # it, and a single block always passes its own relative gate. (Half a sample shorter, or
    # float rounding can make the block longer than the signal, which pyloudnorm refuses.)
    return float(_meter(rate, (x.size - 0.5) / rate).integrated_loudness(x))


def clip_loudness(x: Float, rate: int, speech: Speech) -> tuple[float, str]:
    """(loudness, method): gated integrated LUFS from 0.4 s, else ungated over the speech."""
    if x.size >= GATING_BLOCK_S * rate:
        lufs = integrated_lufs(x, rate)
        if math.isfinite(lufs):
            return lufs, "integrated"
    return ungated_lufs(x[speech.start : speech.end], rate), "rms"


def soft_limit(
    x: Float, rate: int, ceiling_dbfs: float = -1.0, window_ms: float = 5.0
) -> tuple[Float, float]:
    """Look-ahead peak limiter: (limited copy, largest gain reduction in dB).

    The gain needed at each sample (ceiling / true peak) is spread to a minimum over +-window
    and then smoothed by two boxes whose combined reach is within that window. Every smoothed
    value is therefore an average of minima that each include the sample itself, so the gain
    never exceeds what the sample needs (no overshoot, by construction), yet changes over
    ~10 ms: a short, soft dip around each peak instead of clipping or lowering the whole clip.
    """
    ceiling = 10.0 ** (ceiling_dbfs / 20.0) * 0.999  # margin for int16 rounding
    need = np.minimum(1.0, ceiling / np.maximum(true_peak_envelope(x), 1e-12))
    if need.min() >= 1.0:
        return x.copy(), 0.0
    w = max(2, round(rate * window_ms / 1000.0))
    spread = minimum_filter1d(need, size=2 * w + 1, mode="nearest")
    half = w // 2
    box = np.full(2 * half + 1, 1.0 / (2 * half + 1))
    g = spread
    for _ in range(2):
        g = np.convolve(np.pad(g, half, mode="edge"), box, mode="valid")
    g = np.minimum(g, need)  # float rounding only; the construction already ensures it
    return x * g, -20.0 * math.log10(float(g.min()))


def apply_gain(x: Float, db: float) -> Float:
    factor: float = 10.0 ** (db / 20.0)
    return x * factor


@dataclass(frozen=True)
class Levelled:
    samples: Float
    lufs: float  # after levelling, by ``method``
    method: str  # "integrated" or "rms" (see clip_loudness)
    gain_db: float  # applied before the limiter
    limited_db: float  # the limiter's largest gain reduction


def normalize(
    x: Float,
    rate: int,
    speech: Speech,
    target_lufs: float,
    *,
    ceiling_dbfs: float = -1.0,
    max_limit_db: float = 6.0,
) -> Levelled | None:
    """Gain ``x`` to ``target_lufs`` with peaks soft-limited to ``ceiling_dbfs``.

    ``speech`` locates the speech in ``x`` (for the RMS method). None if ``x`` has no measurable
    loudness. The limiter's dips cost a little loudness, so the gain is re-measured and corrected
    (converges in 2-3 rounds); when more than ``max_limit_db`` of limiting would be needed, the
    gain is capped there instead and the clip stays quieter than the target.
    """
    measured, _ = clip_loudness(x, rate, speech)
    if not math.isfinite(measured):
        return None
    g = target_lufs - measured
    cap = math.inf
    for attempt in range(5):
        z, reduction = soft_limit(apply_gain(x, g), rate, ceiling_dbfs)
        level, method = clip_loudness(z, rate, speech)
        if reduction > max_limit_db + 0.01:
            # The limiter's reduction grows dB for dB with the gain: this is the most we allow.
            cap = min(cap, g - (reduction - max_limit_db))
        nxt = min(g + (target_lufs - level), cap)
        if abs(nxt - g) < 0.05 or attempt == 4:
            break
        g = nxt
    return Levelled(z, level, method, g, reduction)


def fade_curve(n: int) -> Float:
    """Half-Hann rise over ``n`` samples (0 -> 1): smoother at both ends than a linear ramp."""
    if n <= 0:
        return np.ones(0)
    curve: Float = 0.5 - 0.5 * np.cos(np.pi * (np.arange(n) + 0.5) / n)
    return curve


def fade(x: Float, rate: int, in_ms: float, out_ms: float) -> Float:
    """A copy of ``x`` with a fade-in and a fade-out (each clamped to the clip's length)."""
    y = x.copy()
    n_in = min(y.size, round(rate * in_ms / 1000.0))
    n_out = min(y.size, round(rate * out_ms / 1000.0))
    if n_in:
        y[:n_in] *= fade_curve(n_in)
    if n_out:
        y[y.size - n_out :] *= fade_curve(n_out)[::-1]
    return y


def cut(x: Float, start: int, end: int) -> Float:
    """``x[start:end]``, zero-padded where the range runs past either end of ``x``."""
    before = max(0, -start)
    after = max(0, end - x.size)
    body = x[max(0, start) : min(x.size, end)]
    if before or after:
        return np.concatenate((np.zeros(before), body, np.zeros(after)))
    return body.copy()


def trim(
    x: Float,
    rate: int,
    speech: Speech,
    *,
    lead_ms: float,
    trail_ms: float,
    fade_in_ms: float,
    fade_out_ms: float,
) -> tuple[Float, Speech]:
    """Cut ``x`` to its speech plus fixed margins, with short fades; and the speech inside it.

    Margins missing from the recording are made of digital silence, so every clip starts and
    ends the same way however tightly it was cut before upload.
    """
    lead = round(rate * lead_ms / 1000.0)
    trail = round(rate * trail_ms / 1000.0)
    y = fade(cut(x, speech.start - lead, speech.end + trail), rate, fade_in_ms, fade_out_ms)
    return y, replace(speech, start=lead, end=y.size - trail)

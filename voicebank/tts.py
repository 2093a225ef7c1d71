"""Text-to-speech stand-in for phrases nobody recorded: festival, espeak-ng, or a placeholder.

TTS is a stop-gap for phrases nobody recorded yet (the planner reports them as missing), so it has
to be clear, about as loud as the voice, and close enough to the actor that a sentence spoken by
the stand-in does not sound like a second person barged in. ``default_tts`` picks, best first:

1. ``FestivalTts``: festival's ``text2wave`` with the HTS voice ``cmu_us_slt_arctic_hts`` (Debian
   ``festival`` + ``festvox-us-slt-hts``), a female US voice. Measured by ``bench/tts.py`` against
   the demo actor (Allison, Asterisk's en prompts) on 12 sentences over a phone band: median pitch
   2 semitones under hers, the same speaking rate (0.99 of hers), and by far the most intelligible
   stand-in (pocketsphinx word error rate 0.22, espeak-ng 0.75 or worse, Allison herself 0.47).
2. ``EspeakTts`` with the female variant ``en-us+f2``: the actor's pitch (within 0.1 semitone) and
   rate, but robotic and hard to follow (WER 0.75). Plain ``en-us`` is a male voice an octave
   under the actor (WER 0.95).
3. ``PlaceholderTts``: a soft chime as long as the words would be, where neither is installed.

Output is mono int16 at RENDER_RATE, trimmed and loudness-matched like an ingested clip, so a Say
sits level with the clips around it. Engines run in a subprocess with a timeout, one per distinct
text: results are cached per text, so a warm render starts no process. Texts are bounded
(``MAX_TEXT_CHARS``) and a failure is a ``TtsError`` (or the placeholder, when given a fallback).
"""

from __future__ import annotations

import functools
import logging
import math
import re
import shutil
import struct
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar, Protocol

import numpy as np
from numpy.typing import NDArray

from voicebank import levels, pcm
from voicebank.errors import TtsError
from voicebank.pcm import MASTER_RATE, Float

Int16 = NDArray[np.int16]
RENDER_RATE = MASTER_RATE
#: Longest text any engine accepts, after whitespace is collapsed: ~35 s of speech, far more than a
#: sentence of a reminder. Longer text is a caller's mistake and is refused, not truncated.
MAX_TEXT_CHARS = 500
ESPEAK_FEMALE_VOICE = "en-us+f2"
FESTIVAL_VOICE = "cmu_us_slt_arctic_hts"
FESTIVAL_SPEED = 1.0
#: Where Debian's (and a source build's) festival looks for voices: <dir>/<language>/<voice>/.
FESTIVAL_VOICE_DIRS = (
    Path("/usr/share/festival/voices"),
    Path("/usr/lib/festival/voices"),
    Path("/usr/local/share/festival/voices"),
)
log = logging.getLogger(__name__)


class Tts(Protocol):
    """Speaks text as mono int16 PCM at RENDER_RATE (read-only, possibly shared: copy to edit)."""

    def speak(self, text: str) -> Int16: ...


def estimate_ms(text: str) -> int:
    """Rough spoken length: ~70 ms per letter or space (about 150 words a minute)."""
    return max(300, 70 * len(" ".join(text.split())))


def clean_text(text: str) -> str:
    """Whitespace collapsed; TtsError when longer than MAX_TEXT_CHARS."""
    text = " ".join(text.split())
    if len(text) > MAX_TEXT_CHARS:
        raise TtsError(
            f"text to speak is {len(text)} characters, over the limit of {MAX_TEXT_CHARS}: "
            f"{text[:40]!r}..."
        )
    return text


def _frozen(x: Int16) -> Int16:
    x.setflags(write=False)  # cached and shared between renders: nobody may change it
    return x


def _level(x: Float, rate: int, target_lufs: float) -> Int16:
    """Trim and loudness-match synthetic speech the way ingest treats a recording."""
    speech = levels.find_speech(x, rate)
    if speech is None:
        return np.zeros(0, dtype=np.int16)
    y, inside = levels.trim(x, rate, speech, lead_ms=15, trail_ms=40, fade_in_ms=5, fade_out_ms=10)
    levelled = levels.normalize(y, rate, inside, target_lufs)
    return pcm.to_int16(y if levelled is None else levelled.samples)


_HEADER = struct.Struct("<4sI4s4sIHHIIHH4sI")  # the canonical 44-byte PCM WAV header


def _appended_header(body: bytes) -> bool:
    """True when ``body`` ends with a canonical WAV header that describes the samples before it.

    A writer that rewrites its header once the sizes are known, but cannot seek back on a pipe,
    appends it instead (festival's ``text2wave -o -`` does): read as samples, those 44 bytes
    are a full-scale click at the end of every sentence.
    """
    if len(body) < _HEADER.size:
        return False
    riff, riff_size, wave, fmt, *_, data_id, data_size = _HEADER.unpack_from(
        body, len(body) - _HEADER.size
    )
    return bool(
        riff == b"RIFF"
        and wave == b"WAVE"
        and fmt == b"fmt "
        and data_id == b"data"
        and data_size == len(body) - _HEADER.size
        and riff_size == data_size + 36
    )


def parse_wav_stream(data: bytes, source: str = "espeak-ng") -> tuple[Int16, int]:
    """A 16-bit PCM WAV written to a pipe (sizes unknown, often 0 or 0x7ffff000) -> (mono, rate).

    soundfile trusts the header's sizes, which a streaming writer cannot know, so read the
    chunks ourselves and take everything after ``data`` as samples, less a finished header that
    the writer appended (see ``_appended_header``). ``source`` names the writer in errors.
    """
    if data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise TtsError(f"{source} did not write a WAV file")
    pos, rate, channels, bits = 12, 0, 0, 0
    while pos + 8 <= len(data):
        cid, size = data[pos : pos + 4], struct.unpack_from("<I", data, pos + 4)[0]
        if cid == b"fmt ":
            _, channels, rate = struct.unpack_from("<HHI", data, pos + 8)
            bits = struct.unpack_from("<H", data, pos + 22)[0]
        elif cid == b"data":
            if bits != 16 or channels < 1:
                raise TtsError(f"{source} wrote {bits}-bit, {channels}-channel audio")
            body = data[pos + 8 :]
            if _appended_header(body):
                body = body[: -_HEADER.size]
            body = body[: len(body) - len(body) % (2 * channels)]
            samples = np.frombuffer(body, dtype="<i2").reshape(-1, channels)
            return samples.mean(axis=1).astype(np.int16), rate
        pos += 8 + size + (size & 1)
    raise TtsError(f"{source}'s WAV has no data chunk")


class _ProcessTts:
    """An engine run as a subprocess that reads text on stdin and writes a WAV to stdout.

    Levelled and cached per text (LRU): the process runs once per distinct text. Text goes on
    stdin, never in argv, so a Say such as "-5 dollars" is not read as an option nor as code.
    """

    engine: ClassVar[str]

    def __init__(
        self,
        *,
        executable: str,
        target_lufs: float,
        cache_size: int,
        timeout_s: float,
        fallback: Tts | None,
    ) -> None:
        self.executable = executable
        self.target_lufs = target_lufs
        self.timeout_s = timeout_s
        self.fallback = fallback
        self._cached = functools.lru_cache(maxsize=cache_size)(self._synthesize)

    def speak(self, text: str) -> Int16:
        text = clean_text(text)  # an overlong text is refused even with a fallback
        if not text:
            return _frozen(np.zeros(0, dtype=np.int16))
        try:
            return self._cached(text)
        except TtsError:
            if self.fallback is None:
                raise
            log.warning("%s failed for %r; using the fallback", self.engine, text, exc_info=True)
            return self.fallback.speak(text)

    def cache_info(self) -> functools._CacheInfo:
        return self._cached.cache_info()

    def _command(self) -> list[str]:
        raise NotImplementedError

    def _check_stderr(self, stderr: str) -> None:
        """Raise TtsError for an engine that reports failure on stderr yet exits 0."""

    def _synthesize(self, text: str) -> Int16:
        try:
            done = subprocess.run(
                self._command(),
                input=text.encode("utf-8"),
                capture_output=True,
                timeout=self.timeout_s,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise TtsError(
                f"{self.engine} took longer than {self.timeout_s:g} s for {text[:40]!r}"
            ) from exc
        except OSError as exc:
            raise TtsError(f"{self.engine} could not run: {exc}") from exc
        err = done.stderr.decode("utf-8", "replace").strip()
        if done.returncode != 0:
            raise TtsError(f"{self.engine} failed (exit {done.returncode}): {err[:200]}")
        self._check_stderr(err)
        samples, rate = parse_wav_stream(done.stdout, self.engine)
        x = pcm.resample(pcm.from_int16(samples), rate, RENDER_RATE)
        out = _level(x, RENDER_RATE, self.target_lufs)
        if out.size == 0:
            raise TtsError(f"{self.engine} produced silence for {text!r}")
        return _frozen(out)


class EspeakTts(_ProcessTts):
    """espeak-ng (``--stdout`` WAV); by default its female variant ``en-us+f2``."""

    engine = "espeak-ng"

    def __init__(
        self,
        *,
        voice: str = ESPEAK_FEMALE_VOICE,
        words_per_minute: int = 160,
        target_lufs: float = -19.0,
        executable: str = "espeak-ng",
        cache_size: int = 256,
        timeout_s: float = 10.0,
        fallback: Tts | None = None,
    ) -> None:
        super().__init__(
            executable=executable,
            target_lufs=target_lufs,
            cache_size=cache_size,
            timeout_s=timeout_s,
            fallback=fallback,
        )
        self.voice = voice
        self.words_per_minute = words_per_minute

    @staticmethod
    def available(executable: str = "espeak-ng") -> bool:
        return shutil.which(executable) is not None

    @property
    def label(self) -> str:
        """What speaks, for a cache key or a log line: engine, voice and settings."""
        return f"espeak-ng {self.voice} {self.words_per_minute}wpm {self.target_lufs:g}LUFS"

    def _command(self) -> list[str]:
        return [
            self.executable,
            "--stdin",
            "--stdout",
            "-v",
            self.voice,
            "-s",
            str(self.words_per_minute),
        ]


_SCHEME_NAME = re.compile(r"[a-z][a-z0-9_]*")


def festival_voice_installed(voice: str, dirs: Sequence[Path] = FESTIVAL_VOICE_DIRS) -> bool:
    """True when ``<dir>/<language>/<voice>/`` exists under one of festival's voice folders."""
    return any(d.is_dir() and any(d.glob(f"*/{voice}/festvox")) for d in dirs)


class FestivalTts(_ProcessTts):
    """festival's ``text2wave`` with an HTS voice (default: cmu_us_slt_arctic_hts, female US).

    ``speed`` is the HTS engine's ``-r`` (HTS voices only). As trained (1.0), slt already speaks
    at the demo actor's rate, and bench/tts.py found faster costs intelligibility (pocketsphinx
    WER 0.25, 0.27, 0.40 at 1.0, 1.05, 1.1). Its pitch, about 2 semitones under the actor's,
    cannot be moved: festival's HTS module ignores hts_engine's ``-fm``.
    One short-lived process per distinct text (about 0.4 s for a sentence, most of it loading the
    voice), then the cache: festival's own server would save the load but brings a port, a
    lifetime to manage and a Scheme interpreter listening on it, for texts synthesised once.
    """

    engine = "festival"

    def __init__(
        self,
        *,
        voice: str = FESTIVAL_VOICE,
        speed: float = FESTIVAL_SPEED,
        target_lufs: float = -19.0,
        executable: str = "text2wave",
        cache_size: int = 256,
        timeout_s: float = 20.0,
        fallback: Tts | None = None,
    ) -> None:
        if not _SCHEME_NAME.fullmatch(voice):
            raise ValueError(f"not a festival voice name: {voice!r}")
        if not 0.5 <= speed <= 2.0:
            raise ValueError(f"speed {speed} is outside 0.5..2.0")
        super().__init__(
            executable=executable,
            target_lufs=target_lufs,
            cache_size=cache_size,
            timeout_s=timeout_s,
            fallback=fallback,
        )
        self.voice = voice
        self.speed = speed

    @staticmethod
    def available(executable: str = "text2wave", voice: str = FESTIVAL_VOICE) -> bool:
        return shutil.which(executable) is not None and festival_voice_installed(voice)

    @property
    def label(self) -> str:
        """What speaks, for a cache key or a log line: engine, voice and settings."""
        return f"festival {self.voice} r{self.speed:g} {self.target_lufs:g}LUFS"

    def _command(self) -> list[str]:
        cmd = [self.executable, "-eval", f"(voice_{self.voice})"]
        if self.speed != 1.0:
            # After the voice is selected (it sets hts_engine_params): added to, not replacing.
            cmd += [
                "-eval",
                f'(set! hts_engine_params (append hts_engine_params \'(("-r" {self.speed:.3f}))))',
            ]
        return [*cmd, "-o", "-"]

    def _check_stderr(self, stderr: str) -> None:
        # festival reports Scheme errors (an unknown voice, a broken install) yet exits 0.
        if "SIOD ERROR" in stderr:
            raise TtsError(f"festival failed: {stderr[:200]}")


class PlaceholderTts:
    """A soft two-tone chime lasting about as long as the words would: audible, never silence.

    Used where no engine is installed. Alternating C5/E5 sine beeps with 15 ms raised-cosine
    edges, at the voice's loudness: obviously not speech, obviously "something is missing here".
    """

    TONES_HZ = (523.25, 659.25)
    BEEP_MS = 160
    GAP_MS = 90

    def __init__(self, *, target_lufs: float = -19.0, cache_size: int = 256) -> None:
        self.target_lufs = target_lufs
        self._cached = functools.lru_cache(maxsize=cache_size)(self._pattern)

    @property
    def label(self) -> str:
        return f"placeholder chime {self.target_lufs:g}LUFS"

    def speak(self, text: str) -> Int16:
        return self._cached(estimate_ms(clean_text(text)))

    def _pattern(self, duration_ms: int) -> Int16:
        rate = RENDER_RATE
        beep = round(rate * self.BEEP_MS / 1000)
        gap = round(rate * self.GAP_MS / 1000)
        n_beeps = max(2, math.ceil(duration_ms / (self.BEEP_MS + self.GAP_MS)))
        t = np.arange(beep) / rate
        parts: list[Float] = []
        for i in range(n_beeps):
            tone = 0.3 * np.sin(2 * np.pi * self.TONES_HZ[i % 2] * t)
            parts.append(levels.fade(tone, rate, 15, 15))
            if i + 1 < n_beeps:
                parts.append(np.zeros(gap))
        return _frozen(_level(np.concatenate(parts), rate, self.target_lufs))


def default_tts(
    *,
    target_lufs: float = -19.0,
    festival: str = "text2wave",
    executable: str = "espeak-ng",
) -> Tts:
    """The best installed stand-in: festival (slt), else espeak-ng (en-us+f2), else the chime.

    A speaking engine falls back to the placeholder when it fails on a text, so a render never
    breaks on TTS. ``festival`` and ``executable`` name the text2wave and espeak-ng programs.
    """
    placeholder = PlaceholderTts(target_lufs=target_lufs)
    if FestivalTts.available(festival):
        return FestivalTts(target_lufs=target_lufs, executable=festival, fallback=placeholder)
    if EspeakTts.available(executable):
        return EspeakTts(target_lufs=target_lufs, executable=executable, fallback=placeholder)
    return placeholder


# --- measuring a voice (bench/tts.py and the tests compare a stand-in with its actor) ----------


def pitch_track(
    x: Float,
    rate: int,
    *,
    fmin: float = 60.0,
    fmax: float = 400.0,
    frame_ms: float = 40.0,
    hop_ms: float = 10.0,
    threshold: float = 0.15,
) -> Float:
    """Fundamental frequency (Hz) of each voiced frame, by YIN (de Cheveigné & Kawahara 2002).

    Frames quieter than 35 dB under the loudest or than -60 dBFS, or without a dip of the
    cumulative-mean-normalised difference under ``threshold`` between ``fmin`` and ``fmax``, are
    unvoiced and left out. Parabolic interpolation around the dip gives sub-sample lags.
    """
    n = round(rate * frame_ms / 1000.0)
    hop = round(rate * hop_ms / 1000.0)
    tmin, tmax = max(2, int(rate / fmax)), int(math.ceil(rate / fmin))
    if x.size < n + tmax + 1:
        return np.zeros(0)
    starts = np.arange(0, x.size - n - tmax, hop)
    idx = starts[:, None] + np.arange(n + tmax + 1)[None, :]
    frames = x[idx]
    energy_db = 20.0 * np.log10(np.maximum(np.sqrt(np.mean(frames[:, :n] ** 2, axis=1)), 1e-9))
    loud = (energy_db > energy_db.max() - 35.0) & (energy_db > -60.0)
    diff = np.empty((frames.shape[0], tmax + 1))
    diff[:, 0] = 0.0
    for tau in range(1, tmax + 1):
        d = frames[:, :n] - frames[:, tau : tau + n]
        diff[:, tau] = np.sum(d * d, axis=1)
    cum = np.cumsum(diff[:, 1:], axis=1)
    cmnd = np.ones_like(diff)
    cmnd[:, 1:] = diff[:, 1:] * np.arange(1, tmax + 1) / np.maximum(cum, 1e-12)
    out: list[float] = []
    for i in np.flatnonzero(loud):
        row = cmnd[i]
        below = np.flatnonzero(row[tmin : tmax + 1] < threshold)
        if below.size == 0:
            continue
        t = int(below[0]) + tmin
        while t + 1 <= tmax and row[t + 1] < row[t]:
            t += 1
        if t >= tmax:
            continue
        a, b, c = row[t - 1], row[t], row[t + 1]
        den = a - 2 * b + c
        shift = 0.5 * (a - c) / den if den > 1e-12 else 0.0
        out.append(rate / (t + shift))
    return np.asarray(out, dtype=np.float64)


def median_pitch_hz(x: Float, rate: int) -> float:
    """Median fundamental frequency of ``x``'s voiced frames; NaN when nothing is voiced."""
    if rate > 16000:  # plenty for a voice's fundamental, and YIN's cost grows with rate squared
        x, rate = pcm.resample(x, rate, 16000), 16000
    f0 = pitch_track(x, rate)
    return float(np.median(f0)) if f0.size else math.nan


def semitones(f: float, reference: float) -> float:
    """How far ``f`` lies above ``reference`` in semitones (negative: below)."""
    return 12.0 * math.log2(f / reference)

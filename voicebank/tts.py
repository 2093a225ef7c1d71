"""Text-to-speech for Say segments in rendered previews: espeak-ng, or an audible placeholder.

TTS is a stop-gap for phrases nobody recorded yet (the planner reports them as missing), so it
only has to be clear and about as loud as the voice. Output is mono int16 at RENDER_RATE,
trimmed and loudness-matched like an ingested clip, so a Say sits level with the clips around
it. Results are cached per text: a warm render starts no process.
"""

from __future__ import annotations

import functools
import logging
import math
import shutil
import struct
import subprocess
from typing import Protocol

import numpy as np
from numpy.typing import NDArray

from voicebank import levels, pcm
from voicebank.errors import TtsError
from voicebank.pcm import MASTER_RATE, Float

Int16 = NDArray[np.int16]
RENDER_RATE = MASTER_RATE
log = logging.getLogger(__name__)


class Tts(Protocol):
    """Speaks text as mono int16 PCM at RENDER_RATE (read-only, possibly shared: copy to edit)."""

    def speak(self, text: str) -> Int16: ...


def estimate_ms(text: str) -> int:
    """Rough spoken length: ~70 ms per letter or space (about 150 words a minute)."""
    return max(300, 70 * len(" ".join(text.split())))


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


def parse_wav_stream(data: bytes) -> tuple[Int16, int]:
    """A 16-bit PCM WAV written to a pipe (sizes unknown, often 0 or 0x7ffff000) -> (mono, rate).

    soundfile trusts the header's sizes, which a streaming writer cannot know, so read the
    chunks ourselves and take everything after ``data`` as samples.
    """
    if data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise TtsError("espeak-ng did not write a WAV file")
    pos, rate, channels, bits = 12, 0, 0, 0
    while pos + 8 <= len(data):
        cid, size = data[pos : pos + 4], struct.unpack_from("<I", data, pos + 4)[0]
        if cid == b"fmt ":
            _, channels, rate = struct.unpack_from("<HHI", data, pos + 8)
            bits = struct.unpack_from("<H", data, pos + 22)[0]
        elif cid == b"data":
            if bits != 16 or channels < 1:
                raise TtsError(f"espeak-ng wrote {bits}-bit, {channels}-channel audio")
            body = data[pos + 8 :]
            body = body[: len(body) - len(body) % (2 * channels)]
            samples = np.frombuffer(body, dtype="<i2").reshape(-1, channels)
            return samples.mean(axis=1).astype(np.int16), rate
        pos += 8 + size + (size & 1)
    raise TtsError("espeak-ng's WAV has no data chunk")


class EspeakTts:
    """espeak-ng in a subprocess (``--stdout`` WAV), levelled and cached per text (LRU)."""

    def __init__(
        self,
        *,
        voice: str = "en-us",
        words_per_minute: int = 160,
        target_lufs: float = -19.0,
        executable: str = "espeak-ng",
        cache_size: int = 256,
        timeout_s: float = 10.0,
        fallback: Tts | None = None,
    ) -> None:
        self.voice = voice
        self.words_per_minute = words_per_minute
        self.target_lufs = target_lufs
        self.executable = executable
        self.timeout_s = timeout_s
        self.fallback = fallback
        self._cached = functools.lru_cache(maxsize=cache_size)(self._synthesize)

    @staticmethod
    def available(executable: str = "espeak-ng") -> bool:
        return shutil.which(executable) is not None

    def speak(self, text: str) -> Int16:
        text = " ".join(text.split())
        if not text:
            return _frozen(np.zeros(0, dtype=np.int16))
        try:
            return self._cached(text)
        except TtsError:
            if self.fallback is None:
                raise
            log.warning("espeak-ng failed for %r; using the placeholder", text, exc_info=True)
            return self.fallback.speak(text)

    def _synthesize(self, text: str) -> Int16:
        # Text on stdin, not argv: a Say such as "-5 dollars" must not be read as an option.
        cmd = [
            self.executable,
            "--stdin",
            "--stdout",
            "-v",
            self.voice,
            "-s",
            str(self.words_per_minute),
        ]
        try:
            done = subprocess.run(
                cmd,
                input=text.encode("utf-8"),
                capture_output=True,
                timeout=self.timeout_s,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise TtsError(f"espeak-ng could not run: {exc}") from exc
        if done.returncode != 0:
            err = done.stderr.decode("utf-8", "replace").strip()[:200]
            raise TtsError(f"espeak-ng failed (exit {done.returncode}): {err}")
        samples, rate = parse_wav_stream(done.stdout)
        x = pcm.resample(pcm.from_int16(samples), rate, RENDER_RATE)
        out = _level(x, RENDER_RATE, self.target_lufs)
        if out.size == 0:
            raise TtsError(f"espeak-ng produced silence for {text!r}")
        return _frozen(out)


class PlaceholderTts:
    """A soft two-tone chime lasting about as long as the words would: audible, never silence.

    Used where espeak-ng is not installed. Alternating C5/E5 sine beeps with 15 ms raised-cosine
    edges, at the voice's loudness: obviously not speech, obviously "something is missing here".
    """

    TONES_HZ = (523.25, 659.25)
    BEEP_MS = 160
    GAP_MS = 90

    def __init__(self, *, target_lufs: float = -19.0, cache_size: int = 256) -> None:
        self.target_lufs = target_lufs
        self._cached = functools.lru_cache(maxsize=cache_size)(self._pattern)

    def speak(self, text: str) -> Int16:
        return self._cached(estimate_ms(text))

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


def default_tts(*, target_lufs: float = -19.0, executable: str = "espeak-ng") -> Tts:
    """espeak-ng when installed (falling back to the placeholder if it fails), else the chime."""
    placeholder = PlaceholderTts(target_lufs=target_lufs)
    if EspeakTts.available(executable):
        return EspeakTts(target_lufs=target_lufs, executable=executable, fallback=placeholder)
    return placeholder

"""Render a Plan to audio: cached clip PCM, planned pauses, 5 ms fades, one in-process MP3 encode.

    Plan.looped_segments() --> [clip PCM (LRU) | TTS PCM (cached) | zeros] --fades--> one numpy
    concatenation --> lameenc (one encode) --> MP3 bytes

No process is started per render (architecture decision): a clip's FLAC master is decoded once
and kept as int16 PCM in an LRU keyed by clip id, with its edge fades already applied; Say
segments come from the TTS engine's own per-text cache. A warm 30 s render costs the encode plus
about a millisecond of numpy (bench/render.py prints the figures).

The render encoder is lameenc (LAME -q 7, 48 kbps CBR): ~4x faster than soundfile's tagged MP3
writer for 30 s at 22.05 kHz. Its output has no gapless tag, so decoders play ~50 ms of encoder
delay plus up to one frame of padding: harmless once per preview, unlike once per <Play>ed clip.
"""

from __future__ import annotations

import functools
import io
from collections.abc import Callable

import numpy as np
import soundfile as sf
from numpy.typing import NDArray

from prompts.models import ClipSegment, PauseSegment, Plan, SaySegment
from voicebank import encode, levels, pcm
from voicebank.errors import ClipUnavailable
from voicebank.pcm import MASTER_RATE
from voicebank.tts import Tts, default_tts

Int16 = NDArray[np.int16]
RENDER_RATE = MASTER_RATE
FADE_MS = 5.0


def faded(x: Int16, rate: int, fade_ms: float = FADE_MS) -> Int16:
    """A copy of ``x`` with half-Hann fade-in and fade-out: no click where pieces meet."""
    y = x.copy()
    n = min(round(rate * fade_ms / 1000.0), y.size // 2)
    if n:
        curve = levels.fade_curve(n)
        y[:n] = np.round(y[:n] * curve).astype(np.int16)
        y[y.size - n :] = np.round(y[y.size - n :] * curve[::-1]).astype(np.int16)
    return y


def decode_master(data: bytes, rate: int = RENDER_RATE) -> Int16:
    """FLAC master (or any libsndfile format) -> mono int16 at ``rate``; raises ValueError etc."""
    samples, sr = sf.read(io.BytesIO(data), dtype="int16", always_2d=True)
    if samples.shape[1] == 1 and sr == rate:
        return np.ascontiguousarray(samples[:, 0])
    x = pcm.resample(pcm.to_mono(pcm.from_int16(samples)), int(sr), rate)
    return pcm.to_int16(x)


class Renderer:
    """Renders Plans for previews; safe to share between threads (and between requests).

    ``load_master(clip_id)`` returns a clip's FLAC master bytes (from storage). ``cache_size``
    clips are kept decoded: ~44 KB per second of audio, so 2048 one-second clips use ~90 MB.
    """

    def __init__(
        self,
        load_master: Callable[[str], bytes],
        *,
        tts: Tts | None = None,
        cache_size: int = 2048,
        fade_ms: float = FADE_MS,
        bitrate_kbps: int = encode.RENDER_BITRATE_KBPS,
        quality: int = encode.RENDER_QUALITY,
    ) -> None:
        self.load_master = load_master
        self.tts: Tts = tts if tts is not None else default_tts()
        self.rate = RENDER_RATE
        self.fade_ms = fade_ms
        self.bitrate_kbps = bitrate_kbps
        self.quality = quality
        # lru_cache is thread-safe and does not cache exceptions: a clip that failed to load is
        # tried again next time (storage may have recovered).
        self._clip_cache = functools.lru_cache(maxsize=cache_size)(self._decode_clip)

    def _decode_clip(self, clip_id: str) -> Int16:
        try:
            data = self.load_master(clip_id)
        except Exception as exc:
            raise ClipUnavailable(clip_id, f"loading its master failed: {exc!r}") from exc
        try:
            x = decode_master(data, self.rate)
        except Exception as exc:  # libsndfile raises LibsndfileError, RuntimeError, ValueError
            raise ClipUnavailable(clip_id, f"its master is not readable audio ({exc})") from exc
        out = faded(x, self.rate, self.fade_ms)
        out.setflags(write=False)
        return out

    def clip_pcm(self, clip_id: str) -> Int16:
        """The clip's decoded, edge-faded PCM (cached; read-only)."""
        return self._clip_cache(clip_id)

    def cache_info(self) -> functools._CacheInfo:
        return self._clip_cache.cache_info()

    def render_pcm(self, plan: Plan) -> Int16:
        """Mono int16 PCM at RENDER_RATE of every pass of the plan, with the loop pauses."""
        pieces: list[Int16] = []
        for seg in plan.looped_segments():
            if isinstance(seg, ClipSegment):
                pieces.append(self.clip_pcm(seg.clip_id))
            elif isinstance(seg, SaySegment):
                pieces.append(faded(self.tts.speak(seg.text), self.rate, self.fade_ms))
            elif isinstance(seg, PauseSegment):
                pieces.append(np.zeros(round(self.rate * max(0, seg.ms) / 1000), np.int16))
        if not pieces:
            return np.zeros(0, dtype=np.int16)
        # One concatenation: pydub's ``+`` would copy the growing message once per segment.
        return np.concatenate(pieces)

    def render(self, plan: Plan) -> bytes:
        """MP3 bytes (mono, RENDER_RATE, CBR) of ``plan.looped_segments()``."""
        return encode.mp3_fast(
            self.render_pcm(plan), self.rate, bitrate_kbps=self.bitrate_kbps, quality=self.quality
        )

    def render_wav(self, plan: Plan) -> bytes:
        """16-bit WAV of the plan: no encoder at all (under 1 ms), for players that take WAV."""
        buf = io.BytesIO()
        sf.write(buf, self.render_pcm(plan), self.rate, format="WAV", subtype="PCM_16")
        return buf.getvalue()

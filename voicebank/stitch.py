"""Stitched sentences: one MP3 per sentence of a call, rendered once from PCM and shared.

    SentenceRecipe (voice, clip takes, gaps, tail, target) --key--> clips/sentences/ab/<sha256>.mp3
    clip masters (Renderer's decoded LRU) + silent gaps --> loudness-matched sentence + tail
    --> mp3_gapless (Xing/Info + LAME tag) --> storage.put, once per key

Twilio fetches every ``<Play>`` separately through caching proxies, documents no gapless decoding,
and ``<Pause>`` has whole-second steps (research/audio.md §6): so word gaps and the pause after a
sentence live inside the sentence's own audio, and the call plays one file per sentence.

The key is the sha256 of the recipe plus everything else that decides the bytes (render and
encoder settings, a format version), so the same recipe gives the same key in every process and
a changed encoder gives new URLs (Twilio caches by URL). The bytes are deterministic too (tested).
Keys live under ``clips/``: the bucket policy that publishes delivery MP3s covers them
(docs/storage.md), and their digest names a recipe, not the bytes, so ``key_digest`` (which
verifies ``kind/ab/<sha256 of the bytes>.ext``) must not match them, and does not.
"""

from __future__ import annotations

import concurrent.futures
import functools
import hashlib
import json
import math
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
from numpy.typing import NDArray

from voicebank import encode, levels, pcm
from voicebank.catalogue import Catalogue
from voicebank.errors import RenderError
from voicebank.render import FADE_MS, RENDER_RATE, Renderer
from voicebank.storage.base import CONTENT_TYPES, Storage

Int16 = NDArray[np.int16]

#: Bump when the rendering below changes in a way the settings in ``_key_payload`` do not name:
#: every sentence then gets a new key (and URL) and is rendered again.
RECIPE_FORMAT = 1
KEY_PREFIX = "clips/sentences"
MAX_CLIPS = 64
MAX_SILENCE_MS = 10_000  # per gap and for the tail
MIN_TARGET_LUFS, MAX_TARGET_LUFS = -50.0, -5.0
CEILING_DBTP = -1.0
MAX_LIMIT_DB = 6.0
# The sentence's true peak is taken as its loudest clip's (the gaps are silence and each clip
# fades to zero at its edges); this margin covers what joining them could add.
_PEAK_MARGIN_DB = 0.1
_MAX_ID_LEN = 64


class StitchError(RenderError, ValueError):
    """A sentence recipe is invalid (a planner bug): says which field and why."""


def _whole_ms(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise StitchError(
            f"sentence recipe: {name} must be a number of milliseconds, not {value!r}"
        )
    if isinstance(value, float) and not value.is_integer():
        raise StitchError(f"sentence recipe: {name} = {value!r}: whole milliseconds only")
    ms = int(value)
    if not 0 <= ms <= MAX_SILENCE_MS:
        raise StitchError(
            f"sentence recipe: {name} = {ms} ms is out of range (0 to {MAX_SILENCE_MS} ms)"
        )
    return ms


def _identifier(name: str, value: object) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)  # catalogue ids are integers; the planner spells them as strings
    if not isinstance(value, str) or not value.strip():
        raise StitchError(f"sentence recipe: {name} must be a non-empty string, not {value!r}")
    if len(value) > _MAX_ID_LEN or not value.isprintable():
        raise StitchError(
            f"sentence recipe: {name} {value[:80]!r} must be printable and at most "
            f"{_MAX_ID_LEN} characters"
        )
    return value


@dataclass(frozen=True)
class SentenceRecipe:
    """Everything one stitched sentence is made of (validated; lists become tuples).

    ``clip_ids`` name takes (a new take is a new clip id), in the order spoken; ``gaps_ms[i]``
    is the silence between clip i and clip i+1 (word gaps, comma pauses); ``tail_ms`` is the pause
    after the sentence, baked into the file; ``target_lufs`` the loudness of the whole sentence.
    ``head_ms`` is silence before it: the pause after a sentence the fallback voice said, which
    no ``<Say>`` can carry and ``<Pause>`` (whole seconds) cannot say.
    """

    voice_id: str
    clip_ids: tuple[str, ...]
    gaps_ms: tuple[int, ...]
    tail_ms: int
    target_lufs: float
    head_ms: int = 0

    def __post_init__(self) -> None:
        voice_id = _identifier("voice_id", self.voice_id)
        if isinstance(self.clip_ids, str) or not isinstance(self.clip_ids, Iterable):
            raise StitchError("sentence recipe: clip_ids must be a sequence of clip ids")
        clip_ids = tuple(
            _identifier(f"clip_ids[{i}]", c) for i, c in enumerate(list(self.clip_ids))
        )
        if not 1 <= len(clip_ids) <= MAX_CLIPS:
            raise StitchError(
                f"sentence recipe: {len(clip_ids)} clips; a sentence has 1 to {MAX_CLIPS}"
            )
        if isinstance(self.gaps_ms, str) or not isinstance(self.gaps_ms, Iterable):
            raise StitchError("sentence recipe: gaps_ms must be a sequence of milliseconds")
        gaps = tuple(_whole_ms(f"gaps_ms[{i}]", g) for i, g in enumerate(list(self.gaps_ms)))
        if len(gaps) != len(clip_ids) - 1:
            raise StitchError(
                f"sentence recipe: {len(gaps)} gaps for {len(clip_ids)} clips; "
                f"it needs one between each two clips ({len(clip_ids) - 1})"
            )
        tail = _whole_ms("tail_ms", self.tail_ms)
        head = _whole_ms("head_ms", self.head_ms)
        target = self.target_lufs
        if isinstance(target, bool) or not isinstance(target, int | float):
            raise StitchError(f"sentence recipe: target_lufs must be a number, not {target!r}")
        if not (math.isfinite(target) and MIN_TARGET_LUFS <= target <= MAX_TARGET_LUFS):
            raise StitchError(
                f"sentence recipe: target_lufs = {target!r} is out of range "
                f"({MIN_TARGET_LUFS:g} to {MAX_TARGET_LUFS:g} LUFS)"
            )
        for name, value in (
            ("voice_id", voice_id),
            ("clip_ids", clip_ids),
            ("gaps_ms", gaps),
            ("tail_ms", tail),
            ("target_lufs", float(target)),
            ("head_ms", head),
        ):
            object.__setattr__(self, name, value)

    def to_dict(self) -> dict[str, Any]:
        return {
            "voice_id": self.voice_id,
            "clip_ids": list(self.clip_ids),
            "gaps_ms": list(self.gaps_ms),
            "tail_ms": self.tail_ms,
            "target_lufs": self.target_lufs,
            **({"head_ms": self.head_ms} if self.head_ms else {}),  # keys without it unchanged
        }

    def to_json(self) -> str:
        """Canonical JSON (sorted keys, no spaces): what the sentences table keeps."""
        return _canonical(self.to_dict())

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SentenceRecipe:
        fields = ("voice_id", "clip_ids", "gaps_ms", "tail_ms", "target_lufs")
        missing = [f for f in fields if f not in data]
        if missing:
            raise StitchError(f"sentence recipe: missing {', '.join(missing)}")
        return cls(**{f: data[f] for f in fields}, head_ms=data.get("head_ms", 0))

    @classmethod
    def from_json(cls, text: str) -> SentenceRecipe:
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise StitchError(f"sentence recipe: not JSON ({exc})") from exc
        if not isinstance(data, dict):
            raise StitchError("sentence recipe: not a JSON object")
        return cls.from_dict(data)

    @cached_property
    def key(self) -> str:
        """``clips/sentences/ab/<sha256>.mp3``: the storage key (and so the URL) of its MP3."""
        digest = hashlib.sha256(_canonical(_key_payload(self)).encode("ascii")).hexdigest()
        return f"{KEY_PREFIX}/{digest[:2]}/{digest}.mp3"


def _canonical(value: object) -> str:
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
    )


def _key_payload(recipe: SentenceRecipe) -> dict[str, Any]:
    """The recipe and every setting that decides its bytes (read at call time, so a changed
    setting changes the key)."""
    return {
        "format": RECIPE_FORMAT,
        "recipe": recipe.to_dict(),
        "render": {
            "rate": RENDER_RATE,
            "fade_ms": FADE_MS,
            "ceiling_dbtp": CEILING_DBTP,
            "max_limit_db": MAX_LIMIT_DB,
        },
        "encoder": encode.gapless_settings(),
    }


@dataclass(frozen=True)
class StitchedFile:
    """What was stored under a key: its recipe and the facts `bank check` verifies."""

    key: str
    recipe: SentenceRecipe
    sha256: str
    md5: str
    size: int
    duration_ms: int  # of the decoded audio: clips + gaps + tail


#: Called with each newly rendered file before it is stored (e.g. a row in stitched_sentences),
#: from the thread that rendered it; an exception stops the store and reaches ensure()'s caller.
Recorder = Callable[[StitchedFile], None]


@dataclass(frozen=True)
class StitchStats:
    renders: int = 0  # sentences rendered (and stored) by this stitcher
    known: int = 0  # ensure() answered from the in-process set of stored keys
    found: int = 0  # ensure() found the object already in storage (another process made it)
    joined: int = 0  # ensure() waited for the same recipe rendering in another thread


def _silence(rate: int, ms: int) -> Int16:
    return np.zeros(round(rate * ms / 1000), dtype=np.int16)


def level_sentence(
    body: Int16, rate: int, target_lufs: float, true_peak: float | None = None
) -> Int16:
    """The sentence gained to ``target_lufs`` (gated BS.1770 over the whole sentence), true peaks
    soft-limited to CEILING_DBTP. Under one 400 ms gating block (or all but silent) there is no
    integrated loudness to match, so the clips keep their own (already matched) level.

    ``true_peak`` (full scale 1.0), when the caller knows it, saves computing it: loudness and
    true peak both scale with the gain, so when the gained peak stays under the ceiling the
    gain alone is exact and the limiter (and its re-measuring) is skipped.
    """
    if body.size < levels.GATING_BLOCK_S * rate:
        return body
    x = pcm.from_int16(body)
    measured = levels.integrated_lufs(x, rate)
    if not math.isfinite(measured):
        return body
    gain = 10.0 ** ((target_lufs - measured) / 20.0)
    peak = true_peak if true_peak is not None else float(levels.true_peak_envelope(x).max())
    if peak * gain <= 10.0 ** ((CEILING_DBTP - _PEAK_MARGIN_DB) / 20.0):
        return pcm.to_int16(x * gain)
    # The speech span only matters to normalize() for clips under a gating block; not here.
    span = levels.Speech(0, x.size, threshold_db=-math.inf, floor_db=-math.inf, peak_db=0.0)
    out = levels.normalize(
        x, rate, span, target_lufs, ceiling_dbfs=CEILING_DBTP, max_limit_db=MAX_LIMIT_DB
    )
    return body if out is None else pcm.to_int16(out.samples)


class Stitcher:
    """Renders sentence recipes into storage, once per key; safe to share between threads.

    ``ensure(recipe)`` is blocking (decode, encode, storage I/O): async callers use
    ``asyncio.to_thread``. Concurrent calls for one recipe render it once (single flight); a key
    once stored is remembered, so later calls cost a set lookup.
    """

    def __init__(
        self,
        storage: Storage,
        renderer: Renderer,
        *,
        recorder: Recorder | None = None,
        max_known: int = 200_000,
    ) -> None:
        if renderer.rate != RENDER_RATE or renderer.fade_ms != FADE_MS:
            # The key names these settings; a renderer with others would make other bytes.
            raise ValueError(
                f"a Stitcher needs a renderer at {RENDER_RATE} Hz with {FADE_MS:g} ms fades "
                f"(got {renderer.rate} Hz, {renderer.fade_ms:g} ms)"
            )
        self.storage = storage
        self.renderer = renderer
        self.recorder = recorder
        self.max_known = max_known
        self._lock = threading.Lock()
        self._known: set[str] = set()
        self._flights: dict[str, concurrent.futures.Future[str]] = {}
        self._stats = StitchStats()
        # Each clip's true peak (full scale 1.0), as immutable as its cached PCM.
        self._clip_peak = functools.lru_cache(maxsize=renderer.cache_info().maxsize)(
            self._true_peak
        )

    def _true_peak(self, clip_id: str) -> float:
        return float(
            levels.true_peak_envelope(pcm.from_int16(self.renderer.clip_pcm(clip_id))).max()
        )

    # -- rendering (no storage) ---------------------------------------------------------------
    def render_pcm(self, recipe: SentenceRecipe) -> Int16:
        """Mono int16 at RENDER_RATE: clips and gaps, levelled as one sentence, then the tail."""
        rate = self.renderer.rate
        pieces: list[Int16] = []
        for i, clip_id in enumerate(recipe.clip_ids):
            if i:
                pieces.append(_silence(rate, recipe.gaps_ms[i - 1]))
            pieces.append(self.renderer.clip_pcm(clip_id))  # raises ClipUnavailable
        peak = max(self._clip_peak(c) for c in recipe.clip_ids)
        body = level_sentence(np.concatenate(pieces), rate, recipe.target_lufs, peak)
        return np.concatenate(
            (_silence(rate, recipe.head_ms), body, _silence(rate, recipe.tail_ms))
        )

    def render(self, recipe: SentenceRecipe) -> tuple[StitchedFile, bytes]:
        """The sentence's MP3 bytes (gapless-tagged, deterministic) and their facts."""
        audio = self.render_pcm(recipe)
        data = encode.mp3_gapless(audio, self.renderer.rate)
        facts = StitchedFile(
            key=recipe.key,
            recipe=recipe,
            sha256=hashlib.sha256(data).hexdigest(),
            md5=hashlib.md5(data, usedforsecurity=False).hexdigest(),
            size=len(data),
            duration_ms=round(1000 * audio.size / self.renderer.rate),
        )
        return facts, data

    # -- storing, once ------------------------------------------------------------------------
    def ensure(self, recipe: SentenceRecipe) -> str:
        """The recipe's key, once its MP3 is in storage (rendered and stored if it was not).

        Raises ClipUnavailable (a master is missing or unreadable) or StorageError; then nothing
        is stored, and the next call tries again.
        """
        key = recipe.key
        with self._lock:
            if key in self._known:
                self._add(known=1)
                return key
            flight = self._flights.get(key)
            leader = flight is None
            if flight is None:
                flight = self._flights[key] = concurrent.futures.Future()
            else:
                self._add(joined=1)
        if not leader:
            return flight.result()  # the leader's key, or its exception
        try:
            self._store(recipe, key)
        except BaseException as exc:
            with self._lock:
                del self._flights[key]
            flight.set_exception(exc)
            raise
        with self._lock:
            if len(self._known) >= self.max_known:
                self._known.clear()  # a bound on memory; the store still knows them all
            self._known.add(key)
            del self._flights[key]
        flight.set_result(key)
        return key

    def _store(self, recipe: SentenceRecipe, key: str) -> None:
        if self.storage.exists(key):
            self._count(found=1)
            return
        facts, data = self.render(recipe)
        # The row first: then every stored sentence has one (a crash in between leaves a row
        # whose object is missing, which `bank check` reports and repairs).
        if self.recorder is not None:
            self.recorder(facts)
        self.storage.put(key, data, CONTENT_TYPES["mp3"])
        self._count(renders=1)

    def url(self, recipe: SentenceRecipe) -> str:
        """The permanent public URL of the recipe's MP3 (call ensure() first)."""
        return self.storage.url(recipe.key)

    # -- counters -----------------------------------------------------------------------------
    def _count(self, **add: int) -> None:
        with self._lock:
            self._add(**add)

    def _add(self, **add: int) -> None:
        """Add to the counters; the caller holds the lock."""
        s = self._stats
        self._stats = StitchStats(
            s.renders + add.get("renders", 0),
            s.known + add.get("known", 0),
            s.found + add.get("found", 0),
            s.joined + add.get("joined", 0),
        )

    def stats(self) -> StitchStats:
        with self._lock:
            return self._stats

    @property
    def renders(self) -> int:
        """How many sentences this stitcher rendered and stored."""
        return self.stats().renders

    def forget(self) -> None:
        """Drop the in-process set of stored keys (after objects were deleted behind its back)."""
        with self._lock:
            self._known.clear()


@dataclass
class CatalogueMasters:
    """A Renderer's ``load_master`` over the catalogue: clip id -> master bytes from storage.

    ``await resolve(clip_ids)`` looks the master keys up (one query for the unknown ones) before
    a render in a thread; loading a clip that was not resolved fails (ClipUnavailable).
    """

    catalogue: Catalogue
    master_keys: dict[str, str] = field(default_factory=dict)

    async def resolve(self, clip_ids: Iterable[str]) -> None:
        unknown = sorted({c for c in clip_ids if c not in self.master_keys and c.isdigit()})
        if unknown:
            found = await self.catalogue.master_keys([int(c) for c in unknown])
            self.master_keys.update({str(k): v for k, v in found.items()})

    def __call__(self, clip_id: str) -> bytes:
        key = self.master_keys.get(clip_id)
        if key is None:
            raise LookupError(f"clip {clip_id} is not in the catalogue")
        return self.catalogue.storage.get(key)

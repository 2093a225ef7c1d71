"""The clips a call may use, cached briefly so a webhook does not rebuild the index every time.

Also the guard where TwiML is built: a clip whose audio cannot be served is replaced by
``<Say>`` of its words, and the caller records an alert.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from prompts.models import ClipIndex, ClipSegment, Plan, SaySegment, Segment
from voicebank.catalogue import Catalogue
from voicebank.storage import Storage

# New uploads reach calls within this many seconds; previews bypass the cache.
INDEX_TTL_S = 10.0
# A clip found in the store is not looked for again for this long: a call would otherwise wait for
# a stat (an HTTP HEAD on S3) per clip. A deleted object is noticed within this many seconds; one
# found missing is looked for again on every call.
EXISTS_TTL_S = 2.0


@dataclass(frozen=True)
class VoiceView:
    index: ClipIndex
    keys: dict[str, str]  # clip id -> storage key of its delivery MP3


class VoiceCache:
    def __init__(
        self,
        catalogue: Catalogue,
        *,
        ttl_s: float = INDEX_TTL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.catalogue = catalogue
        self.ttl_s = ttl_s
        self.clock = clock
        self._views: dict[tuple[str, str], tuple[float, VoiceView]] = {}
        self._found: dict[str, float] = {}  # storage key -> when it was last found in the store
        self._lock = asyncio.Lock()

    async def get(self, voice: str, tenant: str) -> VoiceView:
        key = (voice, tenant)
        hit = self._views.get(key)
        if hit and self.clock() - hit[0] < self.ttl_s:
            return hit[1]
        async with self._lock:
            hit = self._views.get(key)
            if hit and self.clock() - hit[0] < self.ttl_s:
                return hit[1]
            clips = await self.catalogue.voice_clips(voice, tenant)
            view = VoiceView(
                ClipIndex.build(e for e, _ in clips), {e.clip_id: key for e, key in clips}
            )
            self._views[key] = (self.clock(), view)
            return view

    def invalidate(self) -> None:
        self._views.clear()
        self._found.clear()

    def exists(self, storage: Storage, key: str) -> bool:
        """``storage.exists(key)``, trusting a positive answer for EXISTS_TTL_S."""
        now = self.clock()
        found = self._found.get(key)
        if found is not None and now - found < EXISTS_TTL_S:
            return True
        if storage.exists(key):
            self._found[key] = now
            return True
        self._found.pop(key, None)
        return False


def unavailable_clips(
    plan: Plan, view: VoiceView, storage: Storage, cache: VoiceCache | None = None
) -> list[ClipSegment]:
    """Clips of the plan whose audio is gone from the store (checked on the store itself, or
    through ``cache``)."""
    bad: list[ClipSegment] = []
    seen: set[str] = set()
    for seg in plan.segments:
        if isinstance(seg, ClipSegment) and seg.clip_id not in seen:
            seen.add(seg.clip_id)
            key = view.keys.get(seg.clip_id)
            found = cache.exists(storage, key) if cache and key else key and storage.exists(key)
            if not found:
                bad.append(seg)
    return bad


def speak_instead(plan: Plan, clip_ids: set[str]) -> Plan:
    """The same plan with the given clips spoken as text (they count as missing again)."""
    if not clip_ids:
        return plan
    segments: list[Segment] = [
        SaySegment(s.text, s.duration_ms)
        if isinstance(s, ClipSegment) and s.clip_id in clip_ids
        else s
        for s in plan.segments
    ]
    missing = tuple(
        dict.fromkeys(
            [
                *plan.missing,
                *(
                    s.text
                    for s in plan.segments
                    if isinstance(s, ClipSegment) and s.clip_id in clip_ids
                ),
            ]
        )
    )
    return replace(plan, segments=tuple(segments), missing=missing)

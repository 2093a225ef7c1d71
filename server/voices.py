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


def unavailable_clips(plan: Plan, view: VoiceView, storage: Storage) -> list[ClipSegment]:
    """Clips of the plan whose audio is gone from the store (checked on the store itself)."""
    bad: list[ClipSegment] = []
    seen: set[str] = set()
    for seg in plan.segments:
        if isinstance(seg, ClipSegment) and seg.clip_id not in seen:
            seen.add(seg.clip_id)
            key = view.keys.get(seg.clip_id)
            if key is None or not storage.exists(key):
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

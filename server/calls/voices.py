"""The clips a call may use, cached briefly so a webhook does not rebuild the index every time.

Which of them can really be fetched is the ClipGuard's business (server/calls/guard.py); this
module only swaps the ones it rejects for ``<Say>`` of their words.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from prompts.models import ClipIndex, ClipSegment, Plan, SaySegment, Segment
from voicebank.catalogue import Catalogue

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

"""Previews: a Plan as JSON and as one stitched MP3."""

from __future__ import annotations

import asyncio
from typing import Any

from prompts.models import ClipSegment, PauseSegment, Plan, SaySegment
from server.runtime import Runtime
from voicebank.render import Renderer
from voicebank.tts import default_tts


def plan_json(plan: Plan) -> dict[str, Any]:
    """The documented JSON shape of a plan (`voiceprompt preview --json`, the API, the console)."""
    segments: list[dict[str, Any]] = []
    for seg in plan.segments:
        if isinstance(seg, ClipSegment):
            segments.append(
                {
                    "kind": "clip",
                    "text": seg.text,
                    "clip_id": seg.clip_id,
                    "url": seg.url,
                    "ms": seg.duration_ms,
                    "variant": seg.variant.value,
                }
            )
        elif isinstance(seg, SaySegment):
            segments.append(
                {
                    "kind": "say",
                    "text": seg.text,
                    "clip_id": None,
                    "url": None,
                    "ms": seg.duration_ms,
                }
            )
        elif isinstance(seg, PauseSegment):
            segments.append(
                {"kind": "pause", "text": "", "clip_id": None, "url": None, "ms": seg.ms}
            )
    return {
        "transcript": plan.transcript,
        "segments": segments,
        "missing": list(plan.missing),
        "duration_ms": plan.duration_ms,
        "loops": plan.loops,
    }


class PreviewRenderer:
    """A Renderer over the catalogue: clip id -> master key is looked up once, then cached."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.master_keys: dict[str, str] = {}
        self.renderer = Renderer(self._load_master, tts=default_tts())

    def _load_master(self, clip_id: str) -> bytes:
        return self.rt.storage.get(self.master_keys[clip_id])

    async def render(self, plan: Plan) -> bytes:
        wanted = {s.clip_id for s in plan.segments if isinstance(s, ClipSegment)}
        unknown = [int(c) for c in wanted if c not in self.master_keys]
        if unknown:
            found = await self.rt.catalogue.master_keys(unknown)
            self.master_keys.update({str(k): v for k, v in found.items()})
        return await asyncio.to_thread(self.renderer.render, plan)


async def render_plan(rt: Runtime, plan: Plan) -> bytes:
    return await PreviewRenderer(rt).render(plan)

"""The vocabulary shared by every layer: clip entries, plan segments and the Plan.

Frozen dataclasses only: the planner builds them, the voice bank renders them, the server turns them
into TwiML. Nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from prompts.text import tokens_key


class Variant(StrEnum):
    """How a clip was spoken: continuing (level pitch), final (falling pitch), or either."""

    CONTINUING = "continuing"
    FINAL = "final"
    ANY = "any"


@dataclass(frozen=True, slots=True)
class ClipEntry:
    """One recorded clip as the planner sees it (no audio, just facts)."""

    clip_id: str
    text: str
    variant: Variant = Variant.ANY
    duration_ms: int = 0
    url: str | None = None


@dataclass(frozen=True, slots=True)
class ClipSegment:
    clip_id: str
    text: str
    variant: Variant
    duration_ms: int
    url: str | None = None

    @property
    def kind(self) -> str:
        return "clip"


@dataclass(frozen=True, slots=True)
class SaySegment:
    """Words no clip covers: spoken by text-to-speech as a stop-gap, always reported missing."""

    text: str
    duration_ms: int

    @property
    def kind(self) -> str:
        return "say"


@dataclass(frozen=True, slots=True)
class PauseSegment:
    ms: int

    @property
    def kind(self) -> str:
        return "pause"

    @property
    def duration_ms(self) -> int:
        return self.ms


Segment = ClipSegment | SaySegment | PauseSegment


@dataclass(frozen=True, slots=True)
class Plan:
    """One pass of a message plus how often to loop it.

    ``segments`` is a single pass; players repeat it ``loops`` times with ``loop_pause_ms`` of
    silence between passes. ``duration_ms`` is the estimate for all loops together.
    """

    segments: tuple[Segment, ...]
    loops: int
    loop_pause_ms: int
    transcript: str
    missing: tuple[str, ...]
    duration_ms: int

    @property
    def pass_duration_ms(self) -> int:
        return sum(s.duration_ms for s in self.segments)

    def looped_segments(self) -> tuple[Segment, ...]:
        """All passes in order, with the loop pauses between them."""
        out: list[Segment] = []
        for i in range(self.loops):
            if i:
                out.append(PauseSegment(self.loop_pause_ms))
            out.extend(self.segments)
        return tuple(out)


@dataclass(frozen=True)
class ClipIndex:
    """Clips of one voice (and tenant) keyed by normalised transcript tokens.

    Built once per request from the catalogue; the planner only reads it.
    """

    entries: Mapping[tuple[str, ...], tuple[ClipEntry, ...]] = field(default_factory=dict)
    max_len: int = 0

    @classmethod
    def build(cls, clips: Iterable[ClipEntry]) -> ClipIndex:
        grouped: dict[tuple[str, ...], list[ClipEntry]] = {}
        for clip in clips:
            key = tokens_key(clip.text)
            if key:
                grouped.setdefault(key, []).append(clip)
        entries = {k: tuple(v) for k, v in grouped.items()}
        return cls(entries=entries, max_len=max((len(k) for k in entries), default=0))

    def __contains__(self, key: object) -> bool:
        return key in self.entries

    def get(self, key: tuple[str, ...]) -> tuple[ClipEntry, ...]:
        return self.entries.get(key, ())

"""The vocabulary shared by every layer: clip entries, plan segments, sentences and the Plan.

Frozen dataclasses only: the planner builds them, the voice bank renders them, the server turns them
into TwiML. Nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from functools import lru_cache

from prompts.text import is_break, sentence_words, split_sentences, tokenize, tokens_key


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
    """Silence. ``after`` says which break it follows: "" a word gap (or a loop pause), "," a
    comma-like pause, "." a sentence end; the planner sets it, so a Plan can be cut into sentences.
    """

    ms: int
    after: str = ""

    @property
    def kind(self) -> str:
        return "pause"

    @property
    def duration_ms(self) -> int:
        return self.ms


Segment = ClipSegment | SaySegment | PauseSegment

SENTENCE_END = "."  # PauseSegment.after of the pause that ends a sentence


@dataclass(frozen=True, slots=True)
class Sentence:
    """One sentence of a pass: the unit a call plays (one stitched file, or one ``<Say>``).

    ``segments`` are its words and the pauses inside it (commas included), without the pause that
    follows it; ``pause_ms`` is that pause (the planner's sentence pause, 0 after the last sentence
    of a pass, where the loop pause follows). ``text`` is the sentence as the transcript shows it,
    punctuation included. ``missing`` are the words that would make it wholly recorded, one line
    per uncovered run, as in ``Plan.missing``.
    """

    segments: tuple[Segment, ...]
    pause_ms: int
    text: str
    missing: tuple[str, ...] = ()

    @property
    def recorded(self) -> bool:
        """True when a human voice says every word: no SaySegment in it."""
        return not any(isinstance(s, SaySegment) for s in self.segments)

    @property
    def duration_ms(self) -> int:
        return sum(s.duration_ms for s in self.segments) + self.pause_ms


@dataclass(frozen=True, slots=True)
class SpokenSentence:
    """A sentence the fallback voice says whole (``fallback="sentence"``), and what to record.

    ``missing`` lists the uncovered runs of words in it: record them and the sentence is spoken
    by the human voice again.
    """

    text: str
    missing: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Plan:
    """One pass of a message plus how often to loop it.

    ``segments`` is a single pass; players repeat it ``loops`` times with ``loop_pause_ms`` of
    silence between passes. ``duration_ms`` is the estimate for all loops together. ``missing``
    are the exact words to record (each uncovered run once). ``spoken`` names the sentences that
    the fallback voice says whole instead (only with ``fallback="sentence"``). ``tokens`` are the
    planner's words and breaks, kept so ``sentences()`` can name each sentence from the
    transcript; a plan built by hand may leave it empty (a copy with other segments should too).
    """

    segments: tuple[Segment, ...]
    loops: int
    loop_pause_ms: int
    transcript: str
    missing: tuple[str, ...]
    duration_ms: int
    spoken: tuple[SpokenSentence, ...] = ()
    tokens: tuple[str, ...] = ()

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

    def sentences(self) -> tuple[Sentence, ...]:
        """One pass cut at its sentence-end pauses (``PauseSegment.after == "."``).

        Each sentence's segments, then a ``PauseSegment(pause_ms, ".")`` unless ``pause_ms`` is 0,
        give back ``segments`` exactly. A message without full stops is one sentence, and so is
        every message planned with ``sentence_ms=0``: no pause marks where its sentences end.
        """
        return split_plan(self.segments, self.transcript, self.tokens, self.spoken)


def split_plan(
    segments: Sequence[Segment],
    transcript: str = "",
    tokens: Sequence[str] = (),
    spoken: Sequence[SpokenSentence] = (),
) -> tuple[Sentence, ...]:
    """``Plan.sentences`` for segments that are not (yet) a Plan; the planner uses it too."""
    groups: list[tuple[tuple[Segment, ...], int]] = []
    start = 0
    for i, seg in enumerate(segments):
        if isinstance(seg, PauseSegment) and seg.after == SENTENCE_END:
            groups.append((tuple(segments[start:i]), seg.ms))
            start = i + 1
    groups.append((tuple(segments[start:]), 0))
    texts = _texts(groups, transcript, tokens)
    whole = {s.text: s.missing for s in spoken}
    out: list[Sentence] = []
    for (segs, pause_ms), text in zip(groups, texts, strict=True):
        says = [s.text for s in segs if isinstance(s, SaySegment)]
        # Spoken whole, the sentence's one Say is its text: the words to record were kept apart.
        missing = whole.get(text, ()) if says else ()
        out.append(Sentence(segs, pause_ms, text, missing or tuple(dict.fromkeys(says))))
    return tuple(out)


def _texts(
    groups: list[tuple[tuple[Segment, ...], int]], transcript: str, tokens: Sequence[str]
) -> list[str]:
    """Each group's text from the transcript, or failing that from its segments."""
    if tokens:
        counts = sentence_words(tokens)
        texts = split_sentences(transcript, counts)
        if texts is not None:
            if len(texts) == len(groups):
                return texts  # the usual case: a pause after every sentence
            if len(groups) == 1:
                return [" ".join(texts)]  # sentence_ms=0: no pause marks any end
            # A clip spans a full stop ("Thank you. Goodbye." recorded as one take): match the
            # groups to runs of sentences by counting words.
            joined = _join_by_words(groups, counts, texts)
            if joined is not None:
                return joined
    elif len(groups) == 1 and transcript.strip():
        return [transcript.strip()]
    return [_segments_text(segs, bool(pause_ms)) for segs, pause_ms in groups]


def _join_by_words(
    groups: list[tuple[tuple[Segment, ...], int]], counts: list[int], texts: list[str]
) -> list[str] | None:
    out: list[str] = []
    k = 0
    for segs, _ in groups:
        want = sum(_words(s) for s in segs)
        got = 0
        first = k
        while got < want and k < len(counts):
            got += counts[k]
            k += 1
        if got != want:
            return None
        out.append(" ".join(texts[first:k]))
    return out if k == len(counts) else None


@lru_cache(maxsize=4096)
def _text_words(text: str) -> int:
    return sum(1 for t in tokenize(text) if not is_break(t))


def _words(seg: Segment) -> int:
    return 0 if isinstance(seg, PauseSegment) else _text_words(seg.text)


def _segments_text(segments: tuple[Segment, ...], ends: bool) -> str:
    """A hand-built sentence's text: its words, a comma at each comma pause, a final full stop."""
    words: list[str] = []
    for seg in segments:
        if isinstance(seg, PauseSegment):
            if seg.after == "," and words and not words[-1].endswith((",", ".", "?", "!")):
                words[-1] += ","
        else:
            words.append(seg.text.strip())
    text = " ".join(w for w in words if w)
    if ends and text and not text.endswith((".", "?", "!")):
        text += "."
    return text


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

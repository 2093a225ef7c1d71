"""The planner: template + values + clip index -> Plan.

Coverage is a dynamic programme over the message tokens, not greedy longest match: greedy takes
"a b" in "a b c d" and strands "c d" when the index has "a" and "b c d". The cost, compared in
this order:

1. words left to text-to-speech (a human voice wherever a clip exists),
2. segments (clips + Say runs): fewer joins sound better, so one clip of "your appointment with"
   beats three word clips,
3. how far each clip's take is from the one wanted (exact variant, then ANY, then the other).

Ties go to the longest clip at the earliest position, and within a phrase to the lowest clip_id,
so the same inputs always give the same plan.

A clip matches only the identical token run (its key may hold interior breaks, "thank you,
goodbye"), never starting or ending on a break. The FINAL take is wanted when the phrase ends
right before a comma or full stop or at the end of the message, the CONTINUING take elsewhere.
Uncovered words form Say runs that stop at breaks; each run is one SaySegment and one line in
``missing``.

Every pause records the break it follows (``PauseSegment.after``), so a Plan splits into the
sentences a call plays. With ``fallback="sentence"`` a sentence that is not wholly recorded
becomes one SaySegment of the whole sentence as the transcript shows it (one voice per sentence,
never recorded words between text-to-speech words); ``missing`` still lists the uncovered runs,
the exact words to record, and ``Plan.spoken`` names the sentences spoken whole.
"""

from __future__ import annotations

import weakref
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from datetime import date
from functools import lru_cache
from typing import Any

from prompts.errors import PlanOptionsError
from prompts.models import (
    SENTENCE_END,
    ClipEntry,
    ClipIndex,
    ClipSegment,
    PauseSegment,
    Plan,
    SaySegment,
    Segment,
    SpokenSentence,
    Variant,
    split_plan,
)
from prompts.template import Expansion, expand_template
from prompts.text import tokens_key

MAX_LOOPS = 3
# The ``fallback`` option, a plain str because it comes from tenant settings (checked at run time):
# "word": text-to-speech says only the uncovered words, between recorded ones (the old way);
# "sentence": a sentence with any uncovered word is said whole by text-to-speech.
FALLBACKS = ("word", "sentence")


@dataclass(frozen=True, slots=True)
class PauseRules:
    """Silences the planner inserts, and its duration estimate for text-to-speech words.

    Clips are trimmed to ~15 ms before and ~40 ms after speech, so ``word_gap_ms`` on top gives
    roughly the 100 ms a speaker leaves between words; commas and sentence ends get the
    200-300 ms and 400-600 ms of research/phrase-assembly.md §5.2.
    """

    word_gap_ms: int = 50
    comma_ms: int = 250
    sentence_ms: int = 500
    loop_pause_ms: int = 1200
    say_word_ms: int = 380

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise PlanOptionsError(f"{f.name} must be a whole number of ms >= 0, not {value!r}")


DEFAULT_PAUSES = PauseRules()

_BREAKS = frozenset((",", "."))
# Cost weights: each level dominates everything below it for any realistic message length.
_SAY = 1 << 42
_SEGMENT = 1 << 21
_RANK = {
    True: {Variant.FINAL: 0, Variant.ANY: 1, Variant.CONTINUING: 2},
    False: {Variant.CONTINUING: 0, Variant.ANY: 1, Variant.FINAL: 2},
}
_PAUSES: dict[tuple[int, str], PauseSegment] = {}


def _pause(ms: int, after: str) -> PauseSegment:
    # Frozen, so one instance per length and break can be shared by every plan.
    seg = _PAUSES.get((ms, after))
    if seg is None:
        seg = _PAUSES.setdefault((ms, after), PauseSegment(ms, after))
    return seg


class _Match:
    """The takes of one clip key: the one to use at a phrase end and the one to use elsewhere."""

    __slots__ = ("final", "final_rank", "going", "going_rank", "words")

    def __init__(self, found: tuple[ClipEntry, ...], key: tuple[str, ...]) -> None:
        self.words = sum(1 for t in key if t not in _BREAKS)  # estimates unknown durations
        self.final, self.final_rank = self._pick(found, True)
        self.going, self.going_rank = self._pick(found, False)

    @staticmethod
    def _pick(found: tuple[ClipEntry, ...], final: bool) -> tuple[ClipSegment, int]:
        rank = _RANK[final]
        best = min(found, key=lambda e: (rank[e.variant], e.clip_id))
        seg = ClipSegment(best.clip_id, best.text, best.variant, best.duration_ms, best.url)
        return seg, rank[best.variant]


# A trie over clip keys as nested dicts, so matching walks tokens instead of slicing tuples.
# Under "" (never a token) a node holds the key's clips: first the index's tuple of entries,
# replaced by a _Match on first use, because a message touches a few dozen of an index's
# hundreds of keys and a server builds an index per request.
_Trie = dict[str, Any]
_HERE = ""


# A covering, item by item: a break token, or (clip, words) / (Say text, words).
_Item = str | tuple[ClipSegment | str, int]
_MEMO_SIZE = 2048


class _Chunk:
    """The planned segments of one chunk of a message, with their length and missing words."""

    __slots__ = ("segments", "missing", "ms")

    def __init__(self, items: list[_Item], pauses: PauseRules) -> None:
        segments, missing, ms = _assemble(items, pauses)
        self.segments: tuple[Segment, ...] = tuple(segments)
        self.missing: tuple[str, ...] = tuple(missing)
        self.ms: int = ms


class _Voice:
    """What the planner derives from one ClipIndex: the trie, and chunks already planned.

    A break splits the planning problem in two unless some clip key spans it ("thank you,
    goodbye" spans the comma in "thank you, goodbye"), and chunks between breaks repeat across
    reminders ("this is a reminder from smile dental", a date), so each chunk's plan is
    remembered, up to _MEMO_SIZE chunks per index and PauseRules.
    """

    __slots__ = ("root", "bridges", "memos", "last")

    def __init__(self, index: ClipIndex) -> None:
        self.root: _Trie = {}
        # (word, break, word) inside some key: a break with these neighbours may be spanned.
        self.bridges: set[tuple[str, str, str]] = set()
        self.memos: dict[PauseRules, dict[tuple[str, ...], _Chunk]] = {}
        # The PauseRules used last with its memo and gap pauses: hashing a dataclass costs more
        # than planning a remembered chunk, and one caller nearly always passes the same rules.
        self.last: (
            tuple[PauseRules, dict[tuple[str, ...], _Chunk], dict[str, PauseSegment | None]] | None
        ) = None
        for key, found in index.entries.items():
            if not found or not key or key[0] in _BREAKS or key[-1] in _BREAKS:
                continue  # a match never starts or ends on a break
            node = self.root
            for tok in key:
                nxt = node.get(tok)
                if nxt is None:
                    nxt = node[tok] = {}
                node = nxt
            node[_HERE] = found
            for k in range(1, len(key) - 1):
                if key[k] in _BREAKS:
                    self.bridges.add((key[k - 1], key[k], key[k + 1]))

    def plan(
        self,
        tokens: tuple[str, ...],
        pauses: PauseRules,
    ) -> tuple[list[Segment], list[str], int]:
        """Segments of one pass, the missing words (in order, repeats kept) and the pass length."""
        last = self.last
        if last is not None and last[0] is pauses:
            memo, gaps = last[1], last[2]
        else:
            memo = self.memos.setdefault(pauses, {})
            gaps = _gap_pauses(pauses)
            self.last = (pauses, memo, gaps)
        bridges = self.bridges
        n = len(tokens)
        cuts = [k for k, t in enumerate(tokens) if t in _BREAKS]
        if bridges:
            cuts = [
                k
                for k in cuts
                if not (0 < k < n - 1 and (tokens[k - 1], tokens[k], tokens[k + 1]) in bridges)
            ]
        cuts.append(n)
        segments: list[Segment] = []
        missing: list[str] = []
        ms = 0
        gap = ""  # the strongest break since the previous chunk
        start = 0
        for end in cuts:
            if end > start:
                chunk = tokens[start:end]
                planned = memo.get(chunk)
                if planned is None:
                    if len(memo) >= _MEMO_SIZE:
                        memo.clear()  # simple and bounded; the next plans refill what they use
                    planned = memo[chunk] = _Chunk(_cover(chunk, self.root), pauses)
                if segments and (pause := gaps[gap]) is not None:
                    segments.append(pause)
                    ms += pause.ms
                segments.extend(planned.segments)
                missing.extend(planned.missing)
                ms += planned.ms
                gap = ""
            if end < n and gap != ".":
                gap = tokens[end]
            start = end + 1
        return segments, missing, ms


_VOICES: dict[int, tuple[weakref.ref[ClipIndex], _Voice]] = {}


def _voice(index: ClipIndex) -> _Voice:
    """The index's _Voice, built on first use and kept while the index lives.

    A ClipIndex is frozen and only read, so this cannot go stale. It is keyed by id() with a weak
    reference (the index holds a dict, so it is unhashable) and dropped when the index dies.
    """
    key = id(index)
    cached = _VOICES.get(key)
    if cached is not None and cached[0]() is index:
        return cached[1]
    voice = _Voice(index)
    _VOICES[key] = (weakref.ref(index), voice)
    weakref.finalize(index, _VOICES.pop, key, None)
    return voice


def _cover(tokens: tuple[str, ...], root: _Trie) -> list[_Item]:
    """The cheapest covering of ``tokens`` (the cost is in the module docstring)."""
    n = len(tokens)
    breaks = _BREAKS
    # ends[j]: a phrase ending just before j ends at a break or the message end, so wants FINAL.
    ends = [t in breaks for t in tokens]
    ends.append(True)
    # closed[i]: cheapest cost of tokens[i:] when no Say run is open at i; open_[i]: when one is,
    # so another Say word joins it without adding a segment. A break closes any Say run.
    closed = [0] * (n + 1)
    open_ = [0] * (n + 1)
    clip_at: list[tuple[int, _Match, bool] | None] = [None] * n
    say_closed = [False] * n
    say_open = [False] * n
    for i in range(n - 1, -1, -1):
        if ends[i]:
            closed[i] = open_[i] = closed[i + 1]
            continue
        best = -1
        node = root.get(tokens[i])
        j = i + 1
        while node is not None:
            match = node.get(_HERE)
            if match is not None:
                if match.__class__ is not _Match:
                    match = node[_HERE] = _Match(match, tokens[i:j])
                final = ends[j]
                cost = _SEGMENT + (match.final_rank if final else match.going_rank) + closed[j]
                if best < 0 or cost <= best:  # "<=": on a tie the longer clip wins
                    best = cost
                    clip_at[i] = (j, match, final)
            if j == n:
                break
            node = node.get(tokens[j])
            j += 1
        say_rest = _SAY + open_[i + 1]
        if best < 0 or say_rest + _SEGMENT < best:
            closed[i] = say_rest + _SEGMENT
            say_closed[i] = True
        else:
            closed[i] = best
        if best < 0 or say_rest < best:
            open_[i] = say_rest
            say_open[i] = True
        else:
            open_[i] = best
    items: list[_Item] = []
    i = 0
    while i < n:
        if ends[i]:
            items.append(tokens[i])
            i += 1
        elif say_closed[i]:
            # A Say run goes on while the open-state choice is another Say word; say_open is True
            # wherever say_closed is, so where it stops, the clip is clip_at[j].
            j = i + 1
            while not ends[j] and say_open[j]:
                j += 1
            items.append((" ".join(tokens[i:j]), j - i))
            i = j
        else:
            step = clip_at[i]
            assert step is not None
            i, match, final = step
            items.append((match.final if final else match.going, match.words))
    return items


@lru_cache(maxsize=64)
def _gap_pauses(pauses: PauseRules) -> dict[str, PauseSegment | None]:
    """The pause before a segment, by the strongest break since the previous one (None: none)."""
    gaps = {"": pauses.word_gap_ms, ",": pauses.comma_ms, ".": pauses.sentence_ms}
    return {k: _pause(ms, k) if ms else None for k, ms in gaps.items()}


def _check_options(loops: int, fallback: str) -> None:
    if isinstance(loops, bool) or not isinstance(loops, int) or not 1 <= loops <= MAX_LOOPS:
        raise PlanOptionsError(f"loops must be 1 to {MAX_LOOPS}, not {loops!r}")
    if fallback not in FALLBACKS:
        raise PlanOptionsError(f"fallback must be 'word' or 'sentence', not {fallback!r}")


@lru_cache(maxsize=4096)
def _clip_words(text: str) -> int:
    """Words in a clip's transcript: its key is exactly the token run it covers."""
    return sum(1 for t in tokens_key(text) if t not in _BREAKS)


def _whole_sentences(
    segments: list[Segment], transcript: str, tokens: tuple[str, ...], pauses: PauseRules
) -> tuple[list[Segment], tuple[SpokenSentence, ...]]:
    """One voice per sentence: each sentence with a Say in it becomes one Say of all its words."""
    out: list[Segment] = []
    spoken: dict[str, SpokenSentence] = {}
    for sentence in split_plan(segments, transcript, tokens):
        if sentence.recorded:
            out.extend(sentence.segments)
        else:
            words = sum(
                len(s.text.split()) if isinstance(s, SaySegment) else _clip_words(s.text)
                for s in sentence.segments
                if not isinstance(s, PauseSegment)
            )
            out.append(SaySegment(sentence.text, words * pauses.say_word_ms))
            spoken.setdefault(sentence.text, SpokenSentence(sentence.text, sentence.missing))
        if sentence.pause_ms:
            out.append(_pause(sentence.pause_ms, SENTENCE_END))
    return out, tuple(spoken.values())


def _assemble(items: list[_Item], pauses: PauseRules) -> tuple[list[Segment], list[str], int]:
    """A covering as segments with pauses between them, the Say texts and the total length."""
    word_ms = pauses.say_word_ms
    gaps = _gap_pauses(pauses)
    segments: list[Segment] = []
    missing: list[str] = []
    ms = 0
    gap = ""  # the strongest break since the previous segment
    for item in items:
        if isinstance(item, str):
            if gap != ".":
                gap = item
            continue
        what, words = item
        if segments and (pause := gaps[gap]) is not None:
            segments.append(pause)
            ms += pause.ms
        gap = ""
        seg: Segment
        if isinstance(what, str):
            missing.append(what)
            seg = SaySegment(what, words * word_ms)
        elif what.duration_ms <= 0:
            # Unknown length: estimate like spoken words so the plan's figures stay useful.
            seg = replace(what, duration_ms=words * word_ms)
        else:
            seg = what
        segments.append(seg)
        ms += seg.duration_ms
    return segments, missing, ms


def plan_expansion(
    expansion: Expansion,
    index: ClipIndex,
    *,
    loops: int = 2,
    pauses: PauseRules = DEFAULT_PAUSES,
    fallback: str = "word",
) -> Plan:
    """Plan already-expanded words (see ``plan_message``); raises PlanOptionsError for options."""
    _check_options(loops, fallback)
    tokens = expansion.tokens
    segments, missing, pass_ms = _voice(index).plan(tokens, pauses)
    spoken: tuple[SpokenSentence, ...] = ()
    if missing and fallback == "sentence":
        segments, spoken = _whole_sentences(segments, expansion.transcript, tokens, pauses)
        pass_ms = sum(s.duration_ms for s in segments)
    return Plan(
        segments=tuple(segments),
        loops=loops,
        loop_pause_ms=pauses.loop_pause_ms,
        transcript=expansion.transcript,
        missing=tuple(dict.fromkeys(missing)),
        duration_ms=pass_ms * loops + pauses.loop_pause_ms * (loops - 1),
        spoken=spoken,
        tokens=tokens,
    )


def plan_message(
    template: str,
    values: Mapping[str, object],
    index: ClipIndex,
    *,
    today: date,
    loops: int = 2,
    pauses: PauseRules = DEFAULT_PAUSES,
    fallback: str = "word",
) -> Plan:
    """Expand ``template`` with ``values`` and cover its words with the voice's clips.

    ``today`` is the reference date for "today"/"tomorrow" and for saying the year; the planner
    never reads a clock. ``fallback`` is "word" (text-to-speech says just the uncovered words)
    or "sentence" (it says whole every sentence that has one). Raises PlanOptionsError (loops
    outside 1..3, an unknown fallback) and TemplateError subclasses (bad template, missing
    value, wrong type, unsayable value).
    """
    _check_options(loops, fallback)
    return plan_expansion(
        expand_template(template, values, today=today),
        index,
        loops=loops,
        pauses=pauses,
        fallback=fallback,
    )

"""Recording scripts: everything a voice still lacks to say a set of templates in a human voice.

Lines come in two groups:

- **phrases** (ids ``P001``...): each literal run of a template between slots and breaks ("This
  is a reminder from", "Your appointment with", "is at", "on"), plus the text of sample values
  for phrase slots (tenant and provider names). A phrase wants its *final* take when the template
  puts a comma, a full stop or the end of the message right after it, and its *continuing* take
  otherwise: the same rule the planner uses to pick takes, so every line recorded gets used.
- **words** (ids ``W001``...): every word the language rules can produce for the slot kinds the
  templates use ("zero".."nineteen", tens, "hundred", "thousand", ordinals, "oh", "a.m.", day
  and month names, "today", ...), variant "any".

Whatever the index already has is left out: a phrase is covered when the index has exactly it in
the wanted take (or an "any" take). A phrase the index can only say by joining shorter clips is
still listed, with the note "covered by N clips; a single take sounds better": the voice works
without it, but the join is audible. A phrase recorded only in the other take is listed with a
note saying so.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from prompts.clock import DATE_VOCABULARY, MONTHS, TIME_VOCABULARY, WEEKDAYS
from prompts.errors import SlotTypeError
from prompts.models import ClipIndex, Variant
from prompts.numbers import CARDINAL_VOCABULARY, ORDINAL_VOCABULARY
from prompts.phone import DIGITS_VOCABULARY
from prompts.planner import plan_expansion
from prompts.template import Expansion, Literal, Slot, SlotKind, parse_template, spoken_text
from prompts.text import is_break, tokens_key

_VOCABULARY: dict[SlotKind, tuple[str, ...]] = {
    SlotKind.PHRASE: (),
    SlotKind.NUMBER: CARDINAL_VOCABULARY,
    # Compound ordinals start with cardinals: "twenty first", "one hundred first".
    SlotKind.ORDINAL: CARDINAL_VOCABULARY[1:] + ORDINAL_VOCABULARY,
    SlotKind.TIME: TIME_VOCABULARY,
    SlotKind.DATE: DATE_VOCABULARY,
    SlotKind.DIGITS: DIGITS_VOCABULARY,
}
# The order a voice actor reads word lists in: numbers up, then time, days, months.
_WORD_ORDER = tuple(
    dict.fromkeys(
        CARDINAL_VOCABULARY
        + ORDINAL_VOCABULARY
        + TIME_VOCABULARY
        + WEEKDAYS
        + MONTHS
        + DATE_VOCABULARY
    )
)
_KIND_ORDER = (SlotKind.NUMBER, SlotKind.ORDINAL, SlotKind.TIME, SlotKind.DATE, SlotKind.DIGITS)
_SENTENCE = re.compile(r"\S.*?(?:[.?!](?=\s|$)|\Z)", re.S)
_CUES = {Variant.CONTINUING: " …", Variant.FINAL: ".", Variant.ANY: ""}


def vocabulary(kind: SlotKind) -> tuple[str, ...]:
    """Every word the rules can produce for a slot kind (none for phrases: their text is free)."""
    return _VOCABULARY[kind]


@dataclass(frozen=True, slots=True)
class ScriptLine:
    id: str
    text: str  # exactly what to say; a recording of it is imported with this transcript
    variant: Variant
    context: str  # where it is used: the template sentence, or the slot kinds needing a word
    note: str = ""


@dataclass(frozen=True, slots=True)
class RecordingScript:
    lines: tuple[ScriptLine, ...]

    def __len__(self) -> int:
        return len(self.lines)

    def to_text(self) -> str:
        """Numbered lines a voice actor can read from."""
        if not self.lines:
            return "Nothing to record: the voice has every phrase and word these templates need.\n"
        out = [
            f"Recording script: {len(self.lines)} lines, one take each.",
            "A line ending in '…' has more after it (keep the pitch level); a line ending in '.'",
            "ends a sentence (let the pitch fall); single words are read plainly.",
            "",
        ]
        width = len(str(len(self.lines)))
        for number, line in enumerate(self.lines, 1):
            out.append(
                f"{number:>{width}}. [{line.id}] {line.text}{_CUES[line.variant]}"
                f"   ({line.variant.value})"
            )
            out.append(f"{'':>{width}}  used in: {line.context}")
            if line.note:
                out.append(f"{'':>{width}}  note: {line.note}")
        return "\n".join(out) + "\n"

    def to_csv(self) -> str:
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(("id", "text", "variant", "context", "note"))
        for line in self.lines:
            writer.writerow((line.id, line.text, line.variant.value, line.context, line.note))
        return buf.getvalue()


def _sentence_at(source: str, position: int) -> str:
    for match in _SENTENCE.finditer(source):
        if match.start() <= position < match.end():
            return match.group().strip()
    return source.strip()


def _samples(name: str, sample_values: Mapping[str, object]) -> tuple[str, ...]:
    value = sample_values.get(name)
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    if isinstance(value, Sequence) and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise SlotTypeError("sample values for a phrase slot must be a str or a list of str", slot=name)


_Phrase = tuple[str, tuple[str, ...], Variant, str, str]  # text, key, variant, context, note


def _phrases(template: str, sample_values: Mapping[str, object]) -> list[_Phrase]:
    """Each literal run and phrase-slot sample of a template, in order."""
    parts = parse_template(template).parts
    out: list[_Phrase] = []
    for k, part in enumerate(parts):
        after = parts[k + 1] if k + 1 < len(parts) else None
        if isinstance(part, Slot):
            if part.kind is SlotKind.PHRASE:
                # Final when a break or the end of the template comes right after it.
                final = after is None or (
                    isinstance(after, Literal) and bool(after.tokens) and is_break(after.tokens[0])
                )
                variant = Variant.FINAL if final else Variant.CONTINUING
                context = _sentence_at(template, part.position)
                for sample in _samples(part.name, sample_values):
                    key = tokens_key(sample)
                    if key:
                        out.append((" ".join(sample.split()), key, variant, context, ""))
            continue
        words = iter(zip(part.words, part.offsets, strict=True))
        runs: list[tuple[list[str], list[str], int, bool]] = []  # tokens, shown, offset, final
        run: list[str] = []
        shown: list[str] = []
        start = part.position
        for tok in part.tokens:
            if is_break(tok):
                if run:
                    runs.append((run, shown, start, True))
                run, shown = [], []
                continue
            word, offset = next(words)
            if not run:
                start = offset
            run.append(tok)
            shown.append(word)
        if run:
            runs.append((run, shown, start, after is None))
        for run, shown, start, final in runs:
            context = _sentence_at(template, start)
            variant = Variant.FINAL if final else Variant.CONTINUING
            out.append((" ".join(shown), tuple(run), variant, context, ""))
        if (
            run
            and isinstance(after, Slot)
            and after.kind is SlotKind.DATE
            and run[-1] == "on"
            and len(run) > 1
        ):
            # expand_template drops this "on" before "today"/"tomorrow", leaving the rest.
            out.append(
                (
                    " ".join(shown[:-1]),
                    tuple(run[:-1]),
                    Variant.CONTINUING,
                    _sentence_at(template, start),
                    'said before "today" and "tomorrow"',
                )
            )
    return out


def _phrase_note(key: tuple[str, ...], variant: Variant, index: ClipIndex) -> str | None:
    """None when the index covers the phrase, else the note for its script line."""
    takes = {e.variant for e in index.get(key)}
    if takes and (variant is Variant.ANY or variant in takes or Variant.ANY in takes):
        return None
    if takes:
        have = ", ".join(sorted(v.value for v in takes))
        return f"only a {have} take exists; the {variant.value} one sounds right here"
    plan = plan_expansion(Expansion(" ".join(key), key), index, loops=1)
    clips = sum(1 for s in plan.segments if s.kind == "clip")
    if not plan.missing and clips > 1:
        return f"covered by {clips} clips; a single take sounds better"
    return ""


def recording_script(
    templates: Sequence[str],
    index: ClipIndex,
    *,
    sample_values: Mapping[str, object] | None = None,
    names: Sequence[str] = (),
) -> RecordingScript:
    """What to record so ``templates`` can be said without text-to-speech.

    ``sample_values`` gives text for phrase slots (a str or a list of str per slot name, e.g. the
    tenant's name and each provider's) so those recordings are listed with the take their place
    in the template wants. Values for other kinds or unknown names are ignored: every word their
    rules can produce is listed anyway. ``names`` are more phrases to record when the slot they
    fill is not known (variant "any"). Raises TemplateError subclasses for a bad template,
    SlotTypeError for a bad sample value.
    """
    samples = sample_values or {}
    lines: list[ScriptLine] = []
    seen: set[tuple[tuple[str, ...], Variant]] = set()
    kinds: dict[SlotKind, None] = {}
    extra: list[_Phrase] = [
        (" ".join(name.split()), tokens_key(name), Variant.ANY, "a name for phrase slots", "")
        for name in names
    ]
    for template in [*templates, None]:
        if template is None:
            found = [p for p in extra if p[1]]
        else:
            for slot in parse_template(template).slots:
                kinds[slot.kind] = None
            found = _phrases(template, samples)
        for text, key, variant, context, why in found:
            if (key, variant) in seen:
                continue
            seen.add((key, variant))
            note = _phrase_note(key, variant, index)
            if note is not None:
                note = "; ".join(n for n in (why, note) if n)
                lines.append(ScriptLine(f"P{len(lines) + 1:03d}", text, variant, context, note))
    used_by: dict[str, list[str]] = {}
    for kind in _KIND_ORDER:
        if kind in kinds:
            for word in _VOCABULARY[kind]:
                used_by.setdefault(word, []).append(kind.value)
    words = 0
    for word in _WORD_ORDER:
        if word in used_by and (word,) not in index:
            words += 1
            lines.append(
                ScriptLine(
                    f"W{words:03d}",
                    spoken_text((word,)),
                    Variant.ANY,
                    f"{', '.join(used_by[word])} slots",
                )
            )
    return RecordingScript(tuple(lines))

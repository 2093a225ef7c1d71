"""Message templates: plain text with typed slots, expanded to words with the language rules.

Syntax: ``{name}`` or ``{name:kind}``; ``{{`` and ``}}`` are literal braces. A bare ``{name}`` is a
``phrase``: a recorded name such as the tenant or provider, whose text is used as given. Kinds:

==========  ==============================================  ====================================
kind        value                                           says
==========  ==============================================  ====================================
phrase      str                                             the text itself ("Smile Dental")
time        datetime.time or datetime.datetime              "four forty seven p.m."
date        datetime.date or datetime.datetime              "Tuesday, December first", "tomorrow"
number      int 0..999,999                                  "one hundred one"
ordinal     int 1..999,999                                  "twenty first"
digits      str (phone number or digit string)              "four one five, five five five, ..."
==========  ==============================================  ====================================

A datetime is read as wall-clock time, as given: converting to the tenant's zone is the
caller's job.

One grammar rule lives here because it spans a literal and a slot: when a date slot becomes
"today" or "tomorrow" and the template says "on" right before it, the "on" is dropped ("is on
tomorrow" -> "is tomorrow"), so "is on {when:date}" reads well for every date.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, time
from enum import StrEnum
from functools import lru_cache

from prompts.clock import PROPER_NOUNS, date_words, time_words
from prompts.errors import (
    MissingValueError,
    PromptError,
    SlotTypeError,
    SlotValueError,
    TemplateError,
    TemplateSyntaxError,
    UnknownSlotKindError,
)
from prompts.numbers import cardinal_words, ordinal_words
from prompts.phone import digit_words
from prompts.text import is_break, tokenize, tokens_key


class SlotKind(StrEnum):
    PHRASE = "phrase"
    TIME = "time"
    DATE = "date"
    NUMBER = "number"
    ORDINAL = "ordinal"
    DIGITS = "digits"


@dataclass(frozen=True, slots=True)
class Slot:
    """``{name:kind}`` at ``position`` (0-based offset of its "{")."""

    name: str
    kind: SlotKind
    position: int
    source: str


@dataclass(frozen=True, slots=True)
class Literal:
    """Template text between slots, with its tokens (breaks included, even leading ones)."""

    text: str
    tokens: tuple[str, ...]
    words: tuple[str, ...]  # the non-break tokens with the template's own capitals, for scripts
    position: int
    # Precomputed for expand_template's hot loop: None when the text is only whitespace.
    ends_sentence: bool | None = None
    # Template offset of each of ``words`` (all ``position`` when the capitals were not kept).
    offsets: tuple[int, ...] = ()


Part = Literal | Slot


@dataclass(frozen=True, slots=True)
class Template:
    source: str
    parts: tuple[Part, ...]

    @property
    def slots(self) -> tuple[Slot, ...]:
        return tuple(p for p in self.parts if isinstance(p, Slot))


@dataclass(frozen=True, slots=True)
class Expansion:
    """A template with its values said: readable text and the planner's tokens."""

    transcript: str
    tokens: tuple[str, ...]


_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_KINDS = ", ".join(sorted(k.value for k in SlotKind))
# Mirrors prompts.text's token pattern without lower-casing, to keep the template's capitals.
_DISPLAY = re.compile(r"(?:[A-Za-z]\.){2,}|[A-Za-z0-9]+(?:'[A-Za-z]+)*")
_TRAILING_ON = re.compile(r"(?:^|\s)on\s*$", re.IGNORECASE)
_SENTENCE_END = (".", "?", "!", "…")
_BREAKS = frozenset((",", "."))  # prompts.text's break tokens, as a set for the hot path
_RELATIVE = frozenset(("today", "tomorrow"))


def _literal(text: str, position: int) -> Literal:
    # A leading "." matters (it ends the sentence a slot started) but tokenize drops leading
    # breaks, so give it a word to follow and take that word off again.
    tokens = tuple(tokenize("x " + text)[1:])
    plain = tuple(t for t in tokens if not is_break(t))
    # Same-length replacements, so match offsets are offsets into the template.
    found = list(_DISPLAY.finditer(text.replace("-", " ").replace("’", "'")))
    shown = tuple(m.group() for m in found)
    if tuple(w.lower() for w in shown) == plain:
        words, offsets = shown, tuple(position + m.start() for m in found)
    else:
        words, offsets = plain, (position,) * len(plain)
    ends = text.rstrip().endswith(_SENTENCE_END) if text.strip() else None
    return Literal(text, tokens, words, position, ends, offsets)


def _slot(template: str, start: int, end: int) -> Slot:
    source = template[start : end + 1]
    name, colon, kind = template[start + 1 : end].partition(":")
    name, kind = name.strip(), kind.strip()
    if not _NAME.match(name):
        raise TemplateSyntaxError(
            "a slot name must be letters, digits or '_' and not start with a digit",
            source=source,
            position=start,
        )
    if not colon:
        return Slot(name, SlotKind.PHRASE, start, source)
    try:
        return Slot(name, SlotKind(kind), start, source)
    except ValueError:
        raise UnknownSlotKindError(
            f"unknown kind {kind!r}; expected one of {_KINDS}",
            slot=name,
            source=source,
            position=start,
        ) from None


@lru_cache(maxsize=512)
def parse_template(template: str) -> Template:
    """Parse once (cached): raises TemplateError subclasses for bad braces and unknown kinds."""
    parts: list[Part] = []
    text: list[str] = []
    text_start = i = 0
    n = len(template)
    while i < n:
        ch = template[i]
        if ch not in "{}":
            text.append(ch)
            i += 1
            continue
        if template.startswith(ch * 2, i):
            text.append(ch)
            i += 2
            continue
        if ch == "}":
            raise TemplateSyntaxError("'}' with no '{' (write '}}' for a brace)", position=i)
        end = template.find("}", i + 1)
        inner_open = template.find("{", i + 1)
        if end < 0 or 0 <= inner_open < end:
            raise TemplateSyntaxError("'{' is never closed (write '{{' for a brace)", position=i)
        if text:
            parts.append(_literal("".join(text), text_start))
            text = []
        parts.append(_slot(template, i, end))
        i = text_start = end + 1
    if text:
        parts.append(_literal("".join(text), text_start))
    parsed = Template(template, tuple(parts))
    _check_kinds_agree(parsed.slots)
    if not parsed.slots and not any(
        not is_break(t) for p in parsed.parts if isinstance(p, Literal) for t in p.tokens
    ):
        raise TemplateSyntaxError("the template has no words and no slots")
    return parsed


# Kinds one value can serve together: a datetime is a time and a date, a str a phrase and digits.
_VALUE_GROUP = {
    SlotKind.TIME: "datetime",
    SlotKind.DATE: "datetime",
    SlotKind.NUMBER: "int",
    SlotKind.ORDINAL: "int",
    SlotKind.PHRASE: "str",
    SlotKind.DIGITS: "str",
}


def _check_kinds_agree(slots: tuple[Slot, ...]) -> None:
    first: dict[str, Slot] = {}
    for slot in slots:
        earlier = first.setdefault(slot.name, slot)
        if _VALUE_GROUP[earlier.kind] != _VALUE_GROUP[slot.kind]:
            raise TemplateSyntaxError(
                f"{slot.name!r} is already a {earlier.kind.value} slot at position "
                f"{earlier.position}; no one value can be both",
                slot=slot.name,
                source=slot.source,
                position=slot.position,
            )


def validate_template(template: str) -> tuple[Slot, ...]:
    """Check a template without values (when a tenant saves it); returns its slots in order."""
    return parse_template(template).slots


@lru_cache(maxsize=4096)
def spoken_text(tokens: tuple[str, ...]) -> str:
    """Tokens as readable text: breaks stick to the word before, weekdays and months capitalised."""
    out: list[str] = []
    for tok in tokens:
        if tok in _BREAKS and out:
            out[-1] += tok
        else:
            out.append(tok.capitalize() if tok in PROPER_NOUNS else tok)
    return " ".join(out)


_phrase_tokens = lru_cache(maxsize=4096)(tokens_key)


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _wrong_type(slot: Slot, wanted: str, value: object) -> SlotTypeError:
    return SlotTypeError(
        f"needs {wanted}, got {type(value).__name__} {_short(value)}",
        slot=slot.name,
        source=slot.source,
        position=slot.position,
    )


def slot_tokens(slot: Slot, value: object, *, today: date) -> tuple[str, ...]:
    """One slot's value as tokens; raises MissingValueError, SlotTypeError or SlotValueError."""
    kind = slot.kind
    if value is None:
        raise MissingValueError(
            "no value given", slot=slot.name, source=slot.source, position=slot.position
        )
    try:
        if kind is SlotKind.PHRASE:
            if not isinstance(value, str):
                raise _wrong_type(slot, "a str (the phrase's text)", value)
            tokens = _phrase_tokens(value)
            if not tokens:
                raise SlotValueError(
                    f"the phrase {value!r} has no words",
                    slot=slot.name,
                    source=slot.source,
                    position=slot.position,
                )
            return tokens
        if kind is SlotKind.TIME:
            if isinstance(value, datetime | time):
                return time_words(value)
            wanted = "a datetime.time or datetime.datetime"
            if isinstance(value, date):
                wanted += " (a date has no time of day)"
            raise _wrong_type(slot, wanted, value)
        if kind is SlotKind.DATE:
            if isinstance(value, date):
                return date_words(value, today=today)
            raise _wrong_type(slot, "a datetime.date or datetime.datetime", value)
        if kind is SlotKind.NUMBER or kind is SlotKind.ORDINAL:
            if isinstance(value, bool) or not isinstance(value, int):
                raise _wrong_type(slot, "an int", value)
            return cardinal_words(value) if kind is SlotKind.NUMBER else ordinal_words(value)
        if not isinstance(value, str):
            # An int would lose leading zeros ("0134"), so digits must come as text.
            raise _wrong_type(slot, "a str of digits (an int would lose leading zeros)", value)
        return digit_words(value)
    except TemplateError:
        raise
    except PromptError as exc:
        raise SlotValueError(
            str(exc), slot=slot.name, source=slot.source, position=slot.position
        ) from exc


def expand_template(template: str, values: Mapping[str, object], *, today: date) -> Expansion:
    """Fill a template's slots: the transcript a person reads and the tokens the planner covers."""
    parsed = parse_template(template)
    tokens: list[str] = []
    pieces: list[str] = []
    sentence_start = True
    for part in parsed.parts:
        if part.__class__ is Literal:
            assert isinstance(part, Literal)
            text = part.text
            if text[0] == "." and pieces and pieces[-1][-1:] == ".":
                text = text[1:]  # "... p.m." + "." is one full stop, not two
            pieces.append(text)
            if part.ends_sentence is not None:
                sentence_start = part.ends_sentence
            said = part.tokens
        else:
            assert isinstance(part, Slot)
            value = values.get(part.name)
            said = slot_tokens(part, value, today=today)
            if part.kind is SlotKind.PHRASE and isinstance(value, str):
                shown = " ".join(value.split())
            else:
                shown = spoken_text(said)
                if (
                    said[0] in _RELATIVE
                    and len(said) == 1
                    and tokens
                    and tokens[-1] == "on"
                    and _TRAILING_ON.search(pieces[-1])
                ):
                    tokens.pop()
                    pieces[-1] = _TRAILING_ON.sub(" ", pieces[-1])
            if sentence_start and shown[:1].islower():
                shown = shown[0].upper() + shown[1:]
            pieces.append(shown)
            sentence_start = False
        if said and said[0] in _BREAKS and (not tokens or tokens[-1] in _BREAKS):
            # Only a seam can hold two breaks in a row or a leading break; apply tokenize's rule
            # there: drop a leading one, keep the stronger of two.
            if tokens and said[0] == ".":
                tokens[-1] = "."
            tokens.extend(said[1:])
        else:
            tokens.extend(said)
    while tokens and tokens[-1] in _BREAKS:
        tokens.pop()
    return Expansion(" ".join("".join(pieces).split()), tuple(tokens))

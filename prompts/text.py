"""Text normalisation shared by the clip catalogue and the planner.

A transcript and a message must normalise to the same tokens for a clip to match, so this is the
one place that decides what a "word" is. Tokens are lower-case words; punctuation becomes break
tokens ("," or ".") so a recorded phrase that contains a comma only matches the same comma.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from enum import StrEnum


class Break(StrEnum):
    """Punctuation that follows a token: none, a comma-like pause or a sentence end."""

    NONE = ""
    COMMA = ","
    SENTENCE = "."


_BREAK_CHARS = {
    ",": Break.COMMA,
    ";": Break.COMMA,
    ":": Break.COMMA,
    "—": Break.COMMA,
    ".": Break.SENTENCE,
    "?": Break.SENTENCE,
    "!": Break.SENTENCE,
    "…": Break.SENTENCE,
}
# An initialism such as "a.m." keeps its dots: it is one spoken unit, not a sentence end.
_TOKEN = re.compile(r"(?:[a-z]\.){2,}|[a-z0-9]+(?:'[a-z]+)*|[,;:.?!…—]")


def tokenize(text: str) -> list[str]:
    """Lower-case word tokens and break tokens ("," or ".") in order, breaks collapsed."""
    raw = _TOKEN.findall(text.lower().replace("-", " ").replace("’", "'"))
    out: list[str] = []
    for tok in raw:
        brk = _BREAK_CHARS.get(tok)
        if brk is None:
            out.append(tok)
            continue
        if not out:
            continue
        if out[-1] in (Break.COMMA.value, Break.SENTENCE.value):
            # "word,." or "..." collapse to the strongest break.
            if brk is Break.SENTENCE:
                out[-1] = Break.SENTENCE.value
            continue
        out.append(brk.value)
    return out


def is_break(token: str) -> bool:
    return token in (Break.COMMA.value, Break.SENTENCE.value)


def tokens_key(text: str) -> tuple[str, ...]:
    """The catalogue key of a transcript: its tokens without leading or trailing breaks."""
    toks = tokenize(text)
    while toks and is_break(toks[-1]):
        toks.pop()
    while toks and is_break(toks[0]):
        toks.pop(0)
    return tuple(toks)


def normalize(text: str) -> str:
    """A transcript as one comparable string ("Thank you." -> "thank you")."""
    return " ".join(tokens_key(text))


def sentence_words(tokens: Sequence[str]) -> list[int]:
    """How many words each sentence of ``tokens`` has: cut at "." tokens, wordless runs dropped."""
    counts: list[int] = []
    words = 0
    for tok in tokens:
        if tok == ".":
            if words:
                counts.append(words)
            words = 0
        elif tok != ",":
            words += 1
    if words:
        counts.append(words)
    return counts


def split_sentences(transcript: str, counts: Sequence[int]) -> list[str] | None:
    """``transcript`` cut into sentences of ``counts`` words each, punctuation kept with each.

    Words are counted the way ``tokenize`` finds them, so the cuts follow the planner's tokens
    even where the transcript shows no full stop of its own ("at four p.m." ends a sentence with
    the dot of "p.m."). None when the transcript's words do not add up to ``counts``.
    """
    lowered = transcript.lower().replace("-", " ").replace("’", "'")
    found = [(m.end(), m.group() in _BREAK_CHARS) for m in _TOKEN.finditer(lowered)]
    if len(lowered) != len(transcript):
        # A letter whose lower case is longer ("İ" -> "i̇"): map offsets back to the transcript.
        origin = [i for i, ch in enumerate(transcript) for _ in ch.lower()]
        found = [(origin[end - 1] + 1, brk) for end, brk in found]
    if sum(counts) != sum(1 for _, brk in found if not brk):
        return None
    out: list[str] = []
    start = i = 0
    n = len(found)
    for count in counts[:-1]:
        while count:
            count -= not found[i][1]
            i += 1
        end = found[i - 1][0]
        while i < n and found[i][1]:  # the sentence's own punctuation
            end = found[i][0]
            i += 1
        out.append(transcript[start:end].strip())
        start = end
    if counts:
        out.append(transcript[start:].strip())
    return out

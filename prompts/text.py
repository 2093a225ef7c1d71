"""Text normalisation shared by the clip catalogue and the planner.

A transcript and a message must normalise to the same tokens for a clip to match, so this is the
one place that decides what a "word" is. Tokens are lower-case words; punctuation becomes break
tokens ("," or ".") so a recorded phrase that contains a comma only matches the same comma.
"""

from __future__ import annotations

import re
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

"""US-English cardinals and ordinals as word tokens.

num2words supplies the words; we clean them into tokens that ``prompts.text.tokenize`` would give:
no hyphens ("twenty-one" -> "twenty", "one"), no commas, and no British "and" (num2words always
says "one hundred and one"; Americans and Asterisk's ``en`` rules say "one hundred one").
The range stops at 999,999 because the minimal clip inventory (research/phrase-assembly.md §1.9)
has "thousand" but no "million".
"""

from __future__ import annotations

from functools import lru_cache

from num2words import num2words

from prompts.errors import ValueOutOfRangeError

MAX_NUMBER = 999_999

ONES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
TEENS = (
    "ten",
    "eleven",
    "twelve",
    "thirteen",
    "fourteen",
    "fifteen",
    "sixteen",
    "seventeen",
    "eighteen",
    "nineteen",
)
TENS = ("twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety")

#: Every word a cardinal 0..999,999 can contain, in the order a voice actor would read them.
CARDINAL_VOCABULARY: tuple[str, ...] = ONES + TEENS + TENS + ("hundred", "thousand")

#: Every ordinal-form word an ordinal 1..999,999 can end with ("twenty first" ends in "first").
ORDINAL_VOCABULARY: tuple[str, ...] = (
    "first",
    "second",
    "third",
    "fourth",
    "fifth",
    "sixth",
    "seventh",
    "eighth",
    "ninth",
    "tenth",
    "eleventh",
    "twelfth",
    "thirteenth",
    "fourteenth",
    "fifteenth",
    "sixteenth",
    "seventeenth",
    "eighteenth",
    "nineteenth",
    "twentieth",
    "thirtieth",
    "fortieth",
    "fiftieth",
    "sixtieth",
    "seventieth",
    "eightieth",
    "ninetieth",
    "hundredth",
    "thousandth",
)


def _clean(text: str) -> tuple[str, ...]:
    # "and" never carries meaning in an English integer, so dropping every one is safe.
    return tuple(w for w in text.replace("-", " ").replace(",", " ").split() if w != "and")


def _check(value: int, low: int, what: str) -> None:
    # bool is an int subclass; True spoken as "one" would hide a caller's bug.
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{what} needs an int, got {type(value).__name__} {value!r}")
    if not low <= value <= MAX_NUMBER:
        raise ValueOutOfRangeError(
            f"cannot say {value:,} as {what}: the rules cover {low:,} to {MAX_NUMBER:,}", value
        )


@lru_cache(maxsize=4096)
def _cardinal(value: int) -> tuple[str, ...]:
    return _clean(num2words(value))


@lru_cache(maxsize=4096)
def _ordinal(value: int) -> tuple[str, ...]:
    return _clean(num2words(value, to="ordinal"))


def cardinal_words(value: int) -> tuple[str, ...]:
    """``101`` -> ``("one", "hundred", "one")``; raises ValueOutOfRangeError outside 0..999,999."""
    _check(value, 0, "a cardinal")
    return _cardinal(value)


def ordinal_words(value: int) -> tuple[str, ...]:
    """``21`` -> ``("twenty", "first")``; raises ValueOutOfRangeError outside 1..999,999."""
    _check(value, 1, "an ordinal")
    return _ordinal(value)

"""US-English cardinals and ordinals: the words a listener hears."""

from __future__ import annotations

import pytest

from prompts.errors import PromptError, ValueOutOfRangeError
from prompts.numbers import (
    CARDINAL_VOCABULARY,
    ORDINAL_VOCABULARY,
    cardinal_words,
    ordinal_words,
)
from prompts.text import tokenize


@pytest.mark.parametrize(
    ("value", "spoken"),
    [
        (0, "zero"),
        (7, "seven"),
        (13, "thirteen"),
        (19, "nineteen"),
        (20, "twenty"),
        (21, "twenty one"),
        (35, "thirty five"),
        (99, "ninety nine"),
        (100, "one hundred"),
        (101, "one hundred one"),
        (110, "one hundred ten"),
        (747, "seven hundred forty seven"),
        (999, "nine hundred ninety nine"),
        (1000, "one thousand"),
        (1042, "one thousand forty two"),
        (2026, "two thousand twenty six"),
        (20000, "twenty thousand"),
        (100001, "one hundred thousand one"),
        (123456, "one hundred twenty three thousand four hundred fifty six"),
        (999999, "nine hundred ninety nine thousand nine hundred ninety nine"),
    ],
)
def test_cardinals_the_american_way(value: int, spoken: str) -> None:
    assert cardinal_words(value) == tuple(spoken.split())


ORDINALS_1_TO_31 = [
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
    "twenty first",
    "twenty second",
    "twenty third",
    "twenty fourth",
    "twenty fifth",
    "twenty sixth",
    "twenty seventh",
    "twenty eighth",
    "twenty ninth",
    "thirtieth",
    "thirty first",
]


@pytest.mark.parametrize(("value", "spoken"), list(enumerate(ORDINALS_1_TO_31, start=1)))
def test_ordinals_for_every_day_of_a_month(value: int, spoken: str) -> None:
    assert ordinal_words(value) == tuple(spoken.split())


@pytest.mark.parametrize(
    ("value", "spoken"),
    [
        (40, "fortieth"),
        (100, "one hundredth"),
        (101, "one hundred first"),
        (1042, "one thousand forty second"),
        (40000, "forty thousandth"),
        (999999, "nine hundred ninety nine thousand nine hundred ninety ninth"),
    ],
)
def test_larger_ordinals(value: int, spoken: str) -> None:
    assert ordinal_words(value) == tuple(spoken.split())


@pytest.mark.parametrize(
    ("func", "value", "shown"),
    [
        (cardinal_words, -1, "-1"),
        (cardinal_words, 1_000_000, "1,000,000"),
        (ordinal_words, 0, "0"),
        (ordinal_words, -5, "-5"),
        (ordinal_words, 1_000_000, "1,000,000"),
    ],
)
def test_out_of_range_names_the_value(func, value: int, shown: str) -> None:
    with pytest.raises(ValueOutOfRangeError) as info:
        func(value)
    assert shown in str(info.value)
    assert info.value.value == value
    assert isinstance(info.value, PromptError)


@pytest.mark.parametrize("value", [True, 1.0, "1"])
def test_non_integers_are_refused(value: object) -> None:
    with pytest.raises(TypeError):
        cardinal_words(value)  # type: ignore[arg-type]


SAMPLES = [*range(2001), 10_000, 12_345, 40_000, 99_999, 100_000, 500_050, 999_999]


def test_words_are_tokens_tokenize_agrees_with() -> None:
    for value in SAMPLES:
        words = cardinal_words(value)
        assert tokenize(" ".join(words)) == list(words), value
        if value:
            words = ordinal_words(value)
            assert tokenize(" ".join(words)) == list(words), value


def test_vocabularies_hold_every_word_the_rules_say() -> None:
    cardinal = {w for v in SAMPLES for w in cardinal_words(v)}
    ordinal_ends = {ordinal_words(v)[-1] for v in SAMPLES if v}
    ordinal_heads = {w for v in SAMPLES if v for w in ordinal_words(v)[:-1]}
    assert cardinal == set(CARDINAL_VOCABULARY)
    assert ordinal_ends == set(ORDINAL_VOCABULARY)
    assert ordinal_heads <= set(CARDINAL_VOCABULARY)
    assert "and" not in cardinal | ordinal_heads

"""Phone numbers and digit strings, read digit by digit in their groups."""

from __future__ import annotations

import pytest

from prompts.errors import PromptError, UnreadableDigitsError
from prompts.phone import digit_groups, digit_words
from prompts.template import spoken_text

SF = ("415", "555", "0134")


@pytest.mark.parametrize(
    ("text", "groups"),
    [
        ("+1 415 555 0134", SF),
        ("(415) 555-0134", SF),
        ("+14155550134", SF),  # E.164, as the server stores numbers
        ("415.555.0134", SF),
        ("4155550134", SF),
        ("14155550134", SF),
        ("  415 555 0134  ", SF),
        ("5550134", ("555", "0134")),
        ("1-800-555-0134", ("1", "800", "555", "0134")),
        ("+44 20 7946 0958", ("44", "20", "7946", "0958")),
        ("+442079460958", ("44", "20", "7946", "0958")),
        ("12345", ("12345",)),
        ("0042", ("0042",)),
    ],
)
def test_groups(text: str, groups: tuple[str, ...]) -> None:
    assert digit_groups(text) == groups


@pytest.mark.parametrize(
    ("text", "spoken"),
    [
        ("(415) 555-0134", "four one five, five five five, zero one three four"),
        ("+1 415 555 0134", "four one five, five five five, zero one three four"),
        ("0042", "zero zero four two"),  # zero, never "oh"
        ("12 34", "one two, three four"),
    ],
)
def test_words_with_a_comma_between_groups(text: str, spoken: str) -> None:
    assert spoken_text(digit_words(text)) == spoken


def test_group_breaks_are_comma_tokens() -> None:
    assert digit_words("12 34") == ("one", "two", ",", "three", "four")


@pytest.mark.parametrize("text", ["415-CALL-NOW", "", "   ", "++1 415", "ext. 12", "1+2", "--"])
def test_unreadable_strings_name_the_value(text: str) -> None:
    with pytest.raises(UnreadableDigitsError) as info:
        digit_groups(text)
    assert repr(text) in str(info.value)
    assert isinstance(info.value, PromptError)

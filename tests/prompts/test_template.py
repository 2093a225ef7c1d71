"""Templates: syntax, validation, and expansion to the words a caller hears."""

from __future__ import annotations

from datetime import date, datetime, time

import pytest

from prompts.errors import (
    MissingValueError,
    PromptError,
    SlotTypeError,
    SlotValueError,
    TemplateError,
    TemplateSyntaxError,
    UnknownSlotKindError,
)
from prompts.template import SlotKind, expand_template, parse_template, validate_template
from prompts.text import tokens_key

DEMO = (
    "This is a reminder from {tenant}. Your appointment with {provider} is at "
    "{appointment:time} on {appointment:date}."
)
TODAY = date(2026, 11, 20)
VALUES: dict[str, object] = {
    "tenant": "Smile Dental",
    "provider": "Doctor Benedict",
    "appointment": datetime(2026, 12, 1, 16, 47),
}


def test_validate_returns_slot_names_kinds_and_positions() -> None:
    slots = validate_template(DEMO)
    assert [(s.name, s.kind, s.position) for s in slots] == [
        ("tenant", SlotKind.PHRASE, 24),
        ("provider", SlotKind.PHRASE, 56),
        ("appointment", SlotKind.TIME, 73),
        ("appointment", SlotKind.DATE, 95),
    ]
    assert DEMO[95:113] == "{appointment:date}"


@pytest.mark.parametrize("kind", [k.value for k in SlotKind])
def test_every_kind_is_accepted(kind: str) -> None:
    assert validate_template(f"Say {{x:{kind}}}.")[0].kind == SlotKind(kind)


def test_braces_escape_and_spaces_around_names_are_allowed() -> None:
    assert (
        expand_template("{{literal}} and {  who  }}}", {"who": "Ann"}, today=TODAY).transcript
        == "{literal} and Ann}"
    )


@pytest.mark.parametrize(
    ("template", "position"),
    [
        ("Hi {name", 3),
        ("Hi name}", 7),
        ("Hi {}", 3),
        ("Hi {:time}", 3),
        ("Hi {1st}", 3),
        ("Hi {first name}", 3),
        ("Hi {a{b}}", 3),
    ],
)
def test_syntax_errors_give_the_position(template: str, position: int) -> None:
    with pytest.raises(TemplateSyntaxError) as info:
        validate_template(template)
    assert info.value.position == position
    assert f"position {position}" in str(info.value)


@pytest.mark.parametrize(
    ("template", "ok"),
    [
        ("{a:time} on {a:date}", True),
        ("{a:number}, the {a:ordinal}", True),
        ("{a} at {a:digits}", True),
        ("{a:time} and {a:number}", False),
        ("{a} on {a:date}", False),
    ],
)
def test_one_name_may_serve_kinds_one_value_can_fill(template: str, ok: bool) -> None:
    if ok:
        validate_template(template)
        return
    with pytest.raises(TemplateSyntaxError) as info:
        validate_template(template)
    assert "'a'" in str(info.value) and f"position {template.rindex('{')}" in str(info.value)


@pytest.mark.parametrize("template", ["", "   ", "...", ", ."])
def test_a_template_that_says_nothing_is_refused(template: str) -> None:
    with pytest.raises(TemplateSyntaxError):
        validate_template(template)


def test_unknown_kind_names_the_slot_the_kind_and_the_choices() -> None:
    with pytest.raises(UnknownSlotKindError) as info:
        validate_template("Your visit is at {when:tme}.")
    message = str(info.value)
    assert "{when:tme}" in message and "'tme'" in message and "position 17" in message
    assert "time" in message and "digits" in message
    assert info.value.slot == "when"
    assert isinstance(info.value, TemplateError) and isinstance(info.value, PromptError)


def test_demo_transcript_and_tokens() -> None:
    expansion = expand_template(DEMO, VALUES, today=TODAY)
    assert expansion.transcript == (
        "This is a reminder from Smile Dental. Your appointment with Doctor Benedict is at "
        "four forty seven p.m. on Tuesday, December first."
    )
    assert expansion.tokens == tokens_key(expansion.transcript)
    assert expansion.tokens[5:8] == ("smile", "dental", ".")


@pytest.mark.parametrize(
    ("template", "values", "transcript"),
    [
        # "on tomorrow" is not English: the "on" goes when the date becomes relative.
        (
            "Your visit is on {d:date} at {t:time}.",
            {"d": date(2026, 11, 21), "t": time(9, 5)},
            "Your visit is tomorrow at nine oh five a.m.",
        ),
        ("Your visit is on {d:date}.", {"d": date(2026, 11, 20)}, "Your visit is today."),
        (
            "Your visit is on {d:date}.",
            {"d": date(2026, 11, 23)},
            "Your visit is on Monday, November twenty third.",
        ),
        # A time ending in "p.m." before the template's full stop gives one full stop.
        ("See you at {t:time}.", {"t": time(16, 0)}, "See you at four p.m."),
        # A slot starting a sentence starts with a capital.
        (
            "{d:date} is your visit. {n:number} people.",
            {"d": date(2026, 11, 21), "n": 3},
            "Tomorrow is your visit. Three people.",
        ),
        (
            "Room {r:number}, {o:ordinal} floor.",
            {"r": 101, "o": 3},
            "Room one hundred one, third floor.",
        ),
        (
            "Call {p:digits}.",
            {"p": "+14155550134"},
            "Call four one five, five five five, zero one three four.",
        ),
        (
            "From  {who}\n today.",
            {"who": "  Smile   Dental, Inc. "},
            "From Smile Dental, Inc. today.",
        ),
    ],
)
def test_transcripts(template: str, values: dict[str, object], transcript: str) -> None:
    assert expand_template(template, values, today=TODAY).transcript == transcript


def test_dropped_on_also_leaves_the_tokens() -> None:
    tokens = expand_template("It is on {d:date}.", {"d": TODAY}, today=TODAY).tokens
    assert tokens == ("it", "is", "today")


def test_breaks_at_seams_collapse_to_the_strongest() -> None:
    tokens = expand_template("From {who}. Bye", {"who": "Smile Dental, Inc."}, today=TODAY).tokens
    assert tokens == ("from", "smile", "dental", ",", "inc", ".", "bye")


@pytest.mark.parametrize("values", [{}, {"provider": None}])
def test_missing_value_names_the_slot(values: dict[str, object]) -> None:
    with pytest.raises(MissingValueError) as info:
        expand_template("With {provider} today.", values, today=TODAY)
    assert "{provider}" in str(info.value) and "position 5" in str(info.value)
    assert info.value.slot == "provider"


@pytest.mark.parametrize(
    ("kind", "value", "hint"),
    [
        ("time", "16:47", "str"),
        ("time", date(2026, 12, 1), "a date has no time of day"),
        ("date", time(16, 47), "time"),
        ("date", "2026-12-01", "str"),
        ("number", "12", "str"),
        ("number", True, "bool"),
        ("number", 1.5, "float"),
        ("ordinal", 2.0, "float"),
        ("digits", 4155550134, "leading zeros"),
        ("phrase", 42, "int"),
    ],
)
def test_wrong_type_names_the_slot(kind: str, value: object, hint: str) -> None:
    with pytest.raises(SlotTypeError) as info:
        expand_template(f"Value: {{v:{kind}}}.", {"v": value}, today=TODAY)
    message = str(info.value)
    assert f"{{v:{kind}}}" in message and "position 7" in message and hint in message


@pytest.mark.parametrize(
    ("kind", "value", "shown"),
    [
        ("number", -1, "-1"),
        ("number", 1_000_000, "1,000,000"),
        ("ordinal", 0, "0"),
        ("digits", "CALL-NOW", "CALL-NOW"),
        ("phrase", "  ...  ", "..."),
    ],
)
def test_unsayable_values_name_the_slot_and_the_value(kind: str, value: object, shown: str) -> None:
    with pytest.raises(SlotValueError) as info:
        expand_template(f"Value: {{v:{kind}}}.", {"v": value}, today=TODAY)
    message = str(info.value)
    assert f"{{v:{kind}}}" in message and shown in message


def test_parsing_is_cached() -> None:
    assert parse_template(DEMO) is parse_template(DEMO)

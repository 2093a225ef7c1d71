"""Recording scripts: what a voice actor is asked to read."""

from __future__ import annotations

import csv
import io

import pytest

from prompts.errors import SlotTypeError, UnknownSlotKindError
from prompts.models import ClipEntry, ClipIndex, Variant
from prompts.script import ScriptLine, recording_script, vocabulary
from prompts.template import SlotKind

C, F, A = Variant.CONTINUING, Variant.FINAL, Variant.ANY
DEMO = (
    "This is a reminder from {tenant}. Your appointment with {provider} is at "
    "{appointment:time} on {appointment:date}."
)
VOICEMAIL = (
    "Hello, this is a reminder from {tenant}. Your appointment with {provider} is on "
    "{appointment:date} at {appointment:time}. Please call us if you need to change "
    "it. Goodbye."
)
EMPTY = ClipIndex.build([])


def index(*clips: tuple[str, Variant]) -> ClipIndex:
    return ClipIndex.build([ClipEntry(f"c{i}", t, v, 400) for i, (t, v) in enumerate(clips)])


def phrases(lines: tuple[ScriptLine, ...]) -> list[tuple[str, str]]:
    return [(line.text, line.variant.value) for line in lines if line.id.startswith("P")]


def words(lines: tuple[ScriptLine, ...]) -> list[str]:
    return [line.text for line in lines if line.id.startswith("W")]


def test_literal_runs_and_names_with_their_takes() -> None:
    script = recording_script(
        [DEMO],
        EMPTY,
        sample_values={"tenant": "Smile Dental", "provider": ["Doctor Benedict", "Doctor Li"]},
    )
    assert phrases(script.lines) == [
        ("This is a reminder from", "continuing"),
        ("Smile Dental", "final"),
        ("Your appointment with", "continuing"),
        ("Doctor Benedict", "continuing"),
        ("Doctor Li", "continuing"),
        ("is at", "continuing"),
        ("on", "continuing"),
    ]


def test_breaks_and_template_ends_ask_for_final_takes() -> None:
    script = recording_script([VOICEMAIL], EMPTY)
    assert phrases(script.lines) == [
        ("Hello", "final"),
        ("this is a reminder from", "continuing"),
        ("Your appointment with", "continuing"),
        ("is on", "continuing"),
        ("is", "continuing"),  # "is on tomorrow" is said "is tomorrow"
        ("at", "continuing"),
        ("Please call us if you need to change it", "final"),
        ("Goodbye", "final"),
    ]


def test_context_is_the_template_sentence() -> None:
    script = recording_script([VOICEMAIL], EMPTY)
    by_text = {line.text: line for line in script.lines}
    assert by_text["Goodbye"].context == "Goodbye."
    assert by_text["Your appointment with"].context.startswith("Your appointment with {provider}")
    assert by_text["is"].note == 'said before "today" and "tomorrow"'


def test_words_for_time_and_date_slots() -> None:
    listed = words(recording_script([DEMO], EMPTY).lines)
    for word in [
        "oh",
        "a.m.",
        "p.m.",
        "noon",
        "midnight",
        "Tuesday",
        "December",
        "first",
        "twentieth",
        "thirtieth",
        "twenty",
        "thirty",
        "today",
        "tomorrow",
        "fifty",
        "thousand",
    ]:
        assert word in listed, word
    assert len(listed) == len(set(listed))
    # Numbers only appear when a number slot asks for them, and "zero" is never a time word.
    assert "hundred" not in listed and "zero" not in listed and "fortieth" not in listed
    assert listed.index("one") < listed.index("twenty") < listed.index("first")


@pytest.mark.parametrize(
    ("kind", "must", "must_not"),
    [
        ("number", ["zero", "nineteen", "ninety", "hundred", "thousand"], ["first", "oh"]),
        ("ordinal", ["first", "twenty", "ninetieth", "hundredth", "thousandth"], ["zero", "oh"]),
        ("digits", ["zero", "nine"], ["ten", "oh"]),
        ("phrase", [], ["zero", "one"]),
    ],
)
def test_words_follow_the_slot_kinds_used(kind: str, must: list[str], must_not: list[str]) -> None:
    listed = words(recording_script([f"Hi {{x:{kind}}}."], EMPTY).lines)
    assert set(must) <= set(listed)
    assert not set(must_not) & set(listed)


def test_what_the_index_has_is_left_out() -> None:
    voice = index(
        ("this is a reminder from", C), ("is at", A), ("oh", A), ("noon", F), ("Tuesday", C)
    )
    script = recording_script([DEMO], voice)
    texts = [line.text for line in script.lines]
    for covered in ["This is a reminder from", "is at", "oh", "noon", "Tuesday"]:
        assert covered not in texts, covered
    assert "Your appointment with" in texts and "midnight" in texts


def test_a_phrase_made_of_shorter_clips_is_listed_with_a_note() -> None:
    voice = index(("your", A), ("appointment", A), ("with", A))
    line = next(
        x for x in recording_script([DEMO], voice).lines if x.text == "Your appointment with"
    )
    assert line.note == "covered by 3 clips; a single take sounds better"


def test_a_phrase_with_only_the_other_take_is_listed_with_a_note() -> None:
    script = recording_script(["Thank you. Goodbye."], index(("goodbye", C), ("thank you", F)))
    assert phrases(script.lines) == [("Goodbye", "final")]
    assert "only a continuing take exists" in script.lines[0].note


def test_the_same_phrase_in_two_templates_is_listed_once() -> None:
    script = recording_script([DEMO, VOICEMAIL], EMPTY)
    texts = [line.text.lower() for line in script.lines]
    assert texts.count("your appointment with") == 1
    assert texts.count("this is a reminder from") == 1


def test_a_complete_voice_needs_nothing() -> None:
    voice = index(*((w, A) for w in vocabulary(SlotKind.TIME)), ("good morning", F))
    script = recording_script(["Good morning. {t:time}"], voice)
    assert script.lines == ()
    assert len(script) == 0
    assert "Nothing to record" in script.to_text()


def test_ids_are_unique_and_grouped() -> None:
    lines = recording_script([DEMO, VOICEMAIL], EMPTY).lines
    ids = [line.id for line in lines]
    assert len(ids) == len(set(ids))
    assert ids[:3] == ["P001", "P002", "P003"]
    assert ids[-1] == f"W{len(words(lines)):03d}"


def test_csv_has_a_header_and_one_row_per_line() -> None:
    script = recording_script([VOICEMAIL], EMPTY, sample_values={"tenant": "Smile, Dental"})
    rows = list(csv.reader(io.StringIO(script.to_csv())))
    assert rows[0] == ["id", "text", "variant", "context", "note"]
    assert len(rows) == len(script.lines) + 1
    assert rows[1] == ["P001", "Hello", "final", "Hello, this is a reminder from {tenant}.", ""]
    assert rows[3][:3] == ["P003", "Smile, Dental", "final"]  # the comma survives quoting


def test_text_is_numbered_with_cues_for_the_take() -> None:
    text = recording_script([DEMO], EMPTY).to_text()
    assert " 1. [P001] This is a reminder from …   (continuing)" in text
    assert "used in: This is a reminder from {tenant}." in text
    assert "[W001] one   (any)" in text


def test_bad_templates_and_samples_are_errors() -> None:
    with pytest.raises(UnknownSlotKindError):
        recording_script(["At {t:tme}."], EMPTY)
    with pytest.raises(SlotTypeError, match="tenant"):
        recording_script([DEMO], EMPTY, sample_values={"tenant": 42})


def test_samples_for_other_kinds_are_ignored() -> None:
    plain = recording_script([DEMO], EMPTY)
    with_time = recording_script([DEMO], EMPTY, sample_values={"appointment": "16:47"})
    assert plain == with_time


@pytest.mark.parametrize("kind", list(SlotKind))
def test_an_empty_voice_gets_the_whole_vocabulary_of_a_kind(kind: SlotKind) -> None:
    listed = words(recording_script([f"Hi {{x:{kind.value}}}."], EMPTY).lines)
    assert sorted(w.lower() for w in listed) == sorted(vocabulary(kind))


def test_names_without_a_slot_are_listed_once_as_any() -> None:
    voice = index(("Doctor Li", F))
    script = recording_script([DEMO], voice, names=["Smile  Dental", "Doctor Li", "..."])
    assert [x for x in phrases(script.lines) if x[0] in ("Smile Dental", "Doctor Li")] == [
        ("Smile Dental", "any")
    ]
    line = next(x for x in script.lines if x.text == "Smile Dental")
    assert line.id.startswith("P") and line.context == "a name for phrase slots"

"""Sentences of a plan, the breaks its pauses follow, and one voice per sentence."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta

import pytest

from prompts.clock import DATE_VOCABULARY, TIME_VOCABULARY
from prompts.errors import PlanOptionsError
from prompts.models import (
    ClipEntry,
    ClipIndex,
    ClipSegment,
    PauseSegment,
    Plan,
    SaySegment,
    Segment,
    Sentence,
    SpokenSentence,
    Variant,
)
from prompts.numbers import CARDINAL_VOCABULARY, ORDINAL_VOCABULARY
from prompts.planner import PauseRules, plan_expansion, plan_message
from prompts.template import Expansion
from prompts.text import split_sentences
from tests.prompts.test_planner import DEMO, DEMO_VALUES, TODAY, clip, demo_clips

C, F, A = Variant.CONTINUING, Variant.FINAL, Variant.ANY

# Templates shaped like the ones tenants write: names, times and dates, a menu, a goodbye.
TEMPLATES = {
    "demo": DEMO,
    "greeting": (
        "Hi, this is {tenant}. Your appointment with {provider} is on {appointment:date} "
        "at {appointment:time}. Thank you, goodbye."
    ),
    "time-last": "See you at {appointment:time}. Thank you, goodbye.",
    "no-full-stop": "This is {tenant}: your appointment is on {appointment:date} at "
    "{appointment:time}",
    "menu": "Press one to confirm, two to cancel. Thank you.",
    "question": "Can you come on {appointment:date}? Call {tenant}!",
}
APPOINTMENTS = {
    "4:47 pm": datetime(2026, 12, 1, 16, 47),
    "noon": datetime(2026, 12, 3, 12, 0),
    "9:05 am": datetime(2026, 11, 27, 9, 5),
    "tomorrow 2:15 pm": datetime.combine(TODAY + timedelta(days=1), datetime.min.time())
    + timedelta(hours=14, minutes=15),
    "next year": datetime(2027, 3, 4, 10, 30),
}
PEOPLE = [
    {"tenant": "Smile Dental", "provider": "Doctor Benedict"},
    {"tenant": "Kicks Karate", "provider": "Sensei Okafor"},  # names nobody recorded
]


def _words(*vocabularies: tuple[str, ...]) -> list[str]:
    return list(dict.fromkeys(w for v in vocabularies for w in v))


def phrase_voice() -> list[ClipEntry]:
    """A voice like the demo's: every time and date word in two takes, and the stock phrases."""
    clips = [
        clip(f"w-{w}-{v.value}", w, v, 350)
        for w in _words(CARDINAL_VOCABULARY, ORDINAL_VOCABULARY, TIME_VOCABULARY, DATE_VOCABULARY)
        for v in (C, F)
    ]
    for i, phrase in enumerate(
        (
            "This is a reminder from",
            "Your appointment with",
            "is at",
            "is on",
            "at",
            "on",
            "Smile Dental",
            "Doctor Benedict",
            "thank you, goodbye",
            "thank you",
            "press one to confirm",
            "two to cancel",
            "see you at",
            "hi",
            "this is",
        )
    ):
        clips += [clip(f"p{i}c", phrase, C, 900), clip(f"p{i}f", phrase, F, 950)]
    return clips


VOICES = {
    "words": [*demo_clips(), clip("ty", "thank you"), clip("tyb", "Thank you, goodbye.", F)],
    "phrases": phrase_voice(),
    "partial": [
        clip("rem", "This is a reminder from", C, 1200),
        clip("appt", "Your appointment with", C, 1000),
        clip("four", "four", C, 300),
        clip("pm", "p.m.", A, 350),
        clip("first", "first", F, 400),
        clip("bye", "Thank you, goodbye.", F, 900),
    ],
    "none": [],
}
RULES = [PauseRules(), PauseRules(word_gap_ms=0, comma_ms=300, sentence_ms=700)]


def plans(voice: str, fallback: str) -> Iterator[tuple[str, Plan]]:
    """Every template, appointment, pair of names and pause rules, planned on one voice."""
    index = ClipIndex.build(VOICES[voice])
    for name, template in TEMPLATES.items():
        for when, appointment in APPOINTMENTS.items():
            for people in PEOPLE:
                for rules in RULES:
                    values = {**people, "appointment": appointment}
                    p = plan_message(
                        template, values, index, today=TODAY, pauses=rules, fallback=fallback
                    )
                    yield f"{name} / {when} / {people['tenant']} / {rules}", p


def rebuilt(sentences: tuple[Sentence, ...]) -> tuple[Segment, ...]:
    out: list[Segment] = []
    for s in sentences:
        out.extend(s.segments)
        if s.pause_ms:
            out.append(PauseSegment(s.pause_ms, "."))
    return tuple(out)


def voices(s: Sentence) -> set[str]:
    return {seg.kind for seg in s.segments if not isinstance(seg, PauseSegment)}


# --- the break each pause follows ----------------------------------------------------------


@pytest.mark.parametrize(
    ("template", "pauses"),
    [
        ("one two", [(50, "")]),
        ("one, two", [(250, ",")]),
        ("one; two", [(250, ",")]),
        ("one: two", [(250, ",")]),
        ("one. two", [(500, ".")]),
        ("one? two", [(500, ".")]),
        ("one! two", [(500, ".")]),
        ("one, . two", [(500, ".")]),  # the strongest break wins
        ("one two, one. two", [(50, ""), (250, ","), (500, ".")]),
        ("One. Two.", [(500, ".")]),  # nothing after the last word
        ("three four, three. Four", [(250, ","), (500, ".")]),  # Say runs stop at breaks
    ],
)
def test_each_pause_says_which_break_it_follows(
    template: str, pauses: list[tuple[int, str]]
) -> None:
    p = plan_message(
        template, {}, ClipIndex.build([clip("1", "one"), clip("2", "two")]), today=TODAY
    )
    assert [(s.ms, s.after) for s in p.segments if isinstance(s, PauseSegment)] == pauses


def test_pauses_built_by_hand_are_word_gaps_and_planned_ones_are_shared() -> None:
    assert PauseSegment(500).after == ""
    assert PauseSegment(500) != PauseSegment(500, ".")
    index = ClipIndex.build([clip("1", "one"), clip("2", "two")])
    first = plan_message("one two. one, two", {}, index, today=TODAY)
    again = plan_message("two one. two, one", {}, index, today=TODAY)
    gaps = [s for s in first.segments if isinstance(s, PauseSegment)]
    assert [(s.ms, s.after) for s in gaps] == [(50, ""), (500, "."), (250, ",")]
    assert all(
        a is b for a, b in zip(gaps, [s for s in again.segments if s.kind == "pause"], strict=True)
    )


# --- sentences() ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("template", "values", "texts"),
    [
        (
            DEMO,
            DEMO_VALUES,
            [
                "This is a reminder from Smile Dental.",
                "Your appointment with Doctor Benedict is at four forty seven p.m. on Tuesday, "
                "December first.",
            ],
        ),
        # The sentence ends with the dot of "p.m.": the transcript shows no second one.
        (
            TEMPLATES["time-last"],
            DEMO_VALUES,
            ["See you at four forty seven p.m.", "Thank you, goodbye."],
        ),
        ("Can you come? Call us!", {}, ["Can you come?", "Call us!"]),
        ("No full stop here, just a comma", {}, ["No full stop here, just a comma"]),
        ("One sentence.", {}, ["One sentence."]),
        ("Room {n:number}. Floor two.", {"n": 21}, ["Room twenty one.", "Floor two."]),
        (TEMPLATES["no-full-stop"], DEMO_VALUES, [None]),  # one sentence: the transcript
    ],
)
def test_sentences_are_named_as_the_transcript_shows_them(
    template: str, values: dict[str, object], texts: list[str | None]
) -> None:
    for clips in ([], demo_clips()):
        p = plan_message(template, values, ClipIndex.build(clips), today=TODAY)
        got = [s.text for s in p.sentences()]
        assert got == [t if t is not None else p.transcript for t in texts]


def test_demo_sentences_with_a_partial_voice() -> None:
    p = plan_message(DEMO, DEMO_VALUES, ClipIndex.build(VOICES["partial"]), today=TODAY)
    first, second = p.sentences()
    assert first.segments == (p.segments[0], PauseSegment(50), SaySegment("smile dental", 760))
    assert first.pause_ms == 500
    assert (first.recorded, first.missing) == (False, ("smile dental",))
    assert first.duration_ms == 1200 + 50 + 760 + 500
    assert second.pause_ms == 0
    assert second.missing == ("doctor benedict is at", "forty seven", "on tuesday", "december")


@pytest.mark.parametrize("voice", sorted(VOICES))
@pytest.mark.parametrize("fallback", ["word", "sentence"])
def test_sentences_give_back_the_plan(voice: str, fallback: str) -> None:
    for case, p in plans(voice, fallback):
        sentences = p.sentences()
        assert rebuilt(sentences) == p.segments, case
        assert sentences[-1].pause_ms == 0, case
        assert {s.pause_ms for s in sentences[:-1]} <= {r.sentence_ms for r in RULES}, case
        assert " ".join(s.text for s in sentences) == p.transcript, case
        assert sum(s.duration_ms for s in sentences) == p.pass_duration_ms, case


def test_a_clip_across_a_full_stop_keeps_both_sentences_in_one() -> None:
    index = ClipIndex.build([clip("tyb", "Thank you. Goodbye."), clip("see", "see")])
    for fallback, last in [
        ("word", (ClipSegment("see", "see", A, 400, "https://cdn.test/see.mp3"),)),
        ("sentence", (SaySegment("See you soon.", 3 * 380),)),
    ]:
        p = plan_message(
            "Thank you. Goodbye. See you soon.", {}, index, today=TODAY, fallback=fallback
        )
        first, second = p.sentences()
        assert (first.text, first.recorded) == ("Thank you. Goodbye.", True)
        assert second.text == "See you soon."
        assert second.segments[: len(last)] == last
        assert rebuilt((first, second)) == p.segments


def test_with_no_sentence_pause_the_message_is_one_sentence() -> None:
    rules = PauseRules(sentence_ms=0)
    index = ClipIndex.build([clip("1", "one"), clip("2", "two")])
    p = plan_message("One. Two three.", {}, index, today=TODAY, pauses=rules)
    (only,) = p.sentences()
    assert (only.text, only.pause_ms, only.segments) == ("One. Two three.", 0, p.segments)
    whole = plan_message(
        "One. Two three.", {}, index, today=TODAY, pauses=rules, fallback="sentence"
    )
    assert whole.segments == (SaySegment("One. Two three.", 3 * 380),)


@pytest.mark.parametrize(
    ("segments", "transcript", "texts"),
    [
        ((ClipSegment("h", "Hello", A, 300),), "Hello there.", ["Hello there."]),
        (
            (
                ClipSegment("h", "Hello", A, 300),
                PauseSegment(250, ","),
                SaySegment("doctor smith", 760),
                PauseSegment(500, "."),
                ClipSegment("b", "Goodbye!", F, 400),
            ),
            "",
            ["Hello, doctor smith.", "Goodbye!"],
        ),
        ((PauseSegment(300), SaySegment("hi", 380)), "Hi.", ["Hi."]),
    ],
)
def test_a_plan_built_by_hand_still_has_sentences(
    segments: tuple[Segment, ...], transcript: str, texts: list[str]
) -> None:
    p = Plan(segments, 1, 0, transcript, (), 0)
    assert [s.text for s in p.sentences()] == texts
    assert rebuilt(p.sentences()) == segments


@pytest.mark.parametrize(
    ("segments", "recorded"),
    [
        ((), True),
        ((ClipSegment("a", "a", A, 1), PauseSegment(50), ClipSegment("b", "b", A, 1)), True),
        ((ClipSegment("a", "a", A, 1), PauseSegment(50), SaySegment("b", 380)), False),
        ((SaySegment("a b", 760),), False),
    ],
)
def test_a_sentence_is_recorded_when_no_word_is_left_to_text_to_speech(
    segments: tuple[Segment, ...], recorded: bool
) -> None:
    s = Sentence(segments, 500, "x")
    assert s.recorded is recorded
    assert s.duration_ms == sum(seg.duration_ms for seg in segments) + 500


# --- one voice per sentence ----------------------------------------------------------------


def test_demo_with_a_partial_voice_speaks_each_unrecorded_sentence_whole() -> None:
    index = ClipIndex.build(VOICES["partial"])
    words = plan_message(DEMO, DEMO_VALUES, index, today=TODAY)
    p = plan_message(DEMO, DEMO_VALUES, index, today=TODAY, fallback="sentence")
    first = "This is a reminder from Smile Dental."
    second = (
        "Your appointment with Doctor Benedict is at four forty seven p.m. on Tuesday, "
        "December first."
    )
    assert p.segments == (
        SaySegment(first, 7 * 380),
        PauseSegment(500, "."),
        SaySegment(second, 15 * 380),
    )
    assert p.missing == words.missing  # still the exact words to record
    assert p.spoken == (
        SpokenSentence(first, ("smile dental",)),
        SpokenSentence(second, ("doctor benedict is at", "forty seven", "on tuesday", "december")),
    )
    assert [s.missing for s in p.sentences()] == [s.missing for s in words.sentences()]
    assert p.duration_ms == 2 * (22 * 380 + 500) + 1200
    assert words.spoken == ()


@pytest.mark.parametrize("voice", sorted(VOICES))
def test_no_sentence_mixes_the_human_voice_and_text_to_speech(voice: str) -> None:
    for (case, words), (_, whole) in zip(
        plans(voice, "word"), plans(voice, "sentence"), strict=True
    ):
        for s in whole.sentences():
            assert voices(s) in ({"clip"}, {"say"}), (case, s)
            if not s.recorded:
                assert s.segments == (SaySegment(s.text, s.duration_ms - s.pause_ms),), case
        assert whole.missing == words.missing, case
        unrecorded = [s for s in words.sentences() if not s.recorded]
        assert whole.spoken == tuple(
            {s.text: SpokenSentence(s.text, s.missing) for s in unrecorded}.values()
        ), case
        passes = whole.duration_ms - whole.loop_pause_ms * (whole.loops - 1)
        assert passes == whole.loops * whole.pass_duration_ms, case


@pytest.mark.parametrize("voice", sorted(VOICES))
def test_a_wholly_recorded_sentence_is_the_same_under_both_options(voice: str) -> None:
    recorded = 0
    for (case, words), (_, whole) in zip(
        plans(voice, "word"), plans(voice, "sentence"), strict=True
    ):
        assert len(words.sentences()) == len(whole.sentences()), case
        for w, s in zip(words.sentences(), whole.sentences(), strict=True):
            if w.recorded:
                recorded += 1
                assert s == w, case
            else:
                assert s.text == w.text and s.pause_ms == w.pause_ms, case
                assert s.missing == w.missing, case
        if not words.missing:
            assert whole == words, case
    assert recorded or voice == "none"  # each voice but the empty one records some sentence


def test_the_phrase_voice_records_whole_demo_sentences() -> None:
    index = ClipIndex.build(VOICES["phrases"])
    p = plan_message(DEMO, DEMO_VALUES, index, today=TODAY, fallback="sentence")
    assert [s.recorded for s in p.sentences()] == [True, True]
    assert p.spoken == () and p.missing == ()
    other = plan_message(
        DEMO, {**DEMO_VALUES, "provider": "Sensei Okafor"}, index, today=TODAY, fallback="sentence"
    )
    assert [s.recorded for s in other.sentences()] == [True, False]
    assert other.missing == ("sensei okafor",)


def test_a_sentence_said_twice_is_named_once() -> None:
    p = plan_message(
        "Hello there. Hello there.", {}, ClipIndex.build([]), today=TODAY, fallback="sentence"
    )
    assert p.segments == (
        SaySegment("Hello there.", 760),
        PauseSegment(500, "."),
        SaySegment("Hello there.", 760),
    )
    assert p.spoken == (SpokenSentence("Hello there.", ("hello there",)),)


def test_word_is_the_default() -> None:
    index = ClipIndex.build(VOICES["partial"])
    assert plan_message(DEMO, DEMO_VALUES, index, today=TODAY) == plan_message(
        DEMO, DEMO_VALUES, index, today=TODAY, fallback="word"
    )


@pytest.mark.parametrize("bad", ["words", "", "Sentence", "clips", None, 1])
def test_an_unknown_fallback_is_refused(bad: object) -> None:
    index = ClipIndex.build([])
    with pytest.raises(PlanOptionsError, match=f"fallback.*{bad!r}"):
        plan_message("Hello.", {}, index, today=TODAY, fallback=bad)  # type: ignore[arg-type]
    with pytest.raises(PlanOptionsError, match=f"fallback.*{bad!r}"):
        plan_expansion(Expansion("Hello.", ("hello",)), index, fallback=bad)  # type: ignore[arg-type]


def test_plan_expansion_names_sentences_from_its_tokens() -> None:
    expansion = Expansion("one, two. Three.", (",", "one", ",", "two", ".", "three", "."))
    index = ClipIndex.build([clip("1", "one"), clip("2", "two")])
    p = plan_expansion(expansion, index, loops=1, fallback="sentence")
    assert [s.text for s in p.sentences()] == ["one, two.", "Three."]
    assert p.segments[-1] == SaySegment("Three.", 380)


@pytest.mark.parametrize(
    ("transcript", "counts", "texts"),
    [
        ("Hi there. Bye.", [2, 1], ["Hi there.", "Bye."]),
        ("At four p.m. See you!", [3, 2], ["At four p.m.", "See you!"]),
        ("Well, okay?! Fine", [2, 1], ["Well, okay?!", "Fine"]),
        ("Bon-bon time. Go", [3, 1], ["Bon-bon time.", "Go"]),
        # tokenize reads "İ" as "i̇", two letters, and so "İstanbul" as two words
        ("İstanbul calls. Bye.", [3, 1], ["İstanbul calls.", "Bye."]),
        ("Hi there. Bye.", [2, 2], None),  # the words do not add up: no guess
    ],
)
def test_split_sentences(transcript: str, counts: list[int], texts: list[str] | None) -> None:
    assert split_sentences(transcript, counts) == texts

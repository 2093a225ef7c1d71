"""The planner: which clips, which takes, which pauses, what is missing."""

from __future__ import annotations

from datetime import date, datetime

import pytest

from prompts.errors import MissingValueError, PlanOptionsError
from prompts.models import (
    ClipEntry,
    ClipIndex,
    ClipSegment,
    PauseSegment,
    Plan,
    SaySegment,
    Variant,
)
from prompts.planner import PauseRules, plan_expansion, plan_message
from prompts.template import Expansion

TODAY = date(2026, 11, 20)
C, F, A = Variant.CONTINUING, Variant.FINAL, Variant.ANY
DEMO = (
    "This is a reminder from {tenant}. Your appointment with {provider} is at "
    "{appointment:time} on {appointment:date}."
)
DEMO_VALUES: dict[str, object] = {
    "tenant": "Smile Dental",
    "provider": "Doctor Benedict",
    "appointment": datetime(2026, 12, 1, 16, 47),
}


def clip(clip_id: str, text: str, variant: Variant = A, ms: int = 400) -> ClipEntry:
    return ClipEntry(clip_id, text, variant, ms, f"https://cdn.test/{clip_id}.mp3")


def plan(
    template: str, *clips: ClipEntry, values: dict[str, object] | None = None, **options: object
) -> Plan:
    return plan_message(template, values or {}, ClipIndex.build(clips), today=TODAY, **options)  # type: ignore[arg-type]


def spoken(p: Plan) -> list[str]:
    """The plan as the listener gets it: clip ids, [say: words] and |ms| pauses."""
    out = []
    for s in p.segments:
        if isinstance(s, ClipSegment):
            out.append(s.clip_id)
        elif isinstance(s, SaySegment):
            out.append(f"[say: {s.text}]")
        else:
            out.append(f"|{s.ms}|")
    return out


def clips_only(p: Plan) -> list[str]:
    return [s.clip_id for s in p.segments if isinstance(s, ClipSegment)]


def test_a_phrase_clip_beats_its_word_clips() -> None:
    p = plan(
        "Your appointment with us.",
        clip("your", "your"),
        clip("appt", "appointment"),
        clip("with", "with"),
        clip("phrase", "Your appointment with"),
        clip("us", "us"),
    )
    assert clips_only(p) == ["phrase", "us"]


def test_coverage_is_optimal_not_greedy() -> None:
    # Greedy would take "see you" and leave "soon" to text-to-speech.
    p = plan("See you soon.", clip("a", "see you"), clip("b", "you soon"), clip("c", "see"))
    assert clips_only(p) == ["c", "b"]
    assert p.missing == ()


def test_fewer_segments_win_when_every_word_is_covered() -> None:
    p = plan(
        "one two three four",
        clip("1", "one"),
        clip("2", "two"),
        clip("3", "three"),
        clip("4", "four"),
        clip("12", "one two"),
        clip("234", "two three four"),
    )
    assert clips_only(p) == ["1", "234"]


@pytest.mark.parametrize(
    ("template", "wanted"),
    [
        ("Call at four.", F),  # before a full stop
        ("Call at four, please.", F),  # before a comma
        ("Call at four", F),  # at the end of the message
        ("Call at four today.", C),  # more follows
    ],
)
def test_final_take_before_a_break_continuing_elsewhere(template: str, wanted: Variant) -> None:
    p = plan(template, clip("f", "four", F), clip("c", "four", C), clip("a", "four", A))
    four = [s for s in p.segments if isinstance(s, ClipSegment)][0]
    assert four.variant is wanted


@pytest.mark.parametrize(
    ("takes", "expected"),
    [
        ([("a", A), ("c", C)], "a"),  # wanted FINAL missing: ANY next
        ([("c", C)], "c"),  # then the other take
        ([("z", F), ("b", F), ("c", C)], "b"),  # same variant twice: lowest clip_id
    ],
)
def test_take_fallback_order(takes: list[tuple[str, Variant]], expected: str) -> None:
    p = plan("Goodbye.", *(clip(i, "goodbye", v) for i, v in takes))
    assert clips_only(p) == [expected]


def test_demo_message_with_a_partial_voice() -> None:
    p = plan(
        DEMO,
        clip("rem", "This is a reminder from", C, 1200),
        clip("appt", "Your appointment with", C, 1000),
        clip("four", "four", C, 300),
        clip("pm", "p.m.", A, 350),
        clip("first", "first", F, 400),
        values=DEMO_VALUES,
    )
    assert spoken(p) == [
        "rem",
        "|50|",
        "[say: smile dental]",
        "|500|",
        "appt",
        "|50|",
        "[say: doctor benedict is at]",
        "|50|",
        "four",
        "|50|",
        "[say: forty seven]",
        "|50|",
        "pm",
        "|50|",
        "[say: on tuesday]",
        "|250|",
        "[say: december]",
        "|50|",
        "first",
    ]
    assert p.missing == (
        "smile dental",
        "doctor benedict is at",
        "forty seven",
        "on tuesday",
        "december",
    )
    assert p.transcript == (
        "This is a reminder from Smile Dental. Your appointment with Doctor Benedict is at "
        "four forty seven p.m. on Tuesday, December first."
    )


def test_say_runs_stop_at_breaks_and_missing_is_deduplicated() -> None:
    p = plan("Hello there, hello there. Bye now.", clip("bye", "bye"))
    assert spoken(p) == [
        "[say: hello there]",
        "|250|",
        "[say: hello there]",
        "|500|",
        "bye",
        "|50|",
        "[say: now]",
    ]
    assert p.missing == ("hello there", "now")
    says = [s for s in p.segments if isinstance(s, SaySegment)]
    assert [s.duration_ms for s in says] == [760, 760, 380]


def test_nothing_recorded_is_all_say() -> None:
    p = plan("Thank you for calling.")
    assert spoken(p) == ["[say: thank you for calling]"]
    assert p.missing == ("thank you for calling",)


def test_a_clip_with_a_comma_matches_only_the_same_comma() -> None:
    bye = clip("ty", "Thank you, goodbye.")
    assert clips_only(plan("Thank you, goodbye.", bye)) == ["ty"]
    assert plan("Thank you. Goodbye.", bye).missing == ("thank you", "goodbye")
    assert plan("Thank you goodbye.", bye).missing == ("thank you goodbye",)


@pytest.mark.parametrize(
    ("template", "pauses"),
    [
        ("one two", [50]),
        ("one, two", [250]),
        ("one. two", [500]),
        ("one; two", [250]),
        ("one? two", [500]),
        ("one, . two", [500]),  # the strongest break wins
        ("One. Two.", [500]),  # none after the last segment
    ],
)
def test_pause_placement(template: str, pauses: list[int]) -> None:
    p = plan(template, clip("1", "one"), clip("2", "two"))
    assert isinstance(p.segments[0], ClipSegment) and isinstance(p.segments[-1], ClipSegment)
    assert [s.ms for s in p.segments if isinstance(s, PauseSegment)] == pauses


def test_pause_rules_are_configurable_and_zero_means_none() -> None:
    rules = PauseRules(word_gap_ms=0, comma_ms=300, sentence_ms=700, loop_pause_ms=2000)
    p = plan("one two, one. two", clip("1", "one"), clip("2", "two"), pauses=rules)
    assert spoken(p) == ["1", "2", "|300|", "1", "|700|", "2"]
    assert p.loop_pause_ms == 2000


@pytest.mark.parametrize(
    "field", ["word_gap_ms", "comma_ms", "sentence_ms", "loop_pause_ms", "say_word_ms"]
)
def test_negative_pauses_are_refused(field: str) -> None:
    with pytest.raises(PlanOptionsError, match=field):
        PauseRules(**{field: -1})  # type: ignore[arg-type]


def test_duration_counts_clips_pauses_say_and_loops() -> None:
    one = plan("one two three.", clip("1", "one", ms=300), clip("2", "two", ms=500), loops=1)
    # 300 + 50 + 500 + 50 + 380 (Say "three")
    assert one.duration_ms == one.pass_duration_ms == 1280
    three = plan("one two three.", clip("1", "one", ms=300), clip("2", "two", ms=500), loops=3)
    assert three.duration_ms == 3 * 1280 + 2 * 1200
    assert len(three.looped_segments()) == 3 * len(three.segments) + 2


def test_unknown_clip_length_is_estimated_like_words() -> None:
    p = plan("see you soon", clip("x", "see you soon", ms=0))
    assert p.segments == (ClipSegment("x", "see you soon", A, 3 * 380, "https://cdn.test/x.mp3"),)


def test_clip_segments_copy_the_clip_entry() -> None:
    p = plan("Hello.", ClipEntry("h1", "Hello!", F, 420, "https://cdn.test/h1.mp3"))
    assert p.segments == (ClipSegment("h1", "Hello!", F, 420, "https://cdn.test/h1.mp3"),)


@pytest.mark.parametrize("loops", [0, 4, -1, True, 1.5])
def test_loops_out_of_bounds(loops: object) -> None:
    with pytest.raises(PlanOptionsError, match="loops"):
        plan("Hello.", loops=loops)


@pytest.mark.parametrize("loops", [1, 2, 3])
def test_loops_in_bounds(loops: int) -> None:
    assert plan("Hello.", loops=loops).loops == loops


def test_default_is_two_loops() -> None:
    assert plan("Hello.").loops == 2


def test_template_errors_come_through() -> None:
    with pytest.raises(MissingValueError, match="provider"):
        plan(DEMO, values={"tenant": "Smile Dental"})


DEMO_WORDS = (
    "this",
    "is",
    "a",
    "reminder",
    "from",
    "your",
    "appointment",
    "with",
    "at",
    "on",
    "four",
    "forty",
    "seven",
    "p.m.",
    "tuesday",
    "december",
    "first",
)


def demo_clips() -> list[ClipEntry]:
    clips = [clip(f"w{i:03d}{v.value[0]}", w, v) for i, w in enumerate(DEMO_WORDS) for v in (C, F)]
    clips += [clip("z-dup", "four", C), clip("a-dup", "four", C), clip("p1", "is at", C)]
    return clips


def test_same_inputs_same_plan() -> None:
    clips = demo_clips()
    first = plan(DEMO, *clips, values=DEMO_VALUES)
    again = plan(DEMO, *clips, values=DEMO_VALUES)
    reordered = plan(DEMO, *reversed(clips), values=DEMO_VALUES)
    assert first == again == reordered
    assert "a-dup" in clips_only(first)  # the tie between equal takes went to the lowest id


def test_a_new_index_is_never_planned_with_an_old_ones_clips() -> None:
    # The planner remembers work per index; a later index (perhaps at the same address) must not
    # see it.
    # CPython frees each index as plan() returns, so the next one often reuses its id().
    seen_ids = set()
    for round_ in range(20):
        index = ClipIndex.build([clip("gm", "good morning")])
        seen_ids.add(id(index))
        with_clip = plan_message("Good morning.", {}, index, today=TODAY)
        assert clips_only(with_clip) == ["gm"], round_
        del index
        index = ClipIndex.build([clip("g", "good")])
        seen_ids.add(id(index))
        without = plan_message("Good morning.", {}, index, today=TODAY)
        assert without.missing == ("morning",), round_
        del index
    assert len(seen_ids) < 40  # ids were reused, so the test exercised the stale case


def test_planning_the_same_index_twice_uses_the_same_answer() -> None:
    index = ClipIndex.build(demo_clips())
    first = plan_message(DEMO, DEMO_VALUES, index, today=TODAY)
    second = plan_message(DEMO, DEMO_VALUES, index, today=TODAY)
    fresh = plan_message(DEMO, DEMO_VALUES, ClipIndex.build(demo_clips()), today=TODAY)
    assert first == second == fresh


def test_remembered_chunks_never_hide_a_clip_spanning_a_break() -> None:
    index = ClipIndex.build(
        [clip("bye", "goodbye"), clip("ty", "thank you"), clip("tyb", "thank you, goodbye")]
    )
    assert clips_only(plan_message("Goodbye.", {}, index, today=TODAY)) == ["bye"]
    assert clips_only(plan_message("Thank you.", {}, index, today=TODAY)) == ["ty"]
    assert clips_only(plan_message("Thank you, goodbye.", {}, index, today=TODAY)) == ["tyb"]
    assert clips_only(plan_message("Thank you. Goodbye.", {}, index, today=TODAY)) == ["ty", "bye"]


def test_many_distinct_messages_on_one_index_stay_right() -> None:
    # More distinct sentences than the planner remembers per index.
    index = ClipIndex.build(
        [
            clip(w, w)
            for w in ("room", "one", "two", "three", "hundred", "thousand", "twenty", "thirty")
        ]
    )
    for n in range(0, 21_000, 5):
        p = plan_message("Room {n:number}.", {"n": n}, index, today=TODAY)
        said = [
            s.text if isinstance(s, ClipSegment) else f"[{s.text}]"
            for s in p.segments
            if not isinstance(s, PauseSegment)
        ]
        words = p.transcript.lower().rstrip(".").split()
        assert " ".join(said).replace("[", "").replace("]", "") == " ".join(words), n


def test_plan_expansion_tolerates_breaks_at_the_edges() -> None:
    expansion = Expansion("one, two.", (",", "one", ",", "two", "."))
    p = plan_expansion(expansion, ClipIndex.build([clip("1", "one"), clip("2", "two")]), loops=1)
    assert spoken(p) == ["1", "|250|", "2"]


def test_equal_coverings_go_to_the_longest_clip_first() -> None:
    p = plan(
        "one two three",
        clip("1", "one"),
        clip("23", "two three"),
        clip("12", "one two"),
        clip("3", "three"),
    )
    assert clips_only(p) == ["12", "3"]


def test_one_index_planned_with_different_pause_rules() -> None:
    index = ClipIndex.build([clip("1", "one"), clip("2", "two")])
    slow = PauseRules(word_gap_ms=90, sentence_ms=900)
    for rules, gaps in [
        (slow, [90, 900, 90]),
        (PauseRules(), [50, 500, 50]),
        (slow, [90, 900, 90]),
        (PauseRules(word_gap_ms=90, sentence_ms=900), [90, 900, 90]),
    ]:
        p = plan_message("one two. one two", {}, index, today=TODAY, pauses=rules)
        assert [s.ms for s in p.segments if isinstance(s, PauseSegment)] == gaps

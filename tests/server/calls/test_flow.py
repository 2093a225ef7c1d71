"""The call flow state machine, without TwiML: one table row per (state, event)."""

from __future__ import annotations

import itertools

import pytest

from server.calls.flow import (
    MAX_INVALID_TRIES,
    MAX_REPEATS,
    NO_INPUT_REPLAYS,
    TABLE,
    Action,
    Answered,
    CallState,
    Event,
    KeypressConfig,
    NoInput,
    Outcome,
    Pressed,
    State,
    Symbol,
    classify,
    classify_answer,
    outcome_for_status,
    step,
)

A = Action
O = Outcome  # noqa: E741 - a table reads better with one-letter column values
S = State
CFG = KeypressConfig()

# One event per input symbol, with the default keys.
EVENTS: dict[str, Event] = {
    "human": Answered("human"),
    "machine_start": Answered("machine_start"),
    "machine_end_beep": Answered("machine_end_beep"),
    "fax": Answered("fax"),
    "confirm": Pressed("1"),
    "cancel": Pressed("5"),
    "contact": Pressed("9"),
    "repeat": Pressed("*"),
    "invalid": Pressed("7"),
    "no_input": NoInput(),
}

_VM = (S.ENDED, A.PLAY_VOICEMAIL_AND_HANG_UP, O.VOICEMAIL_LEFT)
_MENU = (S.MENU, A.PLAY_MESSAGE_WITH_MENU, None)
_HANG_UP = (S.ENDED, A.HANG_UP, None)

# (state, event) -> (next state, action, outcome), from fresh counters.
EXPECTED = {
    (S.ANSWERING, "human"): _MENU,
    (S.ANSWERING, "machine_start"): _VM,
    (S.ANSWERING, "machine_end_beep"): _VM,
    (S.ANSWERING, "fax"): (S.ENDED, A.HANG_UP, O.FAX),
    # A key or timeout before any answer: state was lost, play the message.
    (S.ANSWERING, "confirm"): _MENU,
    (S.ANSWERING, "cancel"): _MENU,
    (S.ANSWERING, "contact"): _MENU,
    (S.ANSWERING, "repeat"): _MENU,
    (S.ANSWERING, "invalid"): _MENU,
    (S.ANSWERING, "no_input"): _MENU,
    # A repeated answer webhook gets the first answer again.
    (S.MENU, "human"): _MENU,
    (S.MENU, "machine_start"): _VM,
    (S.MENU, "machine_end_beep"): _VM,
    (S.MENU, "fax"): (S.ENDED, A.HANG_UP, O.FAX),
    (S.MENU, "confirm"): (S.ENDED, A.THANK_AND_HANG_UP_CONFIRMED, O.CONFIRMED),
    (S.MENU, "cancel"): (S.ENDED, A.CANCELLED_AND_HANG_UP, O.CANCELLED),
    (S.MENU, "contact"): (S.ENDED, A.CONTACT_REQUESTED_AND_HANG_UP, O.CONTACT_REQUESTED),
    (S.MENU, "repeat"): _MENU,
    (S.MENU, "invalid"): (S.MENU, A.SORRY_AND_MENU, None),
    (S.MENU, "no_input"): _MENU,
    **{(S.ENDED, name): _HANG_UP for name in EVENTS},
}


def test_expected_table_covers_every_state_and_event():
    assert set(EXPECTED) == set(itertools.product(State, EVENTS))


def test_transition_table_is_total():
    assert set(TABLE) == set(itertools.product(State, Symbol))


def test_events_cover_every_symbol():
    assert {classify(CFG, e) for e in EVENTS.values()} == set(Symbol)


@pytest.mark.parametrize(("state", "event"), sorted(EXPECTED))
def test_transition(state, event):
    result = step(CFG, CallState(state), EVENTS[event])
    assert (result.state.name, result.action, result.outcome) == EXPECTED[(state, event)]


@pytest.mark.parametrize(
    ("answered_by", "greeting_playing"),
    [("machine_start", True), ("machine_end_beep", False), ("human", False), ("fax", False)],
)
def test_only_machine_start_is_mid_greeting(answered_by, greeting_playing):
    assert step(CFG, CallState(), Answered(answered_by)).greeting_playing is greeting_playing


@pytest.mark.parametrize(
    ("answered_by", "symbol"),
    [
        ("human", Symbol.HUMAN),
        ("unknown", Symbol.HUMAN),
        (None, Symbol.HUMAN),
        ("", Symbol.HUMAN),
        ("machine_start", Symbol.MACHINE_GREETING),
        ("machine_end_beep", Symbol.MACHINE_DONE),
        ("machine_end_silence", Symbol.MACHINE_DONE),
        ("machine_end_other", Symbol.MACHINE_DONE),
        ("Machine_End_Beep ", Symbol.MACHINE_DONE),
        ("machine_something_new", Symbol.MACHINE_DONE),
        ("fax", Symbol.FAX),
        ("martian", Symbol.HUMAN),
    ],
)
def test_answered_by(answered_by, symbol):
    assert classify_answer(answered_by) is symbol


@pytest.mark.parametrize(
    ("config", "digits", "symbol"),
    [
        (CFG, "1", Symbol.CONFIRM),
        (CFG, " 1 ", Symbol.CONFIRM),
        (CFG, "5", Symbol.CANCEL),
        (CFG, "9", Symbol.CONTACT),
        (CFG, "*", Symbol.REPEAT),
        (CFG, "#", Symbol.INVALID),
        (CFG, "0", Symbol.INVALID),
        (CFG, "11", Symbol.INVALID),
        (CFG, "15", Symbol.INVALID),
        (CFG, "", Symbol.NO_INPUT),
        (KeypressConfig(cancel=None), "5", Symbol.INVALID),
        (KeypressConfig(repeat=None), "*", Symbol.INVALID),
        (KeypressConfig(contact=None), "9", Symbol.INVALID),
        (KeypressConfig(confirm="#", cancel="0", contact=None, repeat="9"), "#", Symbol.CONFIRM),
        (KeypressConfig(confirm="#", cancel="0", contact=None, repeat="9"), "9", Symbol.REPEAT),
    ],
)
def test_digits(config, digits, symbol):
    assert config.classify(digits) is symbol


@pytest.mark.parametrize(
    "kwargs",
    [
        {"confirm": "x"},
        {"confirm": "12"},
        {"confirm": "A"},  # DTMF, but no handset has it
        {"cancel": "1"},  # same key as confirm
        {"contact": "*"},  # same key as repeat
    ],
)
def test_keypress_config_rejects(kwargs):
    with pytest.raises(ValueError):
        KeypressConfig(**kwargs)


def test_cancel_key_when_disabled_is_sorry():
    result = step(KeypressConfig(cancel=None), CallState(S.MENU), Pressed("5"))
    assert (result.action, result.outcome) == (A.SORRY_AND_MENU, None)


def _run(events, config=CFG, state=None):
    state = state or CallState()
    steps = []
    for event in events:
        result = step(config, state, event)
        steps.append(result)
        state = result.state
    return steps


def test_three_invalid_tries_then_goodbye():
    steps = _run([Answered("human")] + [Pressed("7")] * MAX_INVALID_TRIES)
    assert [s.action for s in steps] == [
        A.PLAY_MESSAGE_WITH_MENU,
        A.SORRY_AND_MENU,
        A.SORRY_AND_MENU,
        A.GOODBYE,
    ]
    assert steps[-1].outcome is O.HEARD_NO_KEYPRESS
    assert steps[-1].state == CallState(S.ENDED, invalid_tries=MAX_INVALID_TRIES)


def test_valid_key_after_invalid_ones_still_counts():
    steps = _run([Answered(None), Pressed("7"), Pressed("7"), Pressed("1")])
    assert steps[-1].outcome is O.CONFIRMED


def test_no_input_replays_once_then_goodbye():
    steps = _run([Answered("unknown")] + [NoInput()] * (NO_INPUT_REPLAYS + 1))
    assert [s.action for s in steps] == [
        A.PLAY_MESSAGE_WITH_MENU,
        A.PLAY_MESSAGE_WITH_MENU,
        A.GOODBYE,
    ]
    assert [s.outcome for s in steps] == [None, None, O.HEARD_NO_KEYPRESS]


def test_repeat_is_capped():
    steps = _run([Answered("human")] + [Pressed("*")] * (MAX_REPEATS + 1))
    assert [s.action for s in steps[1:]] == [A.PLAY_MESSAGE_WITH_MENU] * MAX_REPEATS + [A.GOODBYE]


def test_counters_are_independent():
    steps = _run([Pressed("7"), NoInput(), Pressed("*")], state=CallState(S.MENU))
    assert steps[-1].state == CallState(S.MENU, invalid_tries=1, noinput_replays=1, repeats=1)


def test_every_webhook_after_the_end_hangs_up():
    ended = _run([Answered("human"), Pressed("1")])[-1].state
    for event in EVENTS.values():
        result = step(CFG, ended, event)
        assert (result.action, result.outcome, result.state) == (A.HANG_UP, None, ended)


@pytest.mark.parametrize(
    "state",
    [CallState(), CallState(S.MENU, 2, 1, 3), CallState(S.ENDED, 3, 0, 0)],
)
def test_state_round_trips_through_params(state):
    assert CallState.from_params(state.as_params()) == state


@pytest.mark.parametrize(
    ("params", "state"),
    [
        ({}, CallState(S.MENU)),
        ({"state": "bogus", "tries": "x", "replays": "-4"}, CallState(S.MENU)),
        ({"tries": "2"}, CallState(S.MENU, invalid_tries=2)),
    ],
)
def test_garbled_params_fall_back(params, state):
    assert CallState.from_params(params) == state


@pytest.mark.parametrize(
    ("status", "answered_by", "recorded", "outcome"),
    [
        ("completed", "human", None, O.HEARD_NO_KEYPRESS),
        ("completed", None, None, O.HEARD_NO_KEYPRESS),
        ("completed", "unknown", None, O.HEARD_NO_KEYPRESS),
        ("completed", "machine_start", None, O.VOICEMAIL_LEFT),
        ("completed", "machine_end_beep", None, O.VOICEMAIL_LEFT),
        ("completed", "machine_end_silence", None, O.VOICEMAIL_LEFT),
        ("completed", "machine_end_other", None, O.VOICEMAIL_LEFT),
        ("completed", "fax", None, O.FAX),
        # What the flow recorded stands: the callback may lack AnsweredBy.
        ("completed", None, O.VOICEMAIL_LEFT, O.VOICEMAIL_LEFT),
        ("completed", "human", O.CONFIRMED, O.CONFIRMED),
        ("completed", "human", O.CANCELLED, O.CANCELLED),
        ("completed", "human", O.CONTACT_REQUESTED, O.CONTACT_REQUESTED),
        ("completed", "human", O.HEARD_NO_KEYPRESS, O.HEARD_NO_KEYPRESS),
        ("no-answer", None, None, O.NO_ANSWER),
        ("busy", None, None, O.BUSY),
        ("failed", None, None, O.FAILED),
        ("canceled", None, None, O.CALL_CANCELED),
        ("Busy", None, None, O.BUSY),
        # A callee's decision is never overwritten.
        ("failed", None, O.CONFIRMED, O.CONFIRMED),
        # Not over yet.
        ("queued", None, None, None),
        ("ringing", None, None, None),
        ("in-progress", "human", None, None),
        ("something-new", None, None, None),
    ],
)
def test_outcome_for_status(status, answered_by, recorded, outcome):
    assert outcome_for_status(status, answered_by, recorded) is outcome

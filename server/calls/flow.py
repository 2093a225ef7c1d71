"""The reminder call flow as a transition table: (state, input symbol) -> rule.

Pure: no TwiML, no database, no clock. A webhook turns Twilio's request into an event
(``Answered``, ``Pressed`` or ``NoInput``), ``step()`` classifies it into one input symbol,
looks the rule up in ``TABLE`` and returns a ``Step``: the next state, what the view should answer
and the reminder outcome to record, if any. ``outcome_for_status()`` maps Twilio's final CallStatus.

The state travels with the call (``CallState.as_params()`` in the Gather action URL), so a webhook
Twilio repeats gets the same answer: the URL is signed, and the same URL plus the same digits is the
same step.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any

__all__ = [
    "ANSWERED_BY",
    "DTMF_KEYS",
    "MAX_INVALID_TRIES",
    "MAX_REPEATS",
    "NO_INPUT_REPLAYS",
    "TABLE",
    "Action",
    "Answered",
    "CallState",
    "Counter",
    "Event",
    "KeypressConfig",
    "NoInput",
    "Outcome",
    "Pressed",
    "Rule",
    "State",
    "Step",
    "Symbol",
    "classify",
    "classify_answer",
    "outcome_for_status",
    "step",
]

# Keys a phone sends as DTMF. A-D exist in DTMF but no handset has them, so no menu may use them.
DTMF_KEYS = frozenset("0123456789*#")

# The third invalid key ends the call: two "sorry"s are patient, a third is a pocket dial.
MAX_INVALID_TRIES = 3
# After the Gather times out the person hears the message once more, then goodbye.
NO_INPUT_REPLAYS = 1
# "Repeat" is a valid key, but each replay is billed airtime: cap it so a held-down key or a child
# playing with the phone cannot keep the line open for an hour.
MAX_REPEATS = 5


class Outcome(StrEnum):
    """What happened to the reminder: from the flow (keys, AMD) or from the final CallStatus."""

    CONFIRMED = "confirmed"
    CANCELLED = "cancelled"  # the callee cancelled the appointment
    CONTACT_REQUESTED = "contact_requested"
    HEARD_NO_KEYPRESS = "heard_no_keypress"
    VOICEMAIL_LEFT = "voicemail_left"
    FAX = "fax"
    NO_ANSWER = "no_answer"
    BUSY = "busy"
    FAILED = "failed"
    # Twilio's "canceled" means the call was withdrawn before it connected; it is spelt apart from
    # CANCELLED so nobody reads "the patient cancelled" into it.
    CALL_CANCELED = "call_canceled"


# Outcomes that record the callee's decision: nothing later (a status callback) overwrites them.
DECISIVE = frozenset({Outcome.CONFIRMED, Outcome.CANCELLED, Outcome.CONTACT_REQUESTED})


class State(StrEnum):
    ANSWERING = "answering"  # the call URL: nothing played yet
    MENU = "menu"  # a Gather is (or was just) playing: waiting for a key or a timeout
    ENDED = "ended"  # the answer hung up; late or repeated webhooks only get a hang-up


class Action(StrEnum):
    """What the view answers; each maps to one TwiML view."""

    PLAY_MESSAGE_WITH_MENU = "play_message_with_menu"
    PLAY_VOICEMAIL_AND_HANG_UP = "play_voicemail_and_hang_up"
    HANG_UP = "hang_up"
    THANK_AND_HANG_UP_CONFIRMED = "thank_and_hang_up_confirmed"
    CANCELLED_AND_HANG_UP = "cancelled_and_hang_up"
    CONTACT_REQUESTED_AND_HANG_UP = "contact_requested_and_hang_up"
    SORRY_AND_MENU = "sorry_and_menu"
    GOODBYE = "goodbye"


class Symbol(StrEnum):
    """The table's input alphabet: every event is classified into exactly one of these."""

    HUMAN = "human"
    MACHINE_GREETING = "machine_greeting"  # AMD "Enable": the greeting is still playing
    MACHINE_DONE = "machine_done"  # AMD "DetectMessageEnd": the greeting (and beep) are over
    FAX = "fax"
    CONFIRM = "confirm"
    CANCEL = "cancel"
    CONTACT = "contact"
    REPEAT = "repeat"
    INVALID = "invalid"
    NO_INPUT = "no_input"


ANSWER_SYMBOLS = (Symbol.HUMAN, Symbol.MACHINE_GREETING, Symbol.MACHINE_DONE, Symbol.FAX)
KEY_SYMBOLS = tuple(s for s in Symbol if s not in ANSWER_SYMBOLS)

# Twilio's AnsweredBy values. "unknown" (AMD timed out or heard initial silence) is treated as a
# person: a person who hears the voicemail variant cannot confirm, while a machine that hears the
# menu only records a few needless words.
ANSWERED_BY: Mapping[str, Symbol] = {
    "human": Symbol.HUMAN,
    "unknown": Symbol.HUMAN,
    "machine_start": Symbol.MACHINE_GREETING,
    "machine_end_beep": Symbol.MACHINE_DONE,
    "machine_end_silence": Symbol.MACHINE_DONE,
    "machine_end_other": Symbol.MACHINE_DONE,
    "fax": Symbol.FAX,
}


class Counter(StrEnum):
    """A CallState field that a rule spends; the value is the field name."""

    INVALID_TRIES = "invalid_tries"
    NOINPUT_REPLAYS = "noinput_replays"
    REPEATS = "repeats"


@dataclass(frozen=True, slots=True)
class KeypressConfig:
    """A tenant's menu keys; None disables a key (it then counts as an invalid press)."""

    confirm: str = "1"
    cancel: str | None = "5"
    contact: str | None = "9"
    repeat: str | None = "*"

    def __post_init__(self) -> None:
        keys = [k for k in (self.confirm, self.cancel, self.contact, self.repeat) if k is not None]
        for key in keys:
            if key not in DTMF_KEYS:
                raise ValueError(f"menu key {key!r} is not one of 0-9, * or #")
        if len(set(keys)) != len(keys):
            raise ValueError(f"menu keys must differ, got {keys}")

    def classify(self, digits: str | None) -> Symbol:
        """The symbol for Twilio's ``Digits``; several digits or an unknown key are invalid."""
        pressed = (digits or "").strip()
        if not pressed:
            # Only reached with actionOnEmptyResult, which the views do not set; a timeout it is.
            return Symbol.NO_INPUT
        keys = {
            self.confirm: Symbol.CONFIRM,
            self.cancel: Symbol.CANCEL,
            self.contact: Symbol.CONTACT,
            self.repeat: Symbol.REPEAT,
        }
        return keys.get(pressed, Symbol.INVALID)


@dataclass(frozen=True, slots=True)
class CallState:
    name: State = State.ANSWERING
    invalid_tries: int = 0
    noinput_replays: int = 0
    repeats: int = 0

    def as_params(self) -> dict[str, str]:
        """Query parameters that carry this state in the next Gather action URL."""
        return {
            "state": self.name.value,
            "tries": str(self.invalid_tries),
            "replays": str(self.noinput_replays),
            "repeats": str(self.repeats),
        }

    @classmethod
    def from_params(cls, params: Mapping[str, str], default: State = State.MENU) -> CallState:
        """Read ``as_params()`` back; anything missing or garbled falls back rather than failing,
        because a webhook must always answer."""
        try:
            name = State(params.get("state", default.value))
        except ValueError:
            name = default
        return cls(
            name=name,
            invalid_tries=_count(params.get("tries")),
            noinput_replays=_count(params.get("replays")),
            repeats=_count(params.get("repeats")),
        )


def _count(text: str | None) -> int:
    try:
        return max(0, int(text or 0))
    except ValueError:
        return 0


@dataclass(frozen=True, slots=True)
class Answered:
    """The call URL: Twilio's ``AnsweredBy`` (None when the tenant has AMD off)."""

    answered_by: str | None = None


@dataclass(frozen=True, slots=True)
class Pressed:
    """The Gather action: Twilio's ``Digits``."""

    digits: str


@dataclass(frozen=True, slots=True)
class NoInput:
    """The Redirect after a Gather: it timed out with no key."""


Event = Answered | Pressed | NoInput


@dataclass(frozen=True, slots=True)
class Rule:
    """One cell of the table.

    A rule with a ``counter`` may fire ``budget`` times per call; once that counter has reached the
    budget, ``exhausted`` applies instead (the counter still goes up, so the state says why).
    """

    to: State
    action: Action
    outcome: Outcome | None = None
    counter: Counter | None = None
    budget: int = 0
    exhausted: Rule | None = None
    # Only an "Enable" AMD answer reaches a machine mid-greeting, where a skip-to-beep tone helps.
    greeting_playing: bool = False


@dataclass(frozen=True, slots=True)
class Step:
    state: CallState
    action: Action
    outcome: Outcome | None = None
    greeting_playing: bool = False


_GOODBYE = Rule(State.ENDED, Action.GOODBYE, Outcome.HEARD_NO_KEYPRESS)
_MENU = Rule(State.MENU, Action.PLAY_MESSAGE_WITH_MENU)
_HANG_UP = Rule(State.ENDED, Action.HANG_UP)

# The voicemail outcome is recorded as soon as the message starts: a status callback may never come,
# and for a machine "completed" looks the same as for a person.
_VOICEMAIL = Rule(State.ENDED, Action.PLAY_VOICEMAIL_AND_HANG_UP, Outcome.VOICEMAIL_LEFT)
_ANSWER: Mapping[Symbol, Rule] = {
    Symbol.HUMAN: _MENU,
    Symbol.MACHINE_GREETING: replace(_VOICEMAIL, greeting_playing=True),
    Symbol.MACHINE_DONE: _VOICEMAIL,
    Symbol.FAX: Rule(State.ENDED, Action.HANG_UP, Outcome.FAX),
}

_KEYS: Mapping[Symbol, Rule] = {
    Symbol.CONFIRM: Rule(State.ENDED, Action.THANK_AND_HANG_UP_CONFIRMED, Outcome.CONFIRMED),
    Symbol.CANCEL: Rule(State.ENDED, Action.CANCELLED_AND_HANG_UP, Outcome.CANCELLED),
    Symbol.CONTACT: Rule(
        State.ENDED, Action.CONTACT_REQUESTED_AND_HANG_UP, Outcome.CONTACT_REQUESTED
    ),
    Symbol.REPEAT: Rule(
        State.MENU,
        Action.PLAY_MESSAGE_WITH_MENU,
        counter=Counter.REPEATS,
        budget=MAX_REPEATS,
        exhausted=_GOODBYE,
    ),
    Symbol.INVALID: Rule(
        State.MENU,
        Action.SORRY_AND_MENU,
        counter=Counter.INVALID_TRIES,
        budget=MAX_INVALID_TRIES - 1,
        exhausted=_GOODBYE,
    ),
    Symbol.NO_INPUT: Rule(
        State.MENU,
        Action.PLAY_MESSAGE_WITH_MENU,
        counter=Counter.NOINPUT_REPLAYS,
        budget=NO_INPUT_REPLAYS,
        exhausted=_GOODBYE,
    ),
}

# A key or timeout while still ANSWERING means the state was lost on the way (a bare action URL):
# play the message with its menu rather than hang up on a person. An answer event in MENU is a
# repeated call-URL request: it gets the same answer as the first. ENDED only ever hangs up.
TABLE: Mapping[tuple[State, Symbol], Rule] = {
    **{(State.ANSWERING, s): _ANSWER[s] for s in ANSWER_SYMBOLS},
    **{(State.ANSWERING, s): _MENU for s in KEY_SYMBOLS},
    **{(State.MENU, s): _ANSWER[s] for s in ANSWER_SYMBOLS},
    **{(State.MENU, s): _KEYS[s] for s in KEY_SYMBOLS},
    **{(State.ENDED, s): _HANG_UP for s in Symbol},
}


def classify_answer(answered_by: str | None) -> Symbol:
    """The symbol for Twilio's ``AnsweredBy``; absent (AMD off) is a person."""
    value = (answered_by or "").strip().lower()
    if not value:
        return Symbol.HUMAN
    if value in ANSWERED_BY:
        return ANSWERED_BY[value]
    # A value Twilio adds later: never tell anything that calls itself a machine to "press 1".
    return Symbol.MACHINE_DONE if value.startswith("machine") else Symbol.HUMAN


def classify(config: KeypressConfig, event: Event) -> Symbol:
    if isinstance(event, Answered):
        return classify_answer(event.answered_by)
    if isinstance(event, Pressed):
        return config.classify(event.digits)
    return Symbol.NO_INPUT


def step(config: KeypressConfig, state: CallState, event: Event) -> Step:
    """The next step of the call: look the rule up, spend its counter, fall back when exhausted."""
    rule = TABLE[(state.name, classify(config, event))]
    counters = state
    if rule.counter is not None:
        field = rule.counter.value
        used: int = getattr(state, field)
        spent: dict[str, Any] = {field: used + 1}
        counters = replace(state, **spent)
        if used >= rule.budget:
            assert rule.exhausted is not None, "a rule with a counter needs an exhausted rule"
            rule = rule.exhausted
    return Step(
        state=replace(counters, name=rule.to),
        action=rule.action,
        outcome=rule.outcome,
        greeting_playing=rule.greeting_playing,
    )


# Final CallStatus values other than "completed"; queued, ringing and in-progress are not final.
_UNCONNECTED: Mapping[str, Outcome] = {
    "no-answer": Outcome.NO_ANSWER,
    "busy": Outcome.BUSY,
    "failed": Outcome.FAILED,
    "canceled": Outcome.CALL_CANCELED,
}

_COMPLETED_BY: Mapping[Symbol, Outcome] = {
    Symbol.HUMAN: Outcome.HEARD_NO_KEYPRESS,
    Symbol.MACHINE_GREETING: Outcome.VOICEMAIL_LEFT,
    Symbol.MACHINE_DONE: Outcome.VOICEMAIL_LEFT,
    Symbol.FAX: Outcome.FAX,
}


def outcome_for_status(
    call_status: str, answered_by: str | None = None, recorded: Outcome | None = None
) -> Outcome | None:
    """The outcome a status callback settles, or None while the call is not over.

    ``recorded`` is what the flow already stored. A callee's decision always stands; on
    "completed" a flow outcome (voicemail_left, fax, heard_no_keypress) stands too, because the
    status callback may lack AnsweredBy. Without either, AnsweredBy decides, and a completed call
    nobody pressed a key in was heard without a keypress.
    """
    if recorded in DECISIVE:
        return recorded
    status = call_status.strip().lower()
    if status == "completed":
        return recorded or _COMPLETED_BY[classify_answer(answered_by)]
    return _UNCONNECTED.get(status)

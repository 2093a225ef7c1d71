"""Pure language rules, message templates, the planner and recording scripts.

No I/O, no clock, no database: values and the reference date come in, a Plan comes out.
"""

from prompts.clock import date_words, time_words, year_words
from prompts.errors import (
    MissingValueError,
    PlanOptionsError,
    PromptError,
    SlotTypeError,
    SlotValueError,
    TemplateError,
    TemplateSyntaxError,
    UnknownSlotKindError,
    UnreadableDigitsError,
    ValueOutOfRangeError,
)
from prompts.models import (
    Break,
    ClipEntry,
    ClipIndex,
    ClipSegment,
    PauseSegment,
    Plan,
    SaySegment,
    Segment,
    Variant,
)
from prompts.numbers import cardinal_words, ordinal_words
from prompts.phone import digit_groups, digit_words
from prompts.planner import DEFAULT_PAUSES, PauseRules, plan_expansion, plan_message
from prompts.script import RecordingScript, ScriptLine, recording_script, vocabulary
from prompts.template import (
    Expansion,
    Slot,
    SlotKind,
    Template,
    expand_template,
    parse_template,
    spoken_text,
    validate_template,
)
from prompts.text import normalize, tokenize, tokens_key

__all__ = [
    "DEFAULT_PAUSES",
    "Break",
    "ClipEntry",
    "ClipIndex",
    "ClipSegment",
    "Expansion",
    "MissingValueError",
    "PauseRules",
    "PauseSegment",
    "Plan",
    "PlanOptionsError",
    "PromptError",
    "RecordingScript",
    "SaySegment",
    "ScriptLine",
    "Segment",
    "Slot",
    "SlotKind",
    "SlotTypeError",
    "SlotValueError",
    "Template",
    "TemplateError",
    "TemplateSyntaxError",
    "UnknownSlotKindError",
    "UnreadableDigitsError",
    "ValueOutOfRangeError",
    "Variant",
    "cardinal_words",
    "date_words",
    "digit_groups",
    "digit_words",
    "expand_template",
    "normalize",
    "ordinal_words",
    "parse_template",
    "plan_expansion",
    "plan_message",
    "recording_script",
    "spoken_text",
    "time_words",
    "tokenize",
    "tokens_key",
    "validate_template",
    "vocabulary",
    "year_words",
]

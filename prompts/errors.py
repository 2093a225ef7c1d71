"""Errors raised by the pure prompts package.

Our exception hierarchy::

    PromptError                   base: catch this at the edges (HTTP 4xx, CLI exit code)
    ├── ValueOutOfRangeError      a number the language rules cannot say (also a ValueError)
    ├── UnreadableDigitsError     a digit string with letters in it, or no digits at all
    ├── PlanOptionsError          loops outside 1..3, a negative pause
    └── TemplateError             anything wrong with a template or a value for one of its slots
        ├── TemplateSyntaxError   stray or unclosed braces, a slot with no name
        ├── UnknownSlotKindError  {when:tme}
        ├── MissingValueError     a slot with no value (absent key or None)
        ├── SlotTypeError         a value of the wrong type (a str for a time, a date for a time)
        └── SlotValueError        a value of the right type that cannot be said (-1 for a number)

Every error carries ``status_hint``: the HTTP status an edge may use when it translates it.
"""

from __future__ import annotations


class PromptError(Exception):
    """Base of every error the prompts package raises on purpose."""

    status_hint = 400


class ValueOutOfRangeError(PromptError, ValueError):
    """A number outside what the rules can say (cardinals 0..999,999, ordinals 1..999,999)."""

    def __init__(self, message: str, value: object) -> None:
        super().__init__(message)
        self.value = value


class UnreadableDigitsError(PromptError, ValueError):
    """A phone number or digit string that has no digits, or characters that are not digits."""

    def __init__(self, message: str, value: object) -> None:
        super().__init__(message)
        self.value = value


class PlanOptionsError(PromptError, ValueError):
    """A planner option out of bounds (loops, pause lengths)."""


class TemplateError(PromptError):
    """A problem with a template or one of its slot values.

    ``slot`` is the slot's name when one is involved and ``position`` the 0-based character offset
    in the template; both are also in the message, because a tenant reads the message, not fields.
    """

    status_hint = 422

    def __init__(
        self,
        reason: str,
        *,
        slot: str | None = None,
        source: str | None = None,
        position: int | None = None,
    ) -> None:
        self.reason = reason
        self.slot = slot
        self.position = position
        where = []
        if source is not None:
            where.append(f"slot {source}")
        elif slot is not None:
            where.append(f"slot '{slot}'")
        if position is not None:
            where.append(f"at position {position}")
        super().__init__(f"{' '.join(where)}: {reason}" if where else reason)


class TemplateSyntaxError(TemplateError):
    """Braces that do not pair up, or a slot whose name is empty or malformed."""


class UnknownSlotKindError(TemplateError):
    """A slot kind the planner does not know, such as ``{when:tme}``."""


class MissingValueError(TemplateError):
    """A slot with no value: the key is absent or maps to None."""


class SlotTypeError(TemplateError):
    """A value whose type does not fit the slot kind (a str for a time, a date-only for a time)."""


class SlotValueError(TemplateError):
    """A value of the right type that the rules cannot say (a negative number, an empty name)."""

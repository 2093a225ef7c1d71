"""Phone numbers and digit strings read digit by digit, group by group.

"(415) 555-0134" and "+1 415 555 0134" both read "four one five, five five five, zero one three
four": one word per digit, a comma break (so a pause, and a phrase-final take of the last digit)
between groups, the way people read numbers out.

0 is "zero", never "oh". "Oh" is shorter, but "zero" cannot be misheard as a letter in codes such
as "0B", it is the word the cardinal clips already need, and "oh" stays reserved for clock minutes
("nine oh five") so one recording of "oh" always has the same job.

Grouping, in order:
- a number starting with "+" is parsed by ``phonenumbers``. North American numbers (country code 1)
  drop the "1" and read as 3-3-4, the way callers know their own number; others read the country
  code and the groups of the international format ("+44 20 7946 0958" -> 44, 20, 7946, 0958);
- otherwise the caller's own separators (spaces, "-", ".", "/", parentheses) make the groups;
- a single run of 10 digits reads 3-3-4, 11 digits starting with 1 drops the 1 then reads 3-3-4,
  7 digits reads 3-4; any other run is one group.
"""

from __future__ import annotations

import re
from functools import lru_cache

from prompts.errors import UnreadableDigitsError
from prompts.numbers import ONES

_ALLOWED = re.compile(r"^\+?[0-9\s().\-/]+$")
_RUN = re.compile(r"[0-9]+")


def _nanp(digits: str) -> tuple[str, ...]:
    return (digits[:3], digits[3:6], digits[6:])


def _international(text: str) -> tuple[str, ...] | None:
    # Imported here: phonenumbers' metadata costs ~30 ms, paid only by templates that read a number.
    import phonenumbers

    try:
        number = phonenumbers.parse(text, None)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_possible_number(number):
        return None
    if number.country_code == 1:
        national = str(number.national_number)
        return _nanp(national) if len(national) == 10 else (national,)
    formatted = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.INTERNATIONAL)
    return tuple(_RUN.findall(formatted))


@lru_cache(maxsize=1024)
def digit_groups(text: str) -> tuple[str, ...]:
    """The digit groups to read: "+1 415 555 0134" -> ("415", "555", "0134").

    Raises UnreadableDigitsError for letters or anything else that is not a digit or separator.
    """
    stripped = text.strip()
    if not _ALLOWED.match(stripped) or not _RUN.search(stripped):
        raise UnreadableDigitsError(
            f"cannot read {text!r} digit by digit: use digits with spaces, '-', '.', '/', "
            "parentheses and an optional leading '+'",
            text,
        )
    if stripped.startswith("+"):
        groups = _international(stripped)
        if groups:
            return groups
    groups = tuple(_RUN.findall(stripped))
    if len(groups) == 1:
        run = groups[0]
        if len(run) == 11 and run[0] == "1":
            return _nanp(run[1:])
        if len(run) == 10:
            return _nanp(run)
        if len(run) == 7:
            return (run[:3], run[3:])
    return groups


@lru_cache(maxsize=1024)
def digit_words(text: str) -> tuple[str, ...]:
    """Tokens for a phone number or digit string, with "," between groups."""
    out: list[str] = []
    for group in digit_groups(text):
        if out:
            out.append(",")
        out.extend(ONES[int(d)] for d in group)
    return tuple(out)


#: Every word ``digit_words`` can produce.
DIGITS_VOCABULARY: tuple[str, ...] = ONES

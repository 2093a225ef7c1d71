"""Times of day and calendar dates as US-English word tokens.

Times are 12-hour: "four forty seven p.m.", minutes 1-9 with "oh" ("nine oh five a.m."), the hour
alone on the hour ("ten a.m."), and "twelve noon" / "twelve midnight" where "twelve a.m." and
"twelve p.m." would leave a listener guessing. Seconds are ignored (truncated, never rounded up: a
reminder must not move an appointment a minute later).

Dates use the weekday and an ordinal day: "Tuesday, December first". The year is said only when it
differs from the reference date's year ("..., two thousand twenty seven"). The reference date is
always passed in: this package never reads a clock. When the date is the reference date or the day
after, "today" / "tomorrow" *replaces* the weekday and date: "tomorrow, Tuesday, December first"
is longer and says nothing more, and a voicemail is usually heard the day it is left. Other dates,
past ones included, are said in full; there is no "yesterday" because reminders look forward.

The comma inside a date is a real break token: the planner pauses there and picks a phrase-final
take of the weekday, as a speaker would.
"""

from __future__ import annotations

from datetime import date, datetime, time
from functools import lru_cache

from prompts.numbers import (
    ONES,
    ORDINAL_VOCABULARY,
    TEENS,
    TENS,
    cardinal_words,
    ordinal_words,
)

WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
MONTHS = (
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
)
#: Tokens shown capitalised in transcripts ("Tuesday, December first").
PROPER_NOUNS = frozenset(WEEKDAYS + MONTHS)

#: Every word ``time_words`` can produce.
TIME_VOCABULARY: tuple[str, ...] = (
    ONES[1:] + TEENS + TENS[:4] + ("oh", "a.m.", "p.m.", "noon", "midnight")
)
# A day of the month ends in one of these: first..twentieth, thirtieth.
_DAY_ORDINALS = ORDINAL_VOCABULARY[:21]
#: Every word ``date_words`` can produce for years 2000-2099 (a reminder's realistic range).
DATE_VOCABULARY: tuple[str, ...] = (
    WEEKDAYS
    + MONTHS
    + _DAY_ORDINALS
    + ("today", "tomorrow")
    + ONES[1:]
    + TEENS
    + TENS
    + ("thousand",)
)


@lru_cache(maxsize=2048)
def _clock(hour: int, minute: int) -> tuple[str, ...]:
    if minute == 0 and hour in (0, 12):
        return ("twelve", "midnight" if hour == 0 else "noon")
    words = cardinal_words(hour % 12 or 12)
    if 0 < minute < 10:
        words += ("oh",) + cardinal_words(minute)
    elif minute:
        words += cardinal_words(minute)
    return words + ("a.m." if hour < 12 else "p.m.",)


def time_words(value: time | datetime) -> tuple[str, ...]:
    """Wall-clock time as words: 16:47 -> ("four", "forty", "seven", "p.m.").

    A timezone-aware datetime is read as given: converting to the tenant's zone is the caller's job.
    """
    return _clock(value.hour, value.minute)


def year_words(year: int) -> tuple[str, ...]:
    """2027 -> "two thousand twenty seven"; 1100-1999 in pairs: 1999 -> "nineteen ninety nine"."""
    if 1100 <= year < 2000:
        high, low = divmod(year, 100)
        if low == 0:
            return cardinal_words(high) + ("hundred",)
        return cardinal_words(high) + (("oh",) if low < 10 else ()) + cardinal_words(low)
    return cardinal_words(year)


@lru_cache(maxsize=4096)
def _calendar(day: date, today: date) -> tuple[str, ...]:
    ahead = (day - today).days
    if ahead == 0:
        return ("today",)
    if ahead == 1:
        return ("tomorrow",)
    words = (WEEKDAYS[day.weekday()], ",", MONTHS[day.month - 1]) + ordinal_words(day.day)
    if day.year != today.year:
        words += (",",) + year_words(day.year)
    return words


def _as_date(value: date) -> date:
    # datetime is a date subclass whose comparisons with a plain date raise; keep the wall date.
    return value.date() if isinstance(value, datetime) else value


def date_words(value: date, *, today: date) -> tuple[str, ...]:
    """A date as tokens: ("tuesday", ",", "december", "first"), or ("tomorrow",).

    ``today`` is the reference date, passed in by the caller (usually in the tenant's zone).
    """
    return _calendar(_as_date(value), _as_date(today))

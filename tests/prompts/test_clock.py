"""Times and dates as a listener hears them."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta, timezone

import pytest

from prompts.clock import DATE_VOCABULARY, TIME_VOCABULARY, date_words, time_words, year_words
from prompts.template import spoken_text

TODAY = date(2026, 11, 20)  # a Friday


@pytest.mark.parametrize(
    ("hour", "minute", "spoken"),
    [
        (0, 0, "twelve midnight"),
        (0, 5, "twelve oh five a.m."),
        (0, 30, "twelve thirty a.m."),
        (1, 0, "one a.m."),
        (9, 5, "nine oh five a.m."),
        (10, 0, "ten a.m."),
        (11, 59, "eleven fifty nine a.m."),
        (12, 0, "twelve noon"),
        (12, 5, "twelve oh five p.m."),
        (12, 30, "twelve thirty p.m."),
        (13, 7, "one oh seven p.m."),
        (16, 47, "four forty seven p.m."),
        (17, 10, "five ten p.m."),
        (23, 59, "eleven fifty nine p.m."),
    ],
)
def test_twelve_hour_times(hour: int, minute: int, spoken: str) -> None:
    assert time_words(time(hour, minute)) == tuple(spoken.split())


def test_a_datetime_is_read_as_its_wall_clock_time() -> None:
    aware = datetime(2026, 12, 1, 16, 47, tzinfo=timezone(timedelta(hours=-8)))
    assert time_words(aware) == ("four", "forty", "seven", "p.m.")


def test_seconds_never_round_the_minute_up() -> None:
    assert time_words(time(16, 47, 59)) == ("four", "forty", "seven", "p.m.")


@pytest.mark.parametrize(
    ("day", "today", "spoken"),
    [
        (date(2026, 11, 20), TODAY, "today"),
        (date(2026, 11, 21), TODAY, "tomorrow"),
        (date(2026, 11, 22), TODAY, "Sunday, November twenty second"),
        (date(2026, 12, 1), TODAY, "Tuesday, December first"),
        (date(2026, 12, 31), TODAY, "Thursday, December thirty first"),
        (date(2026, 10, 3), TODAY, "Saturday, October third"),  # past dates are said in full
        (date(2027, 1, 1), date(2026, 12, 31), "tomorrow"),  # across the year boundary
        (
            date(2027, 1, 2),
            date(2026, 12, 31),
            "Saturday, January second, two thousand twenty seven",
        ),
        (date(2027, 3, 12), TODAY, "Friday, March twelfth, two thousand twenty seven"),
        (date(2025, 12, 25), TODAY, "Thursday, December twenty fifth, two thousand twenty five"),
        (date(2028, 2, 29), date(2028, 1, 1), "Tuesday, February twenty ninth"),
    ],
)
def test_dates(day: date, today: date, spoken: str) -> None:
    assert spoken_text(date_words(day, today=today)) == spoken


def test_datetimes_work_as_dates_and_as_today() -> None:
    when = datetime(2026, 11, 21, 9, 30, tzinfo=UTC)
    assert date_words(when, today=datetime(2026, 11, 20, 23, 0)) == ("tomorrow",)


def test_the_date_comma_is_a_break_token() -> None:
    assert date_words(date(2026, 12, 1), today=TODAY) == ("tuesday", ",", "december", "first")


@pytest.mark.parametrize(
    ("year", "spoken"),
    [
        (2000, "two thousand"),
        (2005, "two thousand five"),
        (2027, "two thousand twenty seven"),
        (1999, "nineteen ninety nine"),
        (1905, "nineteen oh five"),
        (1900, "nineteen hundred"),
    ],
)
def test_years(year: int, spoken: str) -> None:
    assert year_words(year) == tuple(spoken.split())


def test_time_vocabulary_is_exactly_what_times_produce() -> None:
    said = {w for h in range(24) for m in range(60) for w in time_words(time(h, m))}
    assert said == set(TIME_VOCABULARY)


def test_date_vocabulary_covers_every_date_this_century() -> None:
    today = date(2026, 6, 15)
    said = {"today", "tomorrow"}
    day = date(2024, 1, 1)
    while day.year < 2026:  # a leap year and an ordinary one, every weekday and month
        said.update(w for w in date_words(day, today=today) if w != ",")
        day += timedelta(days=1)
    for year in range(2000, 2100):
        said.update(date_words(date(year, 1, 1), today=today) if year != 2026 else ())
    said.discard(",")
    assert said == set(DATE_VOCABULARY)

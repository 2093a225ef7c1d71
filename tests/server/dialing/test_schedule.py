"""When to call: pure tables over server/dialing/schedule.py, daylight-saving changes included."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from server.dialing.schedule import (
    CallingPolicy,
    backoff_delay,
    first_call_at,
    in_calling_hours,
    next_window_start,
    parse_clock,
    retry_at,
    spacing_clear_at,
)
from server.errors import ValidationError
from server.tenants import Tenant, validate

NY = ZoneInfo("America/New_York")  # 2026: EDT from Sun 8 March 02:00, EST from Sun 1 November 02:00
POLICY = CallingPolicy(zone=NY)  # 08:00-20:00, 24 h lead, retry 30 min, 2 attempts, 60 min gap


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def local(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=NY)


@pytest.mark.parametrize(
    ("text", "end", "minutes"),
    [
        ("08:00", False, 480),
        ("8:05", False, 485),
        ("00:00", False, 0),
        ("23:59", False, 1439),
        ("24:00", True, 1440),
    ],
)
def test_parse_clock(text, end, minutes):
    assert parse_clock(text, allow_end_of_day=end) == minutes


@pytest.mark.parametrize("text", ["24:00", "8", "08:60", "25:00", "8:5", "ab:cd", "", "08:00:00"])
def test_parse_clock_refuses(text):
    with pytest.raises(ValueError):
        parse_clock(text)


@pytest.mark.parametrize(
    ("at", "inside"),
    [
        # Winter (EST, UTC-5): 08:00 local is 13:00 UTC.
        ("2026-03-07T12:59:59", False),
        ("2026-03-07T13:00:00", True),
        ("2026-03-08T00:59:59", True),  # 19:59:59 EST
        ("2026-03-08T01:00:00", False),  # 20:00 EST: the end is exclusive
        # Spring forward, Sunday 8 March: 08:00 EDT is 12:00 UTC.
        ("2026-03-08T12:00:00", True),
        ("2026-03-08T12:30:00", True),  # would be 07:30 in EST: the wall clock decides
        ("2026-03-08T23:59:00", True),  # 19:59 EDT
        ("2026-03-09T00:00:00", False),  # 20:00 EDT
        # Fall back, Sunday 1 November: 08:00 EST is 13:00 UTC again.
        ("2026-11-01T12:30:00", False),  # 07:30 EST
        ("2026-11-01T13:00:00", True),
    ],
)
def test_calling_hours_follow_the_wall_clock_across_dst(at, inside):
    assert in_calling_hours(utc(at), POLICY) is inside


@pytest.mark.parametrize(
    ("at", "opens"),
    [
        ("2026-03-07T15:00:00", "2026-03-07T15:00:00"),  # open now: now
        ("2026-03-07T02:00:00", "2026-03-07T13:00:00"),  # 21:00 EST Friday -> 08:00 EST Saturday
        # Saturday 21:00 EST -> Sunday 08:00, which is EDT by then: 12:00 UTC, not 13:00.
        ("2026-03-08T02:00:00", "2026-03-08T12:00:00"),
        ("2026-03-08T10:00:00", "2026-03-08T12:00:00"),  # 06:00 EDT, after the change
        # Saturday 31 October 21:00 EDT -> Sunday 08:00 EST: 13:00 UTC, not 12:00.
        ("2026-11-01T01:00:00", "2026-11-01T13:00:00"),
    ],
)
def test_next_window_across_dst(at, opens):
    assert next_window_start(utc(at), POLICY) == utc(opens)


def test_a_window_swallowed_by_the_spring_forward_gap_moves_a_day():
    # 02:00-03:00 does not exist on 8 March in New York: the next such window is the 9th.
    policy = replace(POLICY, start_minute=120, end_minute=180)
    assert next_window_start(local("2026-03-08T00:30"), policy) == local("2026-03-09T02:00")


def test_the_repeated_hour_of_fall_back_is_inside_both_times():
    policy = replace(POLICY, start_minute=60, end_minute=120)  # 01:00-02:00
    assert in_calling_hours(utc("2026-11-01T05:30:00"), policy)  # 01:30 EDT
    assert in_calling_hours(utc("2026-11-01T06:30:00"), policy)  # 01:30 EST
    assert not in_calling_hours(utc("2026-11-01T07:30:00"), policy)  # 02:30 EST


def test_whole_day_window():
    policy = replace(POLICY, start_minute=0, end_minute=24 * 60)
    assert in_calling_hours(local("2026-05-01T23:59:59"), policy)
    assert in_calling_hours(local("2026-05-02T00:00:00"), policy)


@pytest.mark.parametrize(
    ("appointment", "now", "first"),
    [
        # 24 h before a Tuesday 15:00 appointment is Monday 15:00, inside hours.
        ("2026-12-01T15:00", "2026-11-20T09:00", "2026-11-30T15:00"),
        # 24 h before 08:30 is 08:30 the day before.
        ("2026-12-01T08:30", "2026-11-20T09:00", "2026-11-30T08:30"),
        # 24 h before 21:00 is 21:00, after hours: the next morning, before the appointment.
        ("2026-12-01T21:00", "2026-11-20T09:00", "2026-12-01T08:00"),
        # Created late: now, if inside hours.
        ("2026-12-01T15:00", "2026-12-01T10:00", "2026-12-01T10:00"),
        # Created at 22:00 for 07:00 the next morning: no calling hours before it.
        ("2026-12-02T07:00", "2026-12-01T22:00", None),
        # Across spring forward: 24 h (absolute) before Monday 9 March 09:00 EDT is Sunday
        # 09:00 EDT, within hours on the new wall clock.
        ("2026-03-09T09:00", "2026-03-01T09:00", "2026-03-08T09:00"),
    ],
)
def test_first_call(appointment, now, first):
    got = first_call_at(local(appointment), local(now), POLICY)
    assert got == (local(first) if first else None)


def test_lead_is_the_tenants():
    policy = replace(POLICY, lead=timedelta(hours=2))
    got = first_call_at(local("2026-12-01T15:00"), local("2026-11-20T09:00"), policy)
    assert got == local("2026-12-01T13:00")


@pytest.mark.parametrize(
    ("attempts", "ended", "last_dial", "appointment", "expected"),
    [
        # One call placed, no answer at 10:01: spacing (60 min after the dial) beats the 30 min.
        (1, "2026-12-01T10:01", "2026-12-01T10:00", "2026-12-02T15:00", "2026-12-01T11:00"),
        # The dial was long ago: the retry delay decides.
        (1, "2026-12-01T10:01", "2026-12-01T08:00", "2026-12-02T15:00", "2026-12-01T10:31"),
        # Max attempts (2) reached: no retry.
        (2, "2026-12-01T10:01", "2026-12-01T10:00", "2026-12-02T15:00", None),
        # Busy at 19:50: the retry waits for 08:00 the next morning.
        (1, "2026-12-01T19:50", "2026-12-01T19:49", "2026-12-02T15:00", "2026-12-02T08:00"),
        # ...unless the appointment comes first.
        (1, "2026-12-01T19:50", "2026-12-01T19:49", "2026-12-02T07:30", None),
    ],
)
def test_retry_timing_and_limits(attempts, ended, last_dial, appointment, expected):
    got = retry_at(
        ended_at=local(ended),
        last_dialed_at=local(last_dial),
        appointment_at=local(appointment),
        attempts=attempts,
        policy=POLICY,
    )
    assert got == (local(expected) if expected else None)


def test_more_attempts_allow_more_retries():
    policy = replace(POLICY, max_attempts=3)
    got = retry_at(
        ended_at=local("2026-12-01T10:01"),
        last_dialed_at=None,
        appointment_at=local("2026-12-02T15:00"),
        attempts=2,
        policy=policy,
    )
    assert got == local("2026-12-01T10:31")


@pytest.mark.parametrize(
    ("last", "hold", "spacing", "clear"),
    [
        (None, None, 60, None),
        ("2026-12-01T10:00", "2026-12-01T11:00", 60, "2026-12-01T11:00"),
        # Our tenant allows 10 minutes, but the last caller asked for an hour: the hour stands.
        ("2026-12-01T10:00", "2026-12-01T11:00", 10, "2026-12-01T11:00"),
        ("2026-12-01T10:00", "2026-12-01T10:05", 30, "2026-12-01T10:30"),
    ],
)
def test_spacing(last, hold, spacing, clear):
    got = spacing_clear_at(
        last_dialed_at=local(last) if last else None,
        hold_until=local(hold) if hold else None,
        min_spacing=timedelta(minutes=spacing),
    )
    assert got == (local(clear) if clear else None)


@pytest.mark.parametrize(
    ("retry", "lo", "hi"),
    [(1, 0.25, 0.5), (2, 0.5, 1.0), (3, 1.0, 2.0), (5, 4.0, 8.0), (9, 4.0, 8.0)],
)
def test_backoff_is_exponential_jittered_and_capped(retry, lo, hi):
    assert backoff_delay(retry, 0.0) == lo
    assert backoff_delay(retry, 1.0) == hi
    assert lo <= backoff_delay(retry, 0.37) <= hi


GOOD = Tenant(slug="smile", name="Smile Dental", caller_id="(415) 555-0100")


@pytest.mark.parametrize(
    ("changes", "field", "message"),
    [
        ({"call_lead_minutes": -1}, "call_lead_minutes", "whole number from 0"),
        ({"call_lead_minutes": "60"}, "call_lead_minutes", "whole number"),
        ({"retry_delay_minutes": 0}, "retry_delay_minutes", "from 1"),
        ({"max_attempts": 0}, "max_attempts", "from 1 to 10"),
        ({"max_attempts": True}, "max_attempts", "whole number"),
        ({"min_spacing_minutes": 20000}, "min_spacing_minutes", "to 10080"),
        ({"calling_hours_start": "8am"}, "calling_hours_start", "not a time"),
        ({"calling_hours_start": "24:00"}, "calling_hours_start", "00:00-23:59"),
        ({"calling_hours_end": "25:00"}, "calling_hours_end", "not a time of day"),
        (
            {"calling_hours_start": "20:00", "calling_hours_end": "08:00"},
            "calling_hours_end",
            "must be after",
        ),
    ],
)
def test_schedule_fields_are_validated_naming_the_field(changes, field, message):
    with pytest.raises(ValidationError, match=message) as info:
        validate(replace(GOOD, **changes))
    assert info.value.field == field


def test_policy_from_tenant_defaults():
    policy = validate(GOOD).calling_policy()
    assert policy == CallingPolicy(zone=NY)
    whole_day = validate(replace(GOOD, calling_hours_start="00:00", calling_hours_end="24:00"))
    assert whole_day.calling_policy().end_minute == 24 * 60

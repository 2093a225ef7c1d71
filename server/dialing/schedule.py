"""When to call: fire-after times, calling hours, retries, per-number spacing and API backoff.

Pure: no clock, no database. Every function takes ``now`` (or the instant in question) as an
aware datetime and answers in UTC. Calling hours are wall-clock times in the tenant's own zone,
so "08:00" stays 08:00 local across a daylight-saving change, whatever that does to UTC.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

__all__ = [
    "DAY_MINUTES",
    "CallingPolicy",
    "backoff_delay",
    "first_call_at",
    "in_calling_hours",
    "next_window_start",
    "parse_clock",
    "retry_at",
    "spacing_clear_at",
]

DAY_MINUTES = 24 * 60
# A window that does not exist on some day (a spring-forward gap swallowing all of it) moves to
# the next day; a week of such days means the policy can never call.
_SEARCH_DAYS = 8


def parse_clock(text: str, *, allow_end_of_day: bool = False) -> int:
    """Minutes after midnight of "HH:MM" (24-hour); "24:00" only as the end of a window.

    Raises ValueError with a reason that names no field (the caller adds it).
    """
    hh, sep, mm = text.strip().partition(":")
    if not sep or not (hh.isdigit() and mm.isdigit()) or len(mm) != 2 or not 1 <= len(hh) <= 2:
        raise ValueError(f"{text!r} is not a time like 08:00")
    hours, minutes = int(hh), int(mm)
    if hours == 24 and minutes == 0 and allow_end_of_day:
        return DAY_MINUTES
    if hours > 23 or minutes > 59:
        raise ValueError(f"{text!r} is not a time of day (00:00-23:59)")
    return hours * 60 + minutes


@dataclass(frozen=True)
class CallingPolicy:
    """A tenant's rules for when its reminders may ring, in the units the arithmetic needs."""

    zone: ZoneInfo
    lead: timedelta = timedelta(hours=24)
    start_minute: int = 8 * 60  # calling hours [start, end) in local wall-clock minutes
    end_minute: int = 20 * 60
    retry_delay: timedelta = timedelta(minutes=30)
    max_attempts: int = 2
    min_spacing: timedelta = timedelta(minutes=60)


def _utc(at: datetime) -> datetime:
    if at.tzinfo is None:
        raise ValueError("times must be timezone-aware")
    return at.astimezone(UTC)


def _minute_of_day(local: datetime) -> float:
    return local.hour * 60 + local.minute + (local.second + local.microsecond / 1e6) / 60


def in_calling_hours(at: datetime, policy: CallingPolicy) -> bool:
    """Whether ``at`` falls inside the calling hours, read on the tenant's wall clock."""
    minute = _minute_of_day(_utc(at).astimezone(policy.zone))
    return policy.start_minute <= minute < policy.end_minute


def _opening(day: date, policy: CallingPolicy) -> datetime:
    # A start inside a spring-forward gap (02:30 that night) resolves to the instant the gap
    # ends plus the offset, i.e. later on the wall clock: still in the window unless the gap ate
    # it all, which the caller checks.
    hours, minutes = divmod(policy.start_minute, 60)
    return datetime.combine(day, time(hours, minutes), tzinfo=policy.zone).astimezone(UTC)


def next_window_start(at: datetime, policy: CallingPolicy) -> datetime:
    """``at`` itself if calling hours are open then, else when they next open (UTC)."""
    at = _utc(at)
    if in_calling_hours(at, policy):
        return at
    local = at.astimezone(policy.zone)
    day = local.date()
    if _minute_of_day(local) >= policy.start_minute:
        day += timedelta(days=1)
    for _ in range(_SEARCH_DAYS):
        candidate = _opening(day, policy)
        if candidate >= at and in_calling_hours(candidate, policy):
            return candidate
        day += timedelta(days=1)
    raise ValueError("the calling hours never open")


def first_call_at(
    appointment_at: datetime, now: datetime, policy: CallingPolicy
) -> datetime | None:
    """When the first call may go out: from the fire-after time (appointment minus lead), or
    now if that has passed, moved into calling hours. None if that is not before the appointment.
    """
    appointment_at = _utc(appointment_at)
    earliest = max(appointment_at - policy.lead, _utc(now))
    at = next_window_start(earliest, policy)
    return at if at < appointment_at else None


def retry_at(
    *,
    ended_at: datetime,
    last_dialed_at: datetime | None,
    appointment_at: datetime,
    attempts: int,
    policy: CallingPolicy,
) -> datetime | None:
    """When to try again after no answer or busy, or None when no retry is due.

    ``attempts`` counts calls placed so far. The retry waits the retry delay after the outcome
    and the number's minimum spacing after the last call, whichever is later, then calling hours.
    """
    if attempts >= policy.max_attempts:
        return None
    earliest = _utc(ended_at) + policy.retry_delay
    if last_dialed_at is not None:
        earliest = max(earliest, _utc(last_dialed_at) + policy.min_spacing)
    at = next_window_start(earliest, policy)
    return at if at < _utc(appointment_at) else None


def spacing_clear_at(
    *,
    last_dialed_at: datetime | None,
    hold_until: datetime | None,
    min_spacing: timedelta,
) -> datetime | None:
    """The earliest instant a number may be called again, from its last call (``hold_until`` is
    the previous caller's own spacing, which may be longer than ours); None if it never was."""
    candidates: list[datetime] = []
    if last_dialed_at is not None:
        candidates.append(_utc(last_dialed_at) + min_spacing)
    if hold_until is not None:
        candidates.append(_utc(hold_until))
    return max(candidates) if candidates else None


def backoff_delay(retry: int, jitter: float, *, base: float = 0.5, cap: float = 8.0) -> float:
    """Seconds to wait before API retry number ``retry`` (1, 2, ...): exponential, capped, with
    "equal jitter" (half fixed, half random from ``jitter`` in [0, 1)) so that workers that
    failed together do not come back together, yet never retry immediately."""
    if retry < 1:
        raise ValueError("retry counts from 1")
    ceiling: float = min(cap, base * 2.0 ** (retry - 1))
    return ceiling / 2 + min(max(jitter, 0.0), 1.0) * ceiling / 2

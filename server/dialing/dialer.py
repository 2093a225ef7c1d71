"""Placing one call: the safety checks, the request to Twilio, and what its answer means.

Safety first, before any request leaves the process: the number must be E.164, outside
production it must be on ``VOICEPROMPT_DIAL_ALLOWLIST``, and never on the tenant's do-not-call
list. Then ``CallsApi.create`` (server/dialing/twilio.py) with our answer URL, status callback
and the tenant's AMD.

Errors (the seam's ``ApiError``s), by what a retry could do:

- 20429 / HTTP 429: Twilio did not process the request; back off and retry.
- 5xx, a timeout, a dropped connection: Twilio may have placed the call. Before retrying we ask
  Twilio for calls to that number since we started; one found is adopted, never dialed again.
- connection refused: nothing left the machine; back off and retry.
- 401 (bad credentials): our configuration, not the reminder; try again later.
- any other 4xx (21211 invalid number, 21214 unreachable, 21215/21408 geo permissions, 21217,
  13224, ...): the reminder fails with Twilio's reason, never retried.

Retries are exponential with jitter and bounded (``DialPolicy``); each one goes through the
``gate`` again, which is where the dispatcher spends a slot of the account's CPS budget.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from functools import partial
from typing import Any

import phonenumbers
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from server.db.schema import do_not_call, tenants
from server.dialing.schedule import backoff_delay
from server.dialing.twilio import ApiError, ApiRejected, ApiUnreachable, CallRecord, CallsApi
from server.errors import NotFound, ServerError
from server.settings import Settings
from server.tenants import Tenant
from voicebank.sql import utcnow

__all__ = [
    "AMD_PARAMS",
    "add_do_not_call",
    "list_do_not_call",
    "remove_do_not_call",
    "CALL_EVENTS",
    "DialOutcome",
    "DialPolicy",
    "DialRefused",
    "DialResult",
    "ErrorClass",
    "call_params",
    "check_number",
    "classify",
    "crash_point",
    "find_calls",
    "place_call",
]

log = logging.getLogger("voiceprompt.dialer")

CALL_EVENTS = ("initiated", "ringing", "answered", "completed")
# Synchronous AMD: webhooks.voice decides person or machine from the AnsweredBy Twilio sends
# with the answer request, so the call waits for the verdict (no AsyncAmd). "Enable" decides
# quickly and a person should not hear long silence; "DetectMessageEnd" waits for the beep and
# long greetings need the full 30 s.
AMD_PARAMS: Mapping[str, Mapping[str, Any]] = {
    "off": {},
    "enable": {"machine_detection": "Enable", "machine_detection_timeout": 10},
    "detect-message-end": {
        "machine_detection": "DetectMessageEnd",
        "machine_detection_timeout": 30,
    },
}
# How far Twilio's clock and ours may disagree when we look for a call we may have placed.
CLOCK_SKEW = timedelta(minutes=2)


class DialRefused(ServerError):
    """A safety check refused the number; nothing was sent. ``reason`` is a short code."""

    status = 422

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class ErrorClass(StrEnum):
    RATE_LIMITED = "rate_limited"  # 429: not processed, retry
    SERVER = "server"  # 5xx: may have been processed
    UNSENT = "unsent"  # never reached Twilio
    MAYBE_SENT = "maybe_sent"  # no answer: may have been processed
    CREDENTIALS = "credentials"  # 401: our configuration
    PERMANENT = "permanent"  # the number or a permission: fail the reminder


class DialOutcome(StrEnum):
    PLACED = "placed"  # Twilio accepted the call (or we adopted one it had)
    FAILED = "failed"  # Twilio refused it for good; see reason
    RETRY_LATER = "retry_later"  # no call was placed; the reminder may be dialed later
    UNKNOWN = "unknown"  # a call may exist and Twilio could not tell us: leave for review


@dataclass(frozen=True)
class DialResult:
    outcome: DialOutcome
    call_sid: str | None = None
    call_status: str | None = None
    reason: str | None = None
    error_code: int | None = None
    adopted: bool = False
    requests: int = 0


@dataclass(frozen=True)
class DialPolicy:
    """Bounded retries of one dial: ``max_tries`` requests at most, backing off between them."""

    max_tries: int = 4
    base_delay: float = 0.5
    max_delay: float = 8.0

    def delay(self, retry: int, jitter: float) -> float:
        return backoff_delay(retry, jitter, base=self.base_delay, cap=self.max_delay)


def check_number(settings: Settings, to: str) -> None:
    """E.164 and, outside production, on the allowlist; raises DialRefused otherwise."""
    try:
        parsed = phonenumbers.parse(to, None)
    except phonenumbers.NumberParseException:
        raise DialRefused(f"{to!r} is not an E.164 phone number", "not_e164") from None
    e164 = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
    if e164 != to or not phonenumbers.is_valid_number(parsed):
        raise DialRefused(f"{to!r} is not a valid E.164 phone number", "not_e164")
    if not settings.is_production and to not in settings.dial_allowlist:
        raise DialRefused(
            f"{to} is not in VOICEPROMPT_DIAL_ALLOWLIST; outside production "
            f"(VOICEPROMPT_ENV={settings.env}) only allow-listed numbers are dialed",
            "not_allowlisted",
        )


async def _tenant_id(conn: Any, slug: str) -> int:
    tid = (await conn.execute(sa.select(tenants.c.id).where(tenants.c.slug == slug))).scalar()
    if tid is None:
        raise NotFound(f"no tenant {slug!r}")
    return int(tid)


async def add_do_not_call(
    engine: AsyncEngine, tenant_slug: str, number: str, reason: str | None = None
) -> bool:
    """Put an E.164 number on a tenant's do-not-call list; False if it was there already."""
    async with engine.begin() as conn:
        tid = await _tenant_id(conn, tenant_slug)
        exists = await conn.execute(
            sa.select(do_not_call.c.number).where(
                do_not_call.c.tenant_id == tid, do_not_call.c.number == number
            )
        )
        if exists.first() is not None:
            return False
        await conn.execute(
            do_not_call.insert().values(
                tenant_id=tid, number=number, reason=reason, created_at=utcnow()
            )
        )
        return True


async def remove_do_not_call(engine: AsyncEngine, tenant_slug: str, number: str) -> bool:
    async with engine.begin() as conn:
        tid = await _tenant_id(conn, tenant_slug)
        done = await conn.execute(
            do_not_call.delete().where(
                do_not_call.c.tenant_id == tid, do_not_call.c.number == number
            )
        )
        return bool(done.rowcount)


async def list_do_not_call(engine: AsyncEngine, tenant_slug: str) -> list[tuple[str, str | None]]:
    async with engine.connect() as conn:
        tid = await _tenant_id(conn, tenant_slug)
        rows = await conn.execute(
            sa.select(do_not_call.c.number, do_not_call.c.reason)
            .where(do_not_call.c.tenant_id == tid)
            .order_by(do_not_call.c.number)
        )
        return [(r.number, r.reason) for r in rows]


def call_params(settings: Settings, reminder_id: int, to: str, tenant: Tenant) -> dict[str, Any]:
    """The ``params`` of ``CallsApi.create`` (twilio-python's keywords) for one reminder."""
    if not tenant.caller_id:
        raise DialRefused(f"tenant {tenant.slug!r} has no caller_id to call from", "no_caller_id")
    base = settings.public_url
    return {
        "to": to,
        "from_": tenant.caller_id,
        "url": f"{base}/twilio/voice/{reminder_id}",
        "method": "POST",
        "status_callback": f"{base}/twilio/status?reminder={reminder_id}",
        "status_callback_event": list(CALL_EVENTS),
        "status_callback_method": "POST",
        **AMD_PARAMS[tenant.amd_mode],
    }


def classify(exc: ApiError) -> ErrorClass:
    if isinstance(exc, ApiUnreachable):
        return ErrorClass.MAYBE_SENT if exc.sent else ErrorClass.UNSENT
    if isinstance(exc, ApiRejected):
        if exc.http_status == 429 or exc.code == 20429:
            return ErrorClass.RATE_LIMITED
        if exc.http_status >= 500:
            return ErrorClass.SERVER
        if exc.http_status == 401:
            return ErrorClass.CREDENTIALS
        return ErrorClass.PERMANENT
    # Anything else (an unreadable 201 body, a bug in the client) came after sending.
    return ErrorClass.MAYBE_SENT


async def find_calls(
    calls: CallsApi, to: str, from_: str | None, since: datetime, until: datetime
) -> list[CallRecord]:
    """Calls Twilio has to ``to`` (from ``from_``) created in [since, until], with clock slack.

    ``StartTime>`` filters by day and a queued call has no start time yet, so queued calls are
    asked for separately and the window is checked here on ``date_created``.
    """
    lo, hi = since - CLOCK_SKEW, until + CLOCK_SKEW
    started = await calls.list(to=to, start_time_after=lo, limit=200)
    queued = await calls.list(to=to, status="queued", limit=200)
    found: dict[str, CallRecord] = {}
    for call in [*started, *queued]:
        created = call.date_created
        if created is not None and not lo <= created.astimezone(UTC) <= hi:
            continue
        if (call.to and call.to != to) or (from_ and call.from_ and call.from_ != from_):
            continue
        found[call.sid] = call
    return list(found.values())


Gate = Callable[[int], Awaitable[None]]


def crash_point(settings: Settings, name: str, rand: Callable[[], float] = random.random) -> None:
    """Die here, like a SIGKILL, with the configured probability (VOICEPROMPT_ENV=test only)."""
    if settings.env != "test":
        return
    for point, probability in settings.test_crash:
        if point == name and rand() < probability:
            log.warning("test crash at %s", name)
            os._exit(99)


async def place_call(
    calls: CallsApi,
    params: Mapping[str, Any],
    *,
    settings: Settings,
    started_at: datetime,
    gate: Gate,
    policy: DialPolicy = DialPolicy(),
    rand: Callable[[], float] = random.random,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> DialResult:
    """Send ``calls.create`` (retrying as the module docstring says) and say what happened.

    ``gate(n)`` runs right before request number n leaves (after its API log entry is written,
    so nothing slow sits between the two) and may raise to abandon the dial (the dispatcher
    lost its claim); ``started_at`` is when the first request was about to leave.
    """
    to, from_ = str(params["to"]), params.get("from_")
    maybe_sent = False
    reason: str | None = None
    for attempt in range(1, policy.max_tries + 1):
        if attempt > 1:
            await sleep(policy.delay(attempt - 1, rand()))
            if maybe_sent:
                found = await _look(calls, to, from_, started_at, attempt - 1)
                if found is not None:
                    return found
        try:
            call = await calls.create(params, before_send=partial(gate, attempt))
        except ApiError as exc:
            kind = classify(exc)
            reason = exc.reason
            log.warning("calls.create to %s, try %s: %s (%s)", to, attempt, reason, kind)
            code = exc.code if isinstance(exc, ApiRejected) else None
            if kind is ErrorClass.PERMANENT:
                return DialResult(
                    DialOutcome.FAILED, reason=reason, error_code=code, requests=attempt
                )
            if kind is ErrorClass.CREDENTIALS and not maybe_sent:
                return DialResult(
                    DialOutcome.RETRY_LATER, reason=reason, error_code=code, requests=attempt
                )
            maybe_sent = maybe_sent or kind in (ErrorClass.SERVER, ErrorClass.MAYBE_SENT)
            continue
        crash_point(settings, "after_request", rand)
        return DialResult(
            DialOutcome.PLACED,
            call_sid=call.sid,
            call_status=call.status or None,
            requests=attempt,
        )
    if not maybe_sent:
        return DialResult(DialOutcome.RETRY_LATER, reason=reason, requests=policy.max_tries)
    found = await _look(calls, to, from_, started_at, policy.max_tries)
    if found is not None:
        return found
    # Twilio says no such call exists: every failed request was refused or lost before it.
    return DialResult(DialOutcome.RETRY_LATER, reason=reason, requests=policy.max_tries)


async def _look(
    calls: CallsApi, to: str, from_: str | None, since: datetime, requests: int
) -> DialResult | None:
    """After an answer-less failure: the call if Twilio has exactly one, UNKNOWN if it has
    several or cannot say, None if it has none (a retry is then safe)."""
    try:
        found = await find_calls(calls, to, from_, since, utcnow())
    except ApiError as exc:
        return DialResult(
            DialOutcome.UNKNOWN, reason=f"could not ask Twilio for calls: {exc}", requests=requests
        )
    if len(found) == 1:
        call = found[0]
        return DialResult(
            DialOutcome.PLACED,
            call_sid=call.sid,
            call_status=call.status or None,
            adopted=True,
            requests=requests,
        )
    if found:
        sids = ", ".join(sorted(c.sid for c in found))
        return DialResult(
            DialOutcome.UNKNOWN, reason=f"Twilio has several calls: {sids}", requests=requests
        )
    return None

"""Dialing one claimed reminder: the checks, the number's spacing, a send slot, the request.

Safety checks (server/dialing/dialer.py), calling hours, the number's spacing (reserved
atomically, across tenants: server/dialing/spacing.py), a send slot of the CPS budget;
``dialing`` is written BEFORE the request and the CallSid after it.

The CPS budget (server/dialing/pacing.py) is one database row of evenly spaced send slots shared
by all workers; every ``calls.create`` request takes a slot, retries included. ``dialing`` is
written moments before the slot, with a lease that covers the request (its timeout plus 2 s): a
worker that dies after that is found by reconciliation (server/dialing/reconcile.py).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from server.db.schema import reminders
from server.dialing.dialer import (
    DialOutcome,
    DialPolicy,
    DialRefused,
    DialResult,
    call_params,
    check_number,
    crash_point,
    place_call,
)
from server.dialing.pacing import RateBudget
from server.dialing.queue import (
    RETRY_LATER,
    LostClaim,
    NowOnDoNotCall,
    QueuedReminder,
    ReminderQueue,
    record_event,
)
from server.dialing.schedule import CallingPolicy, in_calling_hours, next_window_start
from server.dialing.spacing import NumberSpacing, Reservation
from server.dialing.twilio import CallsApi
from server.errors import ServerError
from server.settings import Settings

__all__ = ["LEASE_MARGIN", "Attempts", "DispatchError", "DispatchResult"]

# A lease runs this much past the worst case of the request it covers.
LEASE_MARGIN = timedelta(seconds=2)


log = logging.getLogger("voiceprompt.dispatch")
# Prepares a reminder's answers before it is dialed (injected: dialing does not import calls).
Prepare = Callable[[int], Awaitable[None]]
# Preparation renders sentences said for the first time; it never holds a call up longer.
PREPARE_BUDGET_S = 5.0


class DispatchError(ServerError):
    status = 409


@dataclass(frozen=True)
class DispatchResult:
    """What one pass over one reminder did: dialed, failed, refused, rescheduled, postponed,
    unknown (left for reconciliation) or lost (another worker has it)."""

    reminder_id: int
    result: str
    detail: str = ""
    call_sid: str | None = None


class Attempts:
    """Dials the reminders a worker claimed from ``queue``, through ``calls``."""

    def __init__(
        self,
        queue: ReminderQueue,
        settings: Settings,
        calls: CallsApi,
        *,
        spacing: NumberSpacing,
        budget: RateBudget,
        claim_lease: timedelta,
        policy: DialPolicy,
        clock: Callable[[], datetime],
        rand: Callable[[], float],
        prepare: Prepare | None = None,
    ) -> None:
        self.queue = queue
        self.prepare = prepare
        self.settings = settings
        self.calls = calls
        self.spacing = spacing
        self.budget = budget
        self.claim_lease = claim_lease
        self.policy = policy
        self.clock = clock
        self.rand = rand

    async def dial(self, r: QueuedReminder, *, manual: bool) -> DispatchResult:
        """Check, pace and dial one claimed reminder; ``manual`` (``voiceprompt call``) skips
        the fire-after time and calling hours, never the safety checks or the spacing."""
        now = self.clock()
        policy = r.tenant.calling_policy()
        try:
            check_number(self.settings, r.to)
            params = call_params(self.settings, r.id, r.to, r.tenant)
            if r.do_not_call:
                raise DialRefused(
                    f"{r.to} is on tenant {r.tenant.slug!r}'s do-not-call list", "do_not_call"
                )
        except DialRefused as exc:
            await self.queue.fail(r, str(exc), "refused", {"check": exc.reason})
            return DispatchResult(r.id, "refused", str(exc))
        if not manual:
            if r.appointment_at <= now:
                reason = "the appointment time has passed"
                await self.queue.fail(r, reason, "too_late")
                return DispatchResult(r.id, "failed", reason)
            if not in_calling_hours(now, policy):
                return await self._reschedule(r, now, "outside calling hours", policy)
        held = await self.spacing.reserve(r.to, f"{r.id}:{r.attempts}", now, policy.min_spacing)
        if isinstance(held, datetime):
            why = f"{r.to} was called less than {policy.min_spacing} ago"
            if manual:
                await self.queue.release(
                    r, "spacing", {"until": held.isoformat()}, lease_until=None
                )
                raise DispatchError(f"{why}; it may be called again from {held.isoformat()}")
            return await self._reschedule(r, held, why, policy)
        await self._prepare(r)
        try:
            result = await self._send(r, params, now)
        except NowOnDoNotCall:
            await self.spacing.release(held)
            reason = f"{r.to} is on tenant {r.tenant.slug!r}'s do-not-call list"
            await self.queue.fail(r, reason, "refused", {"check": "do_not_call"})
            return DispatchResult(r.id, "refused", reason)
        except LostClaim:
            await self.spacing.release(held)
            return DispatchResult(r.id, "lost", "another worker holds this reminder")
        return await self._settle(r, result, held)

    async def _prepare(self, r: QueuedReminder) -> None:
        """The call's answers, planned and rendered before it rings (server/calls/prepared.py);
        if that fails or is slow the call still goes out, and its webhook answers live."""
        if self.prepare is None:
            return
        try:
            async with asyncio.timeout(PREPARE_BUDGET_S):
                await self.prepare(r.id)
        except Exception as exc:  # noqa: BLE001 - never a reason not to call
            log.warning("reminder %s: answers not prepared (%r); answered live", r.id, exc)

    async def _reschedule(
        self, r: QueuedReminder, at: datetime, why: str, policy: CallingPolicy
    ) -> DispatchResult:
        at = next_window_start(at, policy)
        if at >= r.appointment_at:
            reason = f"{why}, and no calling hours are left before the appointment"
            await self.queue.fail(r, reason, "too_late")
            return DispatchResult(r.id, "failed", reason)
        await self.queue.release(
            r,
            "rescheduled",
            {"reason": why, "at": at.isoformat()},
            next_attempt_at=at,
            lease_until=None,
        )
        return DispatchResult(r.id, "rescheduled", f"{why}; next try {at.isoformat()}")

    async def _send(
        self, r: QueuedReminder, params: Mapping[str, Any], started: datetime
    ) -> DialResult:
        timeout = timedelta(seconds=self.settings.twilio_timeout)
        lease: datetime | None = None

        async def hold(wait: float) -> None:
            nonlocal lease
            need = self.clock() + timedelta(seconds=wait) + timeout + LEASE_MARGIN
            if lease is None:
                await self.queue.mark_dialing(r, need)
                lease = need
            elif need > lease:
                # Extend by a whole request more, so that a late wake rarely needs a write.
                lease = need + timeout
                await self.queue.extend(r, lease)

        async def keep_claim(wait: float) -> None:
            # Slots far ahead (a low CPS, many lanes): hold the claim until then.
            if lease is None and wait > self.claim_lease.total_seconds() / 2:
                await self.queue.hold(r, self.clock() + timedelta(seconds=wait) + self.claim_lease)

        async def gate(attempt: int) -> None:
            await self.budget.wait_turn(hold, keep_claim)
            if attempt == 1:
                crash_point(self.settings, "before_request", self.rand)

        return await place_call(
            self.calls,
            params,
            settings=self.settings,
            started_at=started,
            gate=gate,
            policy=self.policy,
            rand=self.rand,
        )

    async def _settle(
        self, r: QueuedReminder, result: DialResult, held: Reservation
    ) -> DispatchResult:
        now = self.clock()
        if result.outcome is DialOutcome.PLACED:
            detail = {
                "call_sid": result.call_sid,
                "twilio_status": result.call_status,
                "adopted": result.adopted,
                "requests": result.requests,
            }
            async with self.queue.engine.begin() as conn:
                # The SID only where none is stored yet (a status callback or the reconciler may
                # have stored this same one first); our claim only if it is still ours.
                mine = reminders.c.claimed_by == self.queue.worker_id
                await conn.execute(
                    reminders.update()
                    .where(reminders.c.id == r.id)
                    .values(
                        call_sid=sa.func.coalesce(reminders.c.call_sid, result.call_sid),
                        claimed_by=sa.case((mine, None), else_=reminders.c.claimed_by),
                        lease_until=sa.case((mine, None), else_=reminders.c.lease_until),
                    )
                )
                await record_event(conn, r.id, "dialed", detail, now, call_sid=result.call_sid)
            return DispatchResult(r.id, "dialed", result.call_status or "", result.call_sid)
        if result.outcome is DialOutcome.FAILED:
            reason = result.reason or "Twilio refused the call"
            await self.queue.fail(r, reason, "dial_failed", {"code": result.error_code})
            await self.spacing.release(held)
            return DispatchResult(r.id, "failed", reason)
        if result.outcome is DialOutcome.RETRY_LATER:
            at = now + RETRY_LATER
            await self.queue.release(
                r,
                "dial_postponed",
                {"reason": result.reason, "at": at.isoformat()},
                statuses=("dialing",),
                status="pending",
                attempts=reminders.c.attempts - 1,
                next_attempt_at=at,
                lease_until=None,
                dial_started_at=None,
                last_error=result.reason,
                updated_at=now,
            )
            await self.spacing.release(held)
            return DispatchResult(r.id, "postponed", result.reason or "")
        # UNKNOWN: a call may exist. Expire the lease so the reconciler asks Twilio again soon.
        await self.queue.release(
            r,
            "dial_unknown",
            {"reason": result.reason},
            statuses=("dialing",),
            lease_until=now,
            last_error=result.reason,
        )
        return DispatchResult(r.id, "unknown", result.reason or "")

"""Reconciling: ``dialing`` without a CallSid once its lease has run out.

That means a worker died (or gave up) between the request and storing the answer. A worker takes
such a reminder for a while (``ReminderQueue.claim_stale``) and asks Twilio for calls to that
number (from the tenant's caller ID) since the dial started: exactly one is adopted, none or
several send the reminder to ``needs_review`` with the reason in ``last_error``. Such a reminder
is never dialed again without a person deciding to (``voiceprompt call --reminder ID``). When
Twilio cannot be asked, the reminder stays as it is and is tried again a minute later.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from server.db.schema import reminders
from server.dialing.dialer import find_calls
from server.dialing.queue import RETRY_LATER, QueuedReminder, ReminderQueue, record_event
from server.dialing.twilio import ApiError, CallsApi, for_reminder

__all__ = ["Reconciler"]

log = logging.getLogger("voiceprompt.dispatch")


class Reconciler:
    """Settles the stale ``dialing`` reminders of ``queue`` by asking Twilio (``calls``);
    holds each for ``lease`` while it asks."""

    def __init__(
        self,
        queue: ReminderQueue,
        calls: CallsApi,
        *,
        lease: timedelta,
        clock: Callable[[], datetime],
    ) -> None:
        self.queue = queue
        self.calls = calls
        self.lease = lease
        self.clock = clock

    async def reconcile(self, now: datetime) -> int:
        """Settle ``dialing`` reminders without a CallSid whose lease ran out; how many."""
        rows = await self.queue.claim_stale(now, self.lease)
        for r in rows:
            with for_reminder(r.id):
                await self._one(r, now)
        return len(rows)

    async def _one(self, r: QueuedReminder, now: datetime) -> None:
        since = r.dial_started_at or now - timedelta(days=1)
        try:
            calls = await find_calls(self.calls, r.to, r.tenant.caller_id, since, self.clock())
        except ApiError as exc:
            log.warning("reconciling reminder %s: cannot ask Twilio: %s", r.id, exc)
            # Try again in a while; it stays "dialing" without a SID, never dialed again.
            await self.queue.release(
                r,
                "reconcile_failed",
                {"reason": str(exc)},
                statuses=("dialing",),
                lease_until=now + RETRY_LATER,
            )
            return
        if len(calls) == 1:
            call = calls[0]
            sid = call.sid
            async with self.queue.engine.begin() as conn:
                done = await conn.execute(
                    reminders.update()
                    .where(*self.queue.mine(r, "dialing"))
                    .values(call_sid=sid, claimed_by=None, lease_until=None)
                )
                if done.rowcount:
                    detail = {"call_sid": sid, "twilio_status": str(call.status)}
                    await record_event(conn, r.id, "adopted", detail, now, call_sid=sid)
            log.info("reminder %s: adopted call %s found at Twilio", r.id, sid)
            return
        sids = sorted(c.sid for c in calls)
        reason = (
            f"Twilio has {len(sids)} calls to {r.to} since the dial started ({', '.join(sids)})"
            if sids
            else f"the dial started at {since.isoformat()} but Twilio has no call to {r.to}; "
            "the worker may have died before sending"
        )
        await self.queue.release(
            r,
            "needs_review",
            {"reason": reason, "calls": sids},
            statuses=("dialing",),
            status="needs_review",
            lease_until=None,
            last_error=reason,
            updated_at=now,
        )
        log.warning("reminder %s needs review: %s", r.id, reason)

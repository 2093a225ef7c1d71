"""Planning: when a reminder rings next.

A new reminder (``next_attempt_at`` NULL) gets its first call time from server/dialing/schedule.py;
one that cannot ring before its appointment fails with the reason. A no_answer/busy one with
attempts left goes back to ``pending`` with its retry time. Conditional updates, so two workers
planning one row change it once.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from server.db.schema import reminders, tenants
from server.dialing.queue import ROWS, QueuedReminder, queued_from, record_event
from server.dialing.schedule import first_call_at, retry_at

__all__ = ["RETRYABLE", "plan", "requeue_retries"]

RETRYABLE = ("no_answer", "busy")


async def plan(engine: AsyncEngine, now: datetime, *, batch: int) -> int:
    """Give new reminders their first call time; fail those too late to call at all."""
    async with engine.connect() as conn:
        rows = [
            queued_from(r._mapping)
            for r in await conn.execute(
                ROWS.where(
                    reminders.c.status == "pending", reminders.c.next_attempt_at.is_(None)
                ).limit(batch)
            )
        ]
    if not rows:
        return 0
    planned: list[dict[str, Any]] = []
    too_late: list[QueuedReminder] = []
    for r in rows:
        at = first_call_at(r.appointment_at, now, r.tenant.calling_policy())
        if at is None:
            too_late.append(r)
        else:
            planned.append({"rid": r.id, "at": at})
    async with engine.begin() as conn:
        if planned:
            await conn.execute(
                reminders.update()
                .where(
                    reminders.c.id == sa.bindparam("rid"),
                    reminders.c.status == "pending",
                    reminders.c.next_attempt_at.is_(None),
                )
                .values(next_attempt_at=sa.bindparam("at")),
                planned,
            )
        for r in too_late:
            reason = "no calling hours left before the appointment"
            done = await conn.execute(
                reminders.update()
                .where(
                    reminders.c.id == r.id,
                    reminders.c.status == "pending",
                    reminders.c.next_attempt_at.is_(None),
                )
                .values(status="failed", outcome="failed", last_error=reason, updated_at=now)
            )
            if done.rowcount:
                await record_event(conn, r.id, "too_late", {"reason": reason}, now)
    return len(rows)


async def requeue_retries(engine: AsyncEngine, now: datetime, *, batch: int) -> int:
    """No answer or busy with attempts left: back to pending at the retry time.

    ``next_attempt_at`` is cleared when a call starts, so NULL here means "not decided";
    a reminder with no retry possible gets the decision time, and is passed over after.
    """
    # Not while a worker still holds the call that ended (it stores the CallSid last).
    free = sa.or_(reminders.c.claimed_by.is_(None), reminders.c.lease_until < now)
    async with engine.connect() as conn:
        rows = [
            queued_from(r._mapping)
            for r in await conn.execute(
                ROWS.where(
                    reminders.c.status.in_(RETRYABLE),
                    reminders.c.next_attempt_at.is_(None),
                    reminders.c.attempts < tenants.c.max_attempts,
                    free,
                ).limit(batch)
            )
        ]
    count = 0
    for r in rows:
        at = retry_at(
            ended_at=r.updated_at,
            last_dialed_at=r.dial_started_at,
            appointment_at=r.appointment_at,
            attempts=r.attempts,
            policy=r.tenant.calling_policy(),
        )
        same = (
            reminders.c.id == r.id,
            reminders.c.status == r.status,
            reminders.c.next_attempt_at.is_(None),
            free,
        )
        async with engine.begin() as conn:
            if at is None:
                done = await conn.execute(
                    reminders.update().where(*same).values(next_attempt_at=now)
                )
                if done.rowcount:
                    await record_event(conn, r.id, "no_retry", {"after": r.status}, now)
                continue
            done = await conn.execute(
                reminders.update()
                .where(*same)
                .values(
                    status="pending",
                    next_attempt_at=at,
                    call_sid=None,
                    outcome=None,
                    answered_by=None,
                    claimed_by=None,
                    lease_until=None,
                    updated_at=now,
                )
            )
            if done.rowcount:
                count += 1
                detail = {"after": r.status, "at": at.isoformat(), "attempts": r.attempts}
                await record_event(conn, r.id, "retry_scheduled", detail, now)
    return count

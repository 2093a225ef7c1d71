"""The reminders table as a work queue shared by every worker: who holds which reminder, until
when, and every statement that takes, extends or gives back that hold.

- Claiming. One statement takes a due reminder for this worker for a lease: PostgreSQL
  ``WITH picked AS (SELECT ... FOR UPDATE SKIP LOCKED) UPDATE ...``, SQLite a single
  conditional UPDATE (it runs one writer at a time). A claimed reminder stays ``pending``: a
  worker that dies holding one has sent nothing, and its lease simply runs out.
- ``dialing`` is written by the holder right before the request (``mark_dialing``, which checks
  the do-not-call list once more), and its lease extended while the request may still run.
- A statement on a held reminder names the holder (``mine``): a worker whose lease ran out and
  was taken over changes nothing (``LostClaim``).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from server.db.schema import do_not_call, reminder_events, reminders, tenants
from server.tenants import Tenant, tenant_columns, tenant_from_row
from voicebank.sql import aware

__all__ = [
    "REDIALABLE",
    "RETRY_LATER",
    "ROWS",
    "QueuedReminder",
    "LostClaim",
    "NowOnDoNotCall",
    "ReminderQueue",
    "queued_from",
    "record_event",
]

# After a 429 storm, Twilio being down or bad credentials: no call was placed; try again then.
RETRY_LATER = timedelta(minutes=1)
# Statuses `voiceprompt call` may dial from: nothing in flight, no decision by the callee
# (needs_review: a person has looked and decided to call again).
REDIALABLE = ("pending", "no_answer", "busy", "failed", "call_canceled", "needs_review")
TENANT_TTL_S = 30.0


class LostClaim(Exception):
    """Another worker (or the reconciler) owns the reminder now; drop it."""


class NowOnDoNotCall(LostClaim):
    """The number went on the do-not-call list after the claim: nothing was sent."""


@dataclass(frozen=True)
class QueuedReminder:
    """A reminder as the dispatcher works on it, with its tenant's settings."""

    id: int
    to: str
    appointment_at: datetime
    status: str
    attempts: int
    updated_at: datetime
    dial_started_at: datetime | None
    do_not_call: bool
    tenant: Tenant


_TENANT_COLUMNS = tenant_columns("t_")
ON_DO_NOT_CALL = sa.exists().where(
    do_not_call.c.tenant_id == reminders.c.tenant_id,
    do_not_call.c.number == reminders.c.to_number,
)
_REMINDER_COLUMNS = (
    reminders.c.id,
    reminders.c.to_number,
    reminders.c.appointment_at,
    reminders.c.status,
    reminders.c.attempts,
    reminders.c.updated_at,
    reminders.c.dial_started_at,
    reminders.c.tenant_id,
    ON_DO_NOT_CALL.label("do_not_call"),
)
# Reminders with their tenants' settings, for ``queued_from``.
ROWS = sa.select(*_REMINDER_COLUMNS, *_TENANT_COLUMNS).join(
    tenants, tenants.c.id == reminders.c.tenant_id
)


def queued_from(m: Mapping[Any, Any], tenant: Tenant | None = None) -> QueuedReminder:
    """A row of ``ROWS`` (or of a claim, with its ``tenant``)."""
    started = m["dial_started_at"]
    return QueuedReminder(
        id=int(m["id"]),
        to=str(m["to_number"]),
        appointment_at=aware(m["appointment_at"]),
        status=str(m["status"]),
        attempts=int(m["attempts"]),
        updated_at=aware(m["updated_at"]),
        dial_started_at=None if started is None else aware(started),
        do_not_call=bool(m["do_not_call"]),
        tenant=tenant or tenant_from_row(m, "t_"),
    )


async def record_event(
    conn: AsyncConnection,
    rid: int,
    kind: str,
    detail: Mapping[str, Any],
    now: datetime,
    call_sid: str | None = None,
) -> None:
    await conn.execute(
        reminder_events.insert().values(
            reminder_id=rid,
            kind=kind,
            detail_json=json.dumps(dict(detail), default=str),
            call_sid=call_sid,
            created_at=now,
        )
    )


class ReminderQueue:
    """The claims of one worker (``worker_id``) on the reminders table."""

    def __init__(self, engine: AsyncEngine, worker_id: str, clock: Callable[[], datetime]) -> None:
        self.engine = engine
        self.worker_id = worker_id
        self.clock = clock
        self.pg = engine.dialect.name == "postgresql"
        # Single-statement work needs no BEGIN/COMMIT round trips: each statement is atomic.
        self.auto = engine.execution_options(isolation_level="AUTOCOMMIT")
        self._tenants: dict[int, tuple[float, Tenant]] = {}

    # -- taking ----------------------------------------------------------------------------

    async def claim(self, now: datetime, lease: timedelta) -> QueuedReminder | None:
        """Take one due reminder for this worker, atomically; None if nothing is due."""
        free = sa.or_(reminders.c.lease_until.is_(None), reminders.c.lease_until < now)
        cond = (reminders.c.status == "pending", reminders.c.next_attempt_at <= now, free)
        due = (
            sa.select(reminders.c.id)
            .where(*cond)
            .order_by(reminders.c.next_attempt_at, reminders.c.id)
            .limit(1)
        )
        async with self.auto.connect() as conn:
            row = (
                await conn.execute(
                    self._take(due, cond).values(claimed_by=self.worker_id, lease_until=now + lease)
                )
            ).first()
        if row is None:
            return None
        return queued_from(row._mapping, await self.tenant(int(row.tenant_id)))

    async def claim_stale(self, now: datetime, lease: timedelta) -> list[QueuedReminder]:
        """Take up to 20 ``dialing`` reminders without a CallSid whose lease ran out."""
        cond = (
            reminders.c.status == "dialing",
            reminders.c.call_sid.is_(None),
            reminders.c.lease_until < now,
        )
        stale = sa.select(reminders.c.id).where(*cond).order_by(reminders.c.id).limit(20)
        async with self.auto.connect() as conn:
            taken = (
                await conn.execute(
                    self._take(stale, cond).values(
                        claimed_by=self.worker_id, lease_until=now + lease
                    )
                )
            ).all()
        return [queued_from(m._mapping, await self.tenant(int(m.tenant_id))) for m in taken]

    async def claim_now(
        self, reminder_id: int, now: datetime, lease: timedelta
    ) -> tuple[QueuedReminder | None, bool]:
        """Take this reminder whatever its schedule, if no one holds it and its status is
        REDIALABLE: (the reminder as it now is, None if there is none; whether it was taken)."""
        free = sa.or_(reminders.c.lease_until.is_(None), reminders.c.lease_until < now)
        async with self.engine.begin() as conn:
            rid = (
                await conn.execute(
                    reminders.update()
                    .where(reminders.c.id == reminder_id, reminders.c.status.in_(REDIALABLE), free)
                    .values(
                        status="pending",
                        call_sid=None,
                        claimed_by=self.worker_id,
                        lease_until=now + lease,
                        next_attempt_at=now,
                    )
                    .returning(reminders.c.id)
                )
            ).scalar()
            current = (await conn.execute(ROWS.where(reminders.c.id == reminder_id))).first()
        if current is None:
            return None, False
        return queued_from(current._mapping), rid is not None

    async def tenant(self, tenant_id: int) -> Tenant:
        """A tenant's settings, cached for TENANT_TTL_S (a change applies within that)."""
        loop = asyncio.get_running_loop()
        cached = self._tenants.get(tenant_id)
        if cached is not None and loop.time() - cached[0] < TENANT_TTL_S:
            return cached[1]
        async with self.engine.connect() as conn:
            m = (
                (await conn.execute(sa.select(*_TENANT_COLUMNS).where(tenants.c.id == tenant_id)))
                .one()
                ._mapping
            )
        tenant = tenant_from_row(m, "t_")
        self._tenants[tenant_id] = (loop.time(), tenant)
        return tenant

    def _take(self, due: sa.Select[Any], cond: tuple[Any, ...]) -> sa.Update:
        """UPDATE of the rows ``due`` selects, atomically, RETURNING their ids (``cond`` is
        checked again on the row being updated).

        PostgreSQL: the rows are locked with FOR UPDATE SKIP LOCKED in a CTE, which runs once
        (as an ``IN (subquery)`` the planner may re-run it per row and take more than the LIMIT).
        SQLite: one statement; SQLite lets one writer in at a time.
        """
        if self.pg:
            picked = due.with_for_update(skip_locked=True).cte("picked")
            return (
                reminders.update()
                .where(reminders.c.id == picked.c.id, *cond)
                .returning(*_REMINDER_COLUMNS)
            )
        return (
            reminders.update()
            .where(reminders.c.id.in_(due.scalar_subquery()), *cond)
            .returning(*_REMINDER_COLUMNS)
        )

    # -- holding -----------------------------------------------------------------------------

    def mine(self, r: QueuedReminder, *statuses: str) -> tuple[Any, ...]:
        """The reminder, still held by this worker, in one of ``statuses``, without a CallSid."""
        return (
            reminders.c.id == r.id,
            reminders.c.claimed_by == self.worker_id,
            reminders.c.status.in_(statuses),
            reminders.c.call_sid.is_(None),
        )

    async def hold(self, r: QueuedReminder, until: datetime) -> None:
        """Keep a claimed (still ``pending``) reminder until then."""
        async with self.auto.connect() as conn:
            done = await conn.execute(
                reminders.update().where(*self.mine(r, "pending")).values(lease_until=until)
            )
        if not done.rowcount:
            raise LostClaim(r.id)

    async def mark_dialing(self, r: QueuedReminder, lease: datetime) -> None:
        """The point of no return, written before any request: this reminder may ring now."""
        now = self.clock()
        async with self.engine.begin() as conn:
            done = await conn.execute(
                reminders.update()
                # The do-not-call list is checked at the claim and again here, moments before
                # the request, so a number added meanwhile is not rung either.
                .where(*self.mine(r, "pending"), ~ON_DO_NOT_CALL)
                .values(
                    status="dialing",
                    attempts=reminders.c.attempts + 1,
                    dial_started_at=now,
                    lease_until=lease,
                    next_attempt_at=None,
                    outcome=None,
                    answered_by=None,
                    last_error=None,
                    updated_at=now,
                )
            )
            if not done.rowcount:
                listed = await conn.execute(
                    sa.select(ON_DO_NOT_CALL.label("listed")).where(reminders.c.id == r.id)
                )
                raise NowOnDoNotCall(r.id) if listed.scalar() else LostClaim(r.id)
            await record_event(conn, r.id, "dialing", {"attempt": r.attempts + 1}, now)

    async def extend(self, r: QueuedReminder, lease: datetime) -> None:
        """Keep a ``dialing`` reminder until ``lease``."""
        async with self.auto.connect() as conn:
            done = await conn.execute(
                reminders.update().where(*self.mine(r, "dialing")).values(lease_until=lease)
            )
        if not done.rowcount:
            raise LostClaim(r.id)

    # -- giving back -------------------------------------------------------------------------

    async def release(
        self,
        r: QueuedReminder,
        kind: str,
        detail: Mapping[str, Any],
        *,
        statuses: tuple[str, ...] = ("pending",),
        **values: Any,
    ) -> bool:
        """Drop the claim, setting ``values``, and record event ``kind``; False if it was not
        ours any more (nothing changed)."""
        now = self.clock()
        async with self.engine.begin() as conn:
            done = await conn.execute(
                reminders.update().where(*self.mine(r, *statuses)).values(claimed_by=None, **values)
            )
            if done.rowcount:
                await record_event(conn, r.id, kind, detail, now)
            return bool(done.rowcount)

    async def fail(
        self, r: QueuedReminder, reason: str, kind: str, detail: Mapping[str, Any] | None = None
    ) -> None:
        """The reminder fails for good, with ``reason`` in ``last_error``."""
        await self.release(
            r,
            kind,
            {"reason": reason, **(detail or {})},
            statuses=("pending", "dialing"),
            status="failed",
            outcome="failed",
            last_error=reason,
            lease_until=None,
            updated_at=self.clock(),
        )

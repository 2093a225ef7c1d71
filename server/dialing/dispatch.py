"""The dispatcher: plans, claims and dials due reminders under the account's CPS budget.

Any number of workers (``voiceprompt worker``, or one inside ``serve``) share one database:

- Planning. A new reminder (``next_attempt_at`` NULL) gets its first call time from
  server/dialing/schedule.py; a no_answer/busy one with attempts left goes back to ``pending`` with its
  retry time. Conditional updates, so two workers planning one row change it once.
- Claiming. One statement takes a due reminder for this worker for a lease: PostgreSQL
  ``WITH picked AS (SELECT ... FOR UPDATE SKIP LOCKED) UPDATE ...``, SQLite a single
  conditional UPDATE (it runs one writer at a time). A claimed reminder stays ``pending``: a
  worker that dies holding one has sent nothing, and its lease simply runs out.
- Dialing. Safety checks (server/dialing/dialer.py), calling hours, the number's spacing (reserved
  atomically, across tenants), a send slot of the CPS budget; ``dialing`` is written BEFORE the
  request and the CallSid after it.
- Reconciling. ``dialing`` with no CallSid once its lease has run out means a worker died (or
  gave up) between the request and storing the answer. Twilio is asked for calls to that number
  since the dial started: exactly one is adopted, anything else goes to ``needs_review``. Such a
  reminder is never dialed again without a person deciding to.

The CPS budget (server/dialing/pacing.py) is one database row of evenly spaced send slots shared by all
workers; every ``calls.create`` request takes a slot, retries included. The number's spacing is
server/dialing/spacing.py; the worker process, server/dialing/worker.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import random
import socket
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from twilio.base.exceptions import TwilioException
from twilio.rest import Client

from server.db.schema import (
    do_not_call,
    reminder_events,
    reminders,
    tenants,
)
from server.dialing.apilog import ApiLog
from server.dialing.dialer import (
    DialOutcome,
    DialPolicy,
    DialRefused,
    DialResult,
    call_params,
    check_number,
    crash_point,
    find_calls,
    place_call,
)
from server.dialing.pacing import RateBudget
from server.dialing.schedule import (
    CallingPolicy,
    first_call_at,
    in_calling_hours,
    next_window_start,
    retry_at,
)
from server.dialing.spacing import NumberSpacing, Reservation
from server.dialing.twilio import ApiUnreachable, for_reminder, open_client
from server.errors import NotFound, ServerError
from server.keys import dispatcher_key, runtime_key
from server.settings import Settings
from server.tenants import Tenant, tenant_columns, tenant_from_row

__all__ = [
    "DispatchConfig",
    "DispatchError",
    "DispatchResult",
    "Dispatcher",
    "context",
]

log = logging.getLogger("voiceprompt.dispatch")

# After a 429 storm, Twilio being down or bad credentials: no call was placed; try again then.
RETRY_LATER = timedelta(minutes=1)
# A lease runs this much past the worst case of the request it covers.
LEASE_MARGIN = timedelta(seconds=2)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# Statuses `voiceprompt call` may dial from: nothing in flight, no decision by the callee
# (needs_review: a person has looked and decided to call again).
REDIALABLE = ("pending", "no_answer", "busy", "failed", "call_canceled", "needs_review")
RETRYABLE = ("no_answer", "busy")
TENANT_TTL_S = 30.0


class DispatchError(ServerError):
    status = 409


class LostClaim(Exception):
    """Another worker (or the reconciler) owns the reminder now; drop it."""


class NowOnDoNotCall(LostClaim):
    """The number went on the do-not-call list after the claim: nothing was sent."""


def utcnow() -> datetime:
    return datetime.now(UTC)


def _aware(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


@dataclass(frozen=True)
class DispatchConfig:
    lanes: int = 4  # reminders one worker dials at once (they share the CPS budget)
    poll_s: float = 1.0
    # A claimed reminder is marked dialing within moments (checks, a spacing upsert, a slot);
    # the lease only decides how soon another worker takes over from one that died.
    claim_lease: timedelta = timedelta(seconds=5)
    # Two list requests at most; None: four request timeouts.
    reconcile_lease: timedelta | None = None
    policy: DialPolicy = field(default_factory=DialPolicy)
    batch: int = 500
    purge_every_s: float = 3600.0


@dataclass(frozen=True)
class DispatchResult:
    """What one pass over one reminder did: dialed, failed, refused, rescheduled, postponed,
    unknown (left for reconciliation) or lost (another worker has it)."""

    reminder_id: int
    result: str
    detail: str = ""
    call_sid: str | None = None


@dataclass(frozen=True)
class _Row:
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
_ON_DO_NOT_CALL = sa.exists().where(
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
    _ON_DO_NOT_CALL.label("do_not_call"),
)
_ROWS = sa.select(*_REMINDER_COLUMNS, *_TENANT_COLUMNS).join(
    tenants, tenants.c.id == reminders.c.tenant_id
)


def _row(m: Mapping[Any, Any], tenant: Tenant | None = None) -> _Row:
    return _Row(
        id=int(m["id"]),
        to=str(m["to_number"]),
        appointment_at=_aware(m["appointment_at"]) or EPOCH,
        status=str(m["status"]),
        attempts=int(m["attempts"]),
        updated_at=_aware(m["updated_at"]) or EPOCH,
        dial_started_at=_aware(m["dial_started_at"]),
        do_not_call=bool(m["do_not_call"]),
        tenant=tenant or tenant_from_row(m, "t_"),
    )


async def _event(
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


class Dispatcher:
    def __init__(
        self,
        engine: AsyncEngine,
        settings: Settings,
        client: Client,
        *,
        worker_id: str | None = None,
        config: DispatchConfig | None = None,
        clock: Callable[[], datetime] = utcnow,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.engine = engine
        self.settings = settings
        self.client = client
        self.worker_id = worker_id or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.config = config or DispatchConfig()
        self.clock = clock
        self.rand = rand
        self.pg = engine.dialect.name == "postgresql"
        # Single-statement work needs no BEGIN/COMMIT round trips: each statement is atomic.
        self.auto = engine.execution_options(isolation_level="AUTOCOMMIT")
        self._tenants: dict[int, tuple[float, Tenant]] = {}
        self.spacing = NumberSpacing(engine)
        self.budget = RateBudget(
            engine, name=settings.twilio_account_sid or "default", cps=settings.cps
        )
        self.api_log = ApiLog(engine, secrets=[settings.twilio_auth_token or ""])
        self.reconcile_lease = self.config.reconcile_lease or timedelta(
            seconds=4 * settings.twilio_timeout
        )
        self._last_purge = float("-inf")

    # -- planning ---------------------------------------------------------------------------

    async def plan(self, now: datetime) -> int:
        """Give new reminders their first call time; fail those too late to call at all."""
        async with self.engine.connect() as conn:
            rows = [
                _row(r._mapping)
                for r in await conn.execute(
                    _ROWS.where(
                        reminders.c.status == "pending", reminders.c.next_attempt_at.is_(None)
                    ).limit(self.config.batch)
                )
            ]
        if not rows:
            return 0
        planned: list[dict[str, Any]] = []
        too_late: list[_Row] = []
        for r in rows:
            at = first_call_at(r.appointment_at, now, r.tenant.calling_policy())
            if at is None:
                too_late.append(r)
            else:
                planned.append({"rid": r.id, "at": at})
        async with self.engine.begin() as conn:
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
                    await _event(conn, r.id, "too_late", {"reason": reason}, now)
        return len(rows)

    async def requeue_retries(self, now: datetime) -> int:
        """No answer or busy with attempts left: back to pending at the retry time.

        ``next_attempt_at`` is cleared when a call starts, so NULL here means "not decided";
        a reminder with no retry possible gets the decision time, and is passed over after.
        """
        # Not while a worker still holds the call that ended (it stores the CallSid last).
        free = sa.or_(reminders.c.claimed_by.is_(None), reminders.c.lease_until < now)
        async with self.engine.connect() as conn:
            rows = [
                _row(r._mapping)
                for r in await conn.execute(
                    _ROWS.where(
                        reminders.c.status.in_(RETRYABLE),
                        reminders.c.next_attempt_at.is_(None),
                        reminders.c.attempts < tenants.c.max_attempts,
                        free,
                    ).limit(self.config.batch)
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
            async with self.engine.begin() as conn:
                if at is None:
                    done = await conn.execute(
                        reminders.update().where(*same).values(next_attempt_at=now)
                    )
                    if done.rowcount:
                        await _event(conn, r.id, "no_retry", {"after": r.status}, now)
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
                    await _event(conn, r.id, "retry_scheduled", detail, now)
        return count

    # -- claiming -----------------------------------------------------------------------------

    async def claim(self, now: datetime) -> _Row | None:
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
                    self._take(due, cond).values(
                        claimed_by=self.worker_id, lease_until=now + self.config.claim_lease
                    )
                )
            ).first()
        if row is None:
            return None
        return _row(row._mapping, await self._tenant(int(row.tenant_id)))

    async def _tenant(self, tenant_id: int) -> Tenant:
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

    def _mine(self, r: _Row, *statuses: str) -> tuple[Any, ...]:
        return (
            reminders.c.id == r.id,
            reminders.c.claimed_by == self.worker_id,
            reminders.c.status.in_(statuses),
            reminders.c.call_sid.is_(None),
        )

    async def _release(
        self,
        r: _Row,
        kind: str,
        detail: Mapping[str, Any],
        *,
        statuses: tuple[str, ...] = ("pending",),
        **values: Any,
    ) -> bool:
        now = self.clock()
        async with self.engine.begin() as conn:
            done = await conn.execute(
                reminders.update()
                .where(*self._mine(r, *statuses))
                .values(claimed_by=None, **values)
            )
            if done.rowcount:
                await _event(conn, r.id, kind, detail, now)
            return bool(done.rowcount)

    async def _fail(
        self, r: _Row, reason: str, kind: str, detail: Mapping[str, Any] | None = None
    ) -> None:
        await self._release(
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

    async def _reschedule(
        self, r: _Row, at: datetime, why: str, policy: CallingPolicy
    ) -> DispatchResult:
        at = next_window_start(at, policy)
        if at >= r.appointment_at:
            reason = f"{why}, and no calling hours are left before the appointment"
            await self._fail(r, reason, "too_late")
            return DispatchResult(r.id, "failed", reason)
        await self._release(
            r,
            "rescheduled",
            {"reason": why, "at": at.isoformat()},
            next_attempt_at=at,
            lease_until=None,
        )
        return DispatchResult(r.id, "rescheduled", f"{why}; next try {at.isoformat()}")

    # -- dialing ------------------------------------------------------------------------------

    async def dial_claimed(self, r: _Row, *, manual: bool = False) -> DispatchResult:
        """Check, pace and dial one claimed reminder; ``manual`` (``voiceprompt call``) skips
        the fire-after time and calling hours, never the safety checks or the spacing."""
        with for_reminder(r.id):
            return await self._dial(r, manual=manual)

    async def _dial(self, r: _Row, *, manual: bool) -> DispatchResult:
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
            await self._fail(r, str(exc), "refused", {"check": exc.reason})
            return DispatchResult(r.id, "refused", str(exc))
        if not manual:
            if r.appointment_at <= now:
                reason = "the appointment time has passed"
                await self._fail(r, reason, "too_late")
                return DispatchResult(r.id, "failed", reason)
            if not in_calling_hours(now, policy):
                return await self._reschedule(r, now, "outside calling hours", policy)
        held = await self.spacing.reserve(r.to, f"{r.id}:{r.attempts}", now, policy.min_spacing)
        if isinstance(held, datetime):
            why = f"{r.to} was called less than {policy.min_spacing} ago"
            if manual:
                await self._release(r, "spacing", {"until": held.isoformat()}, lease_until=None)
                raise DispatchError(f"{why}; it may be called again from {held.isoformat()}")
            return await self._reschedule(r, held, why, policy)
        try:
            result = await self._send(r, params, now)
        except NowOnDoNotCall:
            await self.spacing.release(held)
            reason = f"{r.to} is on tenant {r.tenant.slug!r}'s do-not-call list"
            await self._fail(r, reason, "refused", {"check": "do_not_call"})
            return DispatchResult(r.id, "refused", reason)
        except LostClaim:
            await self.spacing.release(held)
            return DispatchResult(r.id, "lost", "another worker holds this reminder")
        return await self._settle(r, result, held)

    async def _send(self, r: _Row, params: Mapping[str, Any], started: datetime) -> DialResult:
        timeout = timedelta(seconds=self.settings.twilio_timeout)
        lease: datetime | None = None

        async def hold(wait: float) -> None:
            nonlocal lease
            need = self.clock() + timedelta(seconds=wait) + timeout + LEASE_MARGIN
            if lease is None:
                await self._mark_dialing(r, need)
                lease = need
            elif need > lease:
                # Extend by a whole request more, so that a late wake rarely needs a write.
                lease = need + timeout
                await self._extend(r, lease)

        async def keep_claim(wait: float) -> None:
            # Slots far ahead (a low CPS, many lanes): hold the claim until then.
            if lease is None and wait > self.config.claim_lease.total_seconds() / 2:
                until = self.clock() + timedelta(seconds=wait) + self.config.claim_lease
                async with self.auto.connect() as conn:
                    done = await conn.execute(
                        reminders.update()
                        .where(*self._mine(r, "pending"))
                        .values(lease_until=until)
                    )
                if not done.rowcount:
                    raise LostClaim(r.id)

        async def gate(attempt: int) -> None:
            await self.budget.wait_turn(hold, keep_claim)
            if attempt == 1:
                crash_point(self.settings, "before_request", self.rand)

        return await place_call(
            self.client,
            params,
            settings=self.settings,
            started_at=started,
            gate=gate,
            policy=self.config.policy,
            rand=self.rand,
        )

    async def _mark_dialing(self, r: _Row, lease: datetime) -> None:
        """The point of no return, written before any request: this reminder may ring now."""
        now = self.clock()
        async with self.engine.begin() as conn:
            done = await conn.execute(
                reminders.update()
                # The do-not-call list is checked at the claim and again here, moments before
                # the request, so a number added meanwhile is not rung either.
                .where(*self._mine(r, "pending"), ~_ON_DO_NOT_CALL)
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
                    sa.select(_ON_DO_NOT_CALL.label("listed")).where(reminders.c.id == r.id)
                )
                raise NowOnDoNotCall(r.id) if listed.scalar() else LostClaim(r.id)
            await _event(conn, r.id, "dialing", {"attempt": r.attempts + 1}, now)

    async def _extend(self, r: _Row, lease: datetime) -> None:
        async with self.auto.connect() as conn:
            done = await conn.execute(
                reminders.update().where(*self._mine(r, "dialing")).values(lease_until=lease)
            )
        if not done.rowcount:
            raise LostClaim(r.id)

    async def _settle(self, r: _Row, result: DialResult, held: Reservation) -> DispatchResult:
        now = self.clock()
        if result.outcome is DialOutcome.PLACED:
            detail = {
                "call_sid": result.call_sid,
                "twilio_status": result.call_status,
                "adopted": result.adopted,
                "requests": result.requests,
            }
            async with self.engine.begin() as conn:
                # The SID only where none is stored yet (a status callback or the reconciler may
                # have stored this same one first); our claim only if it is still ours.
                mine = reminders.c.claimed_by == self.worker_id
                await conn.execute(
                    reminders.update()
                    .where(reminders.c.id == r.id)
                    .values(
                        call_sid=sa.func.coalesce(reminders.c.call_sid, result.call_sid),
                        claimed_by=sa.case((mine, None), else_=reminders.c.claimed_by),
                        lease_until=sa.case((mine, None), else_=reminders.c.lease_until),
                    )
                )
                await _event(conn, r.id, "dialed", detail, now, call_sid=result.call_sid)
            return DispatchResult(r.id, "dialed", result.call_status or "", result.call_sid)
        if result.outcome is DialOutcome.FAILED:
            reason = result.reason or "Twilio refused the call"
            await self._fail(r, reason, "dial_failed", {"code": result.error_code})
            await self.spacing.release(held)
            return DispatchResult(r.id, "failed", reason)
        if result.outcome is DialOutcome.RETRY_LATER:
            at = now + RETRY_LATER
            await self._release(
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
        await self._release(
            r,
            "dial_unknown",
            {"reason": result.reason},
            statuses=("dialing",),
            lease_until=now,
            last_error=result.reason,
        )
        return DispatchResult(r.id, "unknown", result.reason or "")

    # -- reconciliation -----------------------------------------------------------------------

    async def reconcile(self, now: datetime) -> int:
        """Settle ``dialing`` reminders without a CallSid whose lease ran out."""
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
                        claimed_by=self.worker_id, lease_until=now + self.reconcile_lease
                    )
                )
            ).all()
        rows = [_row(m._mapping, await self._tenant(int(m.tenant_id))) for m in taken]
        for r in rows:
            with for_reminder(r.id):
                await self._reconcile_one(r, now)
        return len(rows)

    async def _reconcile_one(self, r: _Row, now: datetime) -> None:
        since = r.dial_started_at or now - timedelta(days=1)
        try:
            calls = await find_calls(self.client, r.to, r.tenant.caller_id, since, self.clock())
        except (TwilioException, ApiUnreachable) as exc:
            log.warning("reconciling reminder %s: cannot ask Twilio: %s", r.id, exc)
            # Try again in a while; it stays "dialing" without a SID, never dialed again.
            await self._release(
                r,
                "reconcile_failed",
                {"reason": str(exc)},
                statuses=("dialing",),
                lease_until=now + RETRY_LATER,
            )
            return
        if len(calls) == 1:
            call = calls[0]
            sid = str(call.sid)
            async with self.engine.begin() as conn:
                done = await conn.execute(
                    reminders.update()
                    .where(*self._mine(r, "dialing"))
                    .values(call_sid=sid, claimed_by=None, lease_until=None)
                )
                if done.rowcount:
                    detail = {"call_sid": sid, "twilio_status": str(call.status)}
                    await _event(conn, r.id, "adopted", detail, now, call_sid=sid)
            log.info("reminder %s: adopted call %s found at Twilio", r.id, sid)
            return
        sids = sorted(str(c.sid) for c in calls)
        reason = (
            f"Twilio has {len(sids)} calls to {r.to} since the dial started ({', '.join(sids)})"
            if sids
            else f"the dial started at {since.isoformat()} but Twilio has no call to {r.to}; "
            "the worker may have died before sending"
        )
        await self._release(
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

    # -- manual dial and the loop -------------------------------------------------------------

    async def dial_now(self, reminder_id: int) -> DispatchResult:
        """`voiceprompt call`: claim this reminder whatever its schedule and dial it."""
        now = self.clock()
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
                        lease_until=now + self.config.claim_lease,
                        next_attempt_at=now,
                    )
                    .returning(reminders.c.id)
                )
            ).scalar()
            current = (await conn.execute(_ROWS.where(reminders.c.id == reminder_id))).first()
        if current is None:
            raise NotFound(f"no reminder {reminder_id}")
        r = _row(current._mapping)
        if rid is None:
            if r.status == "pending":
                raise DispatchError(f"reminder {reminder_id} is being dialed by a worker")
            raise DispatchError(
                f"reminder {reminder_id} is {r.status}; only {', '.join(REDIALABLE)} "
                "reminders are dialed"
            )
        await self.budget.ensure()
        return await self.dial_claimed(r, manual=True)

    def warm_up(self) -> None:
        """Do the slow first-time work now (twilio-python imports its resources lazily,
        phonenumbers loads a region's metadata on first use): done mid-dial, it would hold the
        event loop past other lanes' send slots."""
        _ = self.client.calls
        check_number(replace(self.settings, env="production"), "+14155550100")

    async def housekeeping(self, now: datetime) -> None:
        await self.plan(now)
        await self.requeue_retries(now)
        await self.reconcile(now)
        loop = asyncio.get_running_loop()
        if loop.time() - self._last_purge >= self.config.purge_every_s:
            self._last_purge = loop.time()
            gone = await self.api_log.purge(now, self.settings.api_log_days)
            if gone:
                log.info(
                    "purged %s API log entries older than %s days", gone, self.settings.api_log_days
                )

    async def run(self, stop: asyncio.Event | None = None, *, once: bool = False) -> Counter[str]:
        """Dial until ``stop`` is set; ``once``: plan, dial everything due now, and return."""
        stop = stop or asyncio.Event()
        counts: Counter[str] = Counter()
        self.warm_up()
        await self.budget.ensure()
        await self.housekeeping(self.clock())

        async def lane() -> None:
            while not stop.is_set():
                try:
                    claimed = await self.claim(self.clock())
                    if claimed is None:
                        if once:
                            return
                        await _pause(stop, self.config.poll_s)
                        continue
                    counts[(await self.dial_claimed(claimed)).result] += 1
                except Exception:  # noqa: BLE001 - one bad reminder must not stop the worker
                    log.exception("worker %s: dialing failed", self.worker_id)
                    await _pause(stop, self.config.poll_s)

        async def keeper() -> None:
            while not stop.is_set():
                await _pause(stop, self.config.poll_s)
                try:
                    await self.housekeeping(self.clock())
                except Exception:  # noqa: BLE001
                    log.exception("worker %s: housekeeping failed", self.worker_id)

        lanes = [lane() for _ in range(max(1, self.config.lanes))]
        await asyncio.gather(*lanes, *([] if once else [keeper()]))
        return counts


async def _pause(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


def context(settings: Settings) -> Callable[[web.Application], AsyncIterator[None]]:
    """One dispatcher inside the web app (``serve`` without ``--no-worker``), for
    ``app.cleanup_ctx`` after the runtime's context."""

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        if not (settings.twilio_account_sid and settings.twilio_auth_token):
            log.warning("no dispatcher: TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN are not set")
            yield
            return
        engine = app[runtime_key].engine
        async with open_client(
            settings, ApiLog(engine, secrets=[settings.twilio_auth_token])
        ) as client:
            dispatcher = Dispatcher(engine, settings, client)
            app[dispatcher_key] = dispatcher
            stop = asyncio.Event()
            task = asyncio.create_task(dispatcher.run(stop))
            try:
                yield
            finally:
                stop.set()
                try:
                    await asyncio.wait_for(task, settings.twilio_timeout * 2 + 5)
                except TimeoutError:
                    task.cancel()
                    log.warning("dispatcher did not stop in time; cancelled")

    return ctx

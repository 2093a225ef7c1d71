"""The dispatcher: plans, claims and dials due reminders under the account's CPS budget.

Any number of workers (``voiceprompt worker``, or one inside ``serve``) share one database. Each
runs ``Dispatcher.run``: a few lanes that claim and dial, and a keeper that plans, requeues and
reconciles. The steps live in modules of their own:

- Planning (server/dialing/planning.py): first call times, retries back to ``pending``.
- Claiming (server/dialing/queue.py): one statement takes a due reminder for a lease; every
  statement on a held reminder names its holder.
- Dialing (server/dialing/attempt.py): checks, calling hours, the number's spacing, a send slot
  of the CPS budget; ``dialing`` is written BEFORE the request and the CallSid after it.
- Reconciling (server/dialing/reconcile.py): ``dialing`` without a CallSid once its lease ran
  out is asked of Twilio, adopted or sent to ``needs_review``, never dialed again blindly.

Twilio is reached through ``CallsApi`` (server/dialing/twilio.py); the worker process is
server/dialing/worker.py; ``context(settings)`` runs one dispatcher inside the web app.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import socket
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncEngine

from server.dialing import planning
from server.dialing.apilog import ApiLog
from server.dialing.attempt import Attempts, DispatchError, DispatchResult, Prepare
from server.dialing.dialer import DialPolicy, check_number
from server.dialing.pacing import RateBudget
from server.dialing.queue import REDIALABLE, QueuedReminder, ReminderQueue
from server.dialing.reconcile import Reconciler
from server.dialing.spacing import NumberSpacing
from server.dialing.twilio import CallsApi, for_reminder, open_client
from server.errors import NotFound
from server.keys import dispatcher_key, runtime_key
from server.settings import Settings
from voicebank.sql import utcnow

__all__ = [
    "DispatchConfig",
    "DispatchError",
    "DispatchResult",
    "Dispatcher",
    "context",
]

log = logging.getLogger("voiceprompt.dispatch")


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


class Dispatcher:
    def __init__(
        self,
        engine: AsyncEngine,
        settings: Settings,
        calls: CallsApi,
        *,
        worker_id: str | None = None,
        config: DispatchConfig | None = None,
        clock: Callable[[], datetime] = utcnow,
        rand: Callable[[], float] = random.random,
        prepare: Prepare | None = None,
    ) -> None:
        self.engine = engine
        self.settings = settings
        self.calls = calls
        self.worker_id = worker_id or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.config = config or DispatchConfig()
        self.clock = clock
        self.queue = ReminderQueue(engine, self.worker_id, clock)
        self.spacing = NumberSpacing(engine)
        self.budget = RateBudget(
            engine, name=settings.twilio_account_sid or "default", cps=settings.cps
        )
        self.api_log = ApiLog(engine, secrets=[settings.twilio_auth_token or ""])
        self.attempts = Attempts(
            self.queue,
            settings,
            calls,
            spacing=self.spacing,
            budget=self.budget,
            claim_lease=self.config.claim_lease,
            policy=self.config.policy,
            clock=clock,
            rand=rand,
            prepare=prepare,
        )
        self.reconciler = Reconciler(
            self.queue,
            calls,
            lease=self.config.reconcile_lease or timedelta(seconds=4 * settings.twilio_timeout),
            clock=clock,
        )
        self._last_purge = float("-inf")

    # -- the steps ------------------------------------------------------------------------------

    async def plan(self, now: datetime) -> int:
        return await planning.plan(self.engine, now, batch=self.config.batch)

    async def requeue_retries(self, now: datetime) -> int:
        return await planning.requeue_retries(self.engine, now, batch=self.config.batch)

    async def claim(self, now: datetime) -> QueuedReminder | None:
        return await self.queue.claim(now, self.config.claim_lease)

    async def dial_claimed(self, r: QueuedReminder, *, manual: bool = False) -> DispatchResult:
        """Check, pace and dial one claimed reminder (server/dialing/attempt.py)."""
        with for_reminder(r.id):
            return await self.attempts.dial(r, manual=manual)

    async def reconcile(self, now: datetime) -> int:
        return await self.reconciler.reconcile(now)

    # -- manual dial and the loop -------------------------------------------------------------

    async def dial_now(self, reminder_id: int) -> DispatchResult:
        """`voiceprompt call`: claim this reminder whatever its schedule and dial it."""
        now = self.clock()
        r, taken = await self.queue.claim_now(reminder_id, now, self.config.claim_lease)
        if r is None:
            raise NotFound(f"no reminder {reminder_id}")
        if not taken:
            if r.status == "pending":
                raise DispatchError(f"reminder {reminder_id} is being dialed by a worker")
            raise DispatchError(
                f"reminder {reminder_id} is {r.status}; only {', '.join(REDIALABLE)} "
                "reminders are dialed"
            )
        await self.budget.ensure()
        return await self.dial_claimed(r, manual=True)

    def warm_up(self) -> None:
        """Do the slow first-time work now (phonenumbers loads a region's metadata on first
        use): done mid-dial, it would hold the event loop past other lanes' send slots."""
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


def context(
    settings: Settings, prepare: Callable[[web.Application], Prepare] | None = None
) -> Callable[[web.Application], AsyncIterator[None]]:
    """One dispatcher inside the web app (``serve`` without ``--no-worker``), for
    ``app.cleanup_ctx`` after the runtime's context; ``prepare(app)`` gives the hook that
    prepares a call's answers before it is dialed (app.py passes the calls package's)."""

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        if not (settings.twilio_account_sid and settings.twilio_auth_token):
            log.warning("no dispatcher: TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN are not set")
            yield
            return
        engine = app[runtime_key].engine
        async with open_client(
            settings, ApiLog(engine, secrets=[settings.twilio_auth_token])
        ) as calls:
            hook = prepare(app) if prepare is not None else None
            dispatcher = Dispatcher(engine, settings, calls, prepare=hook)
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

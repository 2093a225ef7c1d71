"""Write-behind for call events: a webhook answers at once, its record follows.

A webhook must answer within a second whatever the database does, and must never lose what
happened. Events that are not needed to build the answer go here; a background task writes them
in order and keeps them (retrying) while the database is unavailable.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.exc import DataError, IntegrityError

from server.reminders import ReminderStore

log = logging.getLogger("voiceprompt.outbox")
RETRY_S = 1.0
# Events per transaction: enough to keep up with a busy server, few enough that a batch does not
# hold SQLite's write lock for long (a keypress is written directly, within a budget).
BATCH = 50
# How long the writer waits for more events to join a transaction. A transaction per event
# cost the database path more than the answer it records (~1 ms of the event loop's time per
# answer on SQLite); 50 ms later in the table is nothing to anyone reading it.
LINGER_S = 0.05
# Failures no retry can cure (the reminder does not exist, a value the column refuses): such an
# event is logged and dropped, or it would hold up every event queued behind it for ever.
PERMANENT = (IntegrityError, DataError)


@dataclass(frozen=True)
class PendingEvent:
    reminder_id: int
    kind: str
    detail: dict[str, Any] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)


class Outbox:
    def __init__(self, store: ReminderStore) -> None:
        self.store = store
        self._queue: deque[PendingEvent] = deque()
        self._wake = asyncio.Event()
        self._now = asyncio.Event()  # drain(): write without lingering
        self._idle = asyncio.Event()
        self._idle.set()

    def __len__(self) -> int:
        return len(self._queue)

    def add(
        self, reminder_id: int, kind: str, detail: dict[str, Any] | None = None, **options: Any
    ) -> None:
        self._queue.append(PendingEvent(reminder_id, kind, detail or {}, options))
        self._idle.clear()
        self._wake.set()

    async def flush(self) -> None:
        """Write everything queued; stops at the first failure that may pass and keeps the rest.

        Events go in batches, one transaction and a few statements each: a transaction per event
        cannot keep up with calls coming in, and the queue would only grow.
        """
        while self._queue:
            batch = list(itertools.islice(self._queue, BATCH))
            try:
                await self.store.record_many(
                    [(e.reminder_id, e.kind, e.detail, e.options) for e in batch]
                )
            except PERMANENT:
                # A repeated callback or a reminder that does not exist: find it one by one.
                await self._write_each(len(batch))
            else:
                for _ in batch:
                    self._queue.popleft()
        self._idle.set()

    async def _write_each(self, count: int) -> None:
        for _ in range(count):
            item = self._queue[0]
            try:
                await self.store.record(item.reminder_id, item.kind, item.detail, **item.options)
            except PERMANENT as exc:
                log.error("dropped %s event of reminder %s: %s", item.kind, item.reminder_id, exc)
            self._queue.popleft()

    async def drain(self, timeout: float = 5.0) -> None:
        """Wait until everything queued so far is written (tests, shutdown)."""
        self._now.set()
        self._wake.set()
        await asyncio.wait_for(self._idle.wait(), timeout)

    async def run(self) -> None:
        while True:
            await self._wake.wait()
            if len(self._queue) < BATCH:
                # asyncio.timeout, not wait_for: 3.11's wait_for can swallow a cancellation that
                # arrives as the wait ends, and the shutdown would hang on this task.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(LINGER_S):
                        await self._now.wait()
            self._wake.clear()
            self._now.clear()
            try:
                await self.flush()
            except Exception as exc:  # the database is down: keep the events, try again
                log.warning("cannot write %d call events yet (%s); retrying", len(self), exc)
                await asyncio.sleep(RETRY_S)
                self._wake.set()


@asynccontextmanager
async def running(outbox: Outbox) -> AsyncIterator[None]:
    task = asyncio.create_task(outbox.run())
    try:
        yield
    finally:
        # The running task writes what is left: a second flush beside it would write its current
        # event twice and drop another, and cancelling it mid-write can leave a transaction open.
        try:
            await outbox.drain(timeout=5)
        except Exception as exc:
            log.error("lost %d call events at shutdown: %r", len(outbox), exc)
        task.cancel()
        await asyncio.wait([task], timeout=5)

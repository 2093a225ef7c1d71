"""Which reminders this process has just written, for pages that follow a reminder live.

The console's event stream used to read the reminder and all its events from the database every
300 ms per open page. Writes made in this process (webhooks, the outbox) now wake its streams at
once; the database is still polled, more slowly, for writes made by other processes (another
web process behind the load balancer, a separate worker).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

__all__ = ["Changes", "Watch"]


class Watch:
    """One page's interest in one reminder, held while the page is open: a write that lands
    while the page is reading the database is not missed (the next ``wait`` returns at once)."""

    def __init__(self) -> None:
        self._written = asyncio.Event()

    def set(self) -> None:
        self._written.set()

    async def wait(self, timeout: float) -> bool:
        """Until this process writes the reminder (True) or ``timeout`` seconds pass."""
        try:
            async with asyncio.timeout(timeout):
                await self._written.wait()
            return True
        except TimeoutError:
            return False
        finally:
            self._written.clear()


class Changes:
    def __init__(self) -> None:
        self._watches: dict[int, set[Watch]] = {}

    def notify(self, reminder_ids: Iterable[int]) -> None:
        """Wake every page watching these reminders (call once the write is committed)."""
        for rid in set(reminder_ids):
            for watch in self._watches.get(rid, ()):
                watch.set()

    @contextmanager
    def watch(self, reminder_id: int) -> Iterator[Watch]:
        watch = Watch()
        watches = self._watches.setdefault(reminder_id, set())
        watches.add(watch)
        try:
            yield watch
        finally:
            watches.discard(watch)
            if not watches:
                self._watches.pop(reminder_id, None)

    def __len__(self) -> int:
        """Reminders being watched (0 once every page has gone)."""
        return len(self._watches)

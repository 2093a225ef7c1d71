"""The clip guard: which clips of a plan a webhook must speak instead of play.

It answers from memory: the latest checks (loaded from the check store, refreshed every
``RELOAD_S`` and whenever the periodic check finishes) decide; a clip whose check is missing or
older than ``max_age`` is checked afresh, all of them at once, for at most ``budget_s`` (300 ms),
so a webhook still answers within its second. A fresh check that does not finish in time, or
gets no answer at all, is inconclusive and the clip plays (a good clip is never spoken because
the network was slow); its result still lands in the cache and the check store when it comes.
On a local folder the guard looks at the file instead (this server is what serves its URL).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

import aiohttp

from voicebank.catalogue import Catalogue
from voicebank.check_store import CheckStore, ClipStatus
from voicebank.checks import Checker, CheckResult, Target
from voicebank.sql import utcnow
from voicebank.storage.local import LocalStorage

log = logging.getLogger("voiceprompt.health")

BUDGET_S = 0.3  # a webhook waits this long for fresh checks, in total
RELOAD_S = 30.0  # the guard reloads the latest checks from the check store this often
LOCAL_TTL_S = 2.0  # a local file found intact is not looked at again for this long
FRESH_TIMEOUT_S = 5.0  # a fresh check may finish in the background up to this long


@dataclass(frozen=True)
class _Clip:
    key: str
    url: str
    size: int
    md5: str | None


class ClipGuard:
    """Which clips of a plan must be spoken instead of played (see the module docstring)."""

    def __init__(
        self,
        catalogue: Catalogue,
        session: aiohttp.ClientSession | None,
        *,
        max_age_s: float,
        budget_s: float = BUDGET_S,
        reload_s: float = RELOAD_S,
        now: Callable[[], datetime] = utcnow,
        clock: Callable[[], float] = time.monotonic,
        record: bool = True,
    ) -> None:
        self.catalogue = catalogue
        self.checks = CheckStore(catalogue.engine)
        self.record = record  # store fresh results in the catalogue (not in a dry run)
        self.local = isinstance(catalogue.storage, LocalStorage)
        self.max_age = timedelta(seconds=LOCAL_TTL_S if self.local else max_age_s)
        self.budget_s = budget_s
        self.reload_s = reload_s
        self.now = now
        self.clock = clock
        self._checker = (
            Checker(session, retries=0, timeout_s=FRESH_TIMEOUT_S) if session is not None else None
        )
        self._clips: dict[int, _Clip] = {}
        self._last: dict[int, CheckResult] = {}
        self._loaded_at = float("-inf")
        self._inflight: dict[int, asyncio.Task[CheckResult | None]] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    # -- what webhooks call ---------------------------------------------------------------
    async def unavailable(self, clip_ids: Iterable[str]) -> set[str]:
        """The clip ids (as in the plan) to speak with ``<Say>``; never raises, <= budget."""
        try:
            return await self._unavailable({int(c) for c in clip_ids if str(c).isdigit()})
        except Exception:  # the webhook must answer whatever happens here
            log.exception("clip guard failed; playing the clips unchecked")
            return set()

    def reason(self, clip_id: str) -> str:
        """Why a clip was found unavailable (for the alert), or ""."""
        last = self._last.get(int(clip_id)) if clip_id.isdigit() else None
        return last.reason if last is not None and not last.ok else ""

    def update(self, results: Iterable[CheckResult]) -> None:
        """Newer check results (the periodic check, a repair) replace what the guard knows."""
        for result in results:
            old = self._last.get(result.clip_id)
            if old is None or old.checked_at <= result.checked_at:
                self._last[result.clip_id] = result

    async def reload(self) -> None:
        """Reload the clips the guard knows, and their latest checks, from the catalogue."""
        self._loaded_at = self.clock()
        if self._clips:
            self._learn(await self.checks.clip_statuses(list(self._clips)))

    async def close(self) -> None:
        tasks = [*self._tasks, *self._inflight.values()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # -- inside ---------------------------------------------------------------------------
    def _learn(self, statuses: Iterable[ClipStatus]) -> None:
        for s in statuses:
            c = s.clip
            url = self.catalogue.storage.url(c.storage_key)
            self._clips[c.id] = _Clip(c.storage_key, url, c.size, s.md5)
            if s.check is not None:
                self.update([s.check])

    def _spawn(self, work: Callable[[], Awaitable[None]]) -> None:
        """Run ``work()`` in the background (made inside the task, so a cancel wastes nothing)."""

        async def run() -> None:
            try:
                await work()
            except Exception as exc:  # e.g. the database is down; the next reload retries
                log.warning("clip guard background work failed: %r", exc)

        task = asyncio.ensure_future(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _unavailable(self, ids: set[int]) -> set[str]:
        if not ids:
            return set()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.budget_s
        unknown = ids - self._clips.keys()
        if unknown:
            try:
                async with asyncio.timeout(self.budget_s):
                    self._learn(await self.checks.clip_statuses(unknown))
            except Exception as exc:  # the database is slow or down: judge what we know
                log.warning("clip guard cannot load clips %s: %r", sorted(unknown), exc)
        if self.clock() - self._loaded_at > self.reload_s:
            self._loaded_at = self.clock()
            self._spawn(self.reload)
        now = self.now()
        bad: set[int] = set()
        stale: list[int] = []
        for clip_id in ids & self._clips.keys():
            last = self._last.get(clip_id)
            if last is None or now - last.checked_at > self.max_age:
                stale.append(clip_id)
            elif not last.ok:
                bad.add(clip_id)
        if stale:
            probes = {clip_id: self._probe_task(clip_id) for clip_id in stale}
            remaining = deadline - loop.time()
            if remaining > 0:
                await asyncio.wait(probes.values(), timeout=remaining)
            for clip_id, task in probes.items():
                fresh = task.result() if task.done() and not task.cancelled() else None
                last = fresh or self._last.get(clip_id)
                # Inconclusive (no answer in time): a clip last seen failing stays spoken.
                if last is not None and not last.ok:
                    bad.add(clip_id)
        return {str(i) for i in bad}

    def _probe_task(self, clip_id: int) -> asyncio.Task[CheckResult | None]:
        task = self._inflight.get(clip_id)
        if task is None:
            task = asyncio.ensure_future(self._probe(clip_id))
            self._inflight[clip_id] = task
            task.add_done_callback(lambda _: self._inflight.pop(clip_id, None))
        return task

    async def _probe(self, clip_id: int) -> CheckResult | None:
        clip = self._clips[clip_id]
        try:
            result = await (
                self._probe_file(clip_id, clip) if self.local else self._fetch(clip_id, clip)
            )
        except Exception as exc:
            log.warning("fresh check of clip %s failed to run: %r", clip_id, exc)
            return None
        if result is not None:
            self.update([result])
        return result

    async def _probe_file(self, clip_id: int, clip: _Clip) -> CheckResult:
        info = await asyncio.to_thread(self.catalogue.storage.stat, clip.key)
        reason = ""
        if info is None:
            reason = "not found: the file is gone from the media folder"
        elif info.size != clip.size:
            reason = f"{info.size} bytes, expected {clip.size}"
        return CheckResult(clip_id, clip.url, not reason, None, reason, self.now())

    async def _fetch(self, clip_id: int, clip: _Clip) -> CheckResult | None:
        if self._checker is None:
            return None
        result = await self._checker.check(Target(clip_id, clip.url, clip.size, clip.md5))
        if result.status is None:
            return None  # no answer: says more about our network than about Twilio's fetch
        if self.record:
            self._spawn(lambda: self.checks.record([result]))
        return result

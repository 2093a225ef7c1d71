"""Clip health in the service: a periodic fetch check, ``GET /api/voicebank/health`` and the
``ClipGuard`` that webhooks ask before they ``<Play>`` a clip.

``setup(app, settings)`` adds all three (and ``POST /api/voicebank/slurp``) to an app whose
runtime context is already registered.

The guard answers from memory: the latest checks (loaded from the catalogue, refreshed every
``RELOAD_S`` and whenever the periodic check finishes) decide; a clip whose check is missing or
older than ``max_age`` is checked afresh, all of them at once, for at most ``budget_s`` (300 ms),
so a webhook still answers within its second. A fresh check that does not finish in time, or
gets no answer at all, is inconclusive and the clip plays (a good clip is never spoken because
the network was slow); its result still lands in the cache and the catalogue when it comes.
On a local folder the guard looks at the file instead (this server is what serves its URL).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import aiohttp
from aiohttp import web

from server import api_voicebank
from server.auth import authenticate
from server.keys import runtime_key
from server.settings import Settings
from voicebank.audit import check_clips
from voicebank.catalogue import Catalogue, ClipStatus
from voicebank.checks import Checker, CheckResult, Target, open_session
from voicebank.storage import LocalStorage

log = logging.getLogger("voiceprompt.health")

BUDGET_S = 0.3  # a webhook waits this long for fresh checks, in total
RELOAD_S = 30.0  # the guard reloads the latest checks from the catalogue this often
LOCAL_TTL_S = 2.0  # a local file found intact is not looked at again for this long
FRESH_TIMEOUT_S = 5.0  # a fresh check may finish in the background up to this long
FIRST_RUN_MAX_DELAY_S = 60.0  # the first periodic check waits min(interval, this) after start


def _now() -> datetime:
    return datetime.now(UTC)


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
        now: Callable[[], datetime] = _now,
        clock: Callable[[], float] = time.monotonic,
        record: bool = True,
    ) -> None:
        self.catalogue = catalogue
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
            self._learn(await self.catalogue.clip_statuses(list(self._clips)))

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
                    self._learn(await self.catalogue.clip_statuses(unknown))
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
            self._spawn(lambda: self.catalogue.record_checks([result]))
        return result


@dataclass(frozen=True)
class RunInfo:
    started_at: datetime
    finished_at: datetime
    checked: int
    failed: int


class Monitor:
    """The periodic check of every current clip; results go to the catalogue and the guard."""

    def __init__(
        self, catalogue: Catalogue, checker: Checker, guard: ClipGuard, interval_s: float
    ) -> None:
        self.catalogue = catalogue
        self.checker = checker
        self.guard = guard
        self.interval_s = interval_s
        self.last_run: RunInfo | None = None

    async def run_once(self) -> RunInfo:
        started = _now()
        records = await self.catalogue.list_clips()
        results = await check_clips(self.catalogue, self.checker, records)
        self.guard.update(results)
        failed = [r for r in results if not r.ok]
        for r in failed:
            log.error("clip %s fails its fetch check: %s (%s)", r.clip_id, r.reason, r.url)
        self.last_run = RunInfo(started, _now(), len(results), len(failed))
        return self.last_run

    async def run_forever(self) -> None:
        delay = min(self.interval_s, FIRST_RUN_MAX_DELAY_S)
        while True:
            await asyncio.sleep(delay)
            delay = self.interval_s
            try:
                await self.run_once()
            except Exception:
                log.exception("the periodic clip check failed; next try in %.0f s", delay)


guard_key = web.AppKey("clip_guard", ClipGuard)
monitor_key = web.AppKey("clip_monitor", Monitor)


def _check_json(r: CheckResult | None) -> dict[str, object] | None:
    if r is None:
        return None
    return {
        "ok": r.ok,
        "status": r.status,
        "reason": r.reason,
        "url": r.url,
        "checked_at": r.checked_at.isoformat(),
    }


def summary(statuses: list[ClipStatus], *, max_age_s: float, now: datetime) -> dict[str, object]:
    """The health report: counts, the failing clips with reasons, the newest check time."""
    checked = [s for s in statuses if s.check is not None]
    failing = [s for s in checked if s.check is not None and not s.check.ok]
    stale = [
        s
        for s in checked
        if s.check is not None and (now - s.check.checked_at).total_seconds() > max_age_s
    ]
    newest = max((s.check.checked_at for s in checked if s.check is not None), default=None)
    return {
        "clips": len(statuses),
        "ok": len(checked) - len(failing),
        "failed": len(failing),
        "never_checked": len(statuses) - len(checked),
        "stale": len(stale),
        "last_checked_at": newest.isoformat() if newest else None,
        "failing": [
            {
                "clip_id": s.clip.id,
                "voice": s.clip.voice_id,
                "tenant": s.clip.tenant,
                "transcript": s.clip.transcript,
                **(_check_json(s.check) or {}),
            }
            for s in failing
        ],
    }


async def health(request: web.Request) -> web.Response:
    """``GET /api/voicebank/health[?voice=V]``: admin sees every clip, a tenant its usable ones."""
    principal = await authenticate(request)
    rt = request.app[runtime_key]
    tenants = None if principal.tenant is None else ["", principal.tenant]
    statuses = await rt.catalogue.clip_statuses(
        voice_id=request.query.get("voice") or None, tenants=tenants
    )
    body = summary(statuses, max_age_s=rt.settings.check_max_age, now=_now())
    monitor = request.app.get(monitor_key)
    run = monitor.last_run if monitor is not None else None
    body["last_run"] = (
        None
        if run is None
        else {
            "started_at": run.started_at.isoformat(),
            "finished_at": run.finished_at.isoformat(),
            "checked": run.checked,
            "failed": run.failed,
        }
    )
    body["interval_s"] = rt.settings.check_interval
    body["max_age_s"] = rt.settings.check_max_age
    return web.json_response(body)


def setup(app: web.Application, settings: Settings, *, record: bool = True) -> None:
    """Guard, periodic check, health and slurp endpoints; after the runtime's cleanup_ctx.

    ``record=False`` (a dry run) runs no periodic check and stores no fresh check results.
    """

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        rt = app[runtime_key]
        async with open_session(settings.check_concurrency) as session:
            guard = ClipGuard(
                rt.catalogue, session, max_age_s=settings.check_max_age, record=record
            )
            checker = Checker(session, concurrency=settings.check_concurrency)
            monitor = Monitor(rt.catalogue, checker, guard, settings.check_interval)
            app[guard_key] = guard
            app[monitor_key] = monitor
            periodic = record and settings.check_interval > 0
            runner = asyncio.ensure_future(monitor.run_forever()) if periodic else None
            try:
                yield
            finally:
                if runner is not None:
                    runner.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await runner
                await guard.close()

    app.cleanup_ctx.append(ctx)
    app.router.add_get("/api/voicebank/health", health)
    api_voicebank.setup(app, settings)

"""Clip health in the service: the periodic fetch check of every clip (``Monitor``) and
``GET /api/voicebank/health``.

Results go to the check store (voicebank/check_store.py) and to the clip guard
(``server.calls.guard``) that webhooks ask before they ``<Play>`` a clip.
``context(settings, record=...)`` opens the guard and the monitor for the app; app.py registers
it after the runtime's context.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime

from aiohttp import web

from server.calls.guard import ClipGuard
from server.keys import guard_key, monitor_key, runtime_key
from server.settings import Settings
from server.web.auth import authenticate
from voicebank.audit import check_clips
from voicebank.catalogue import Catalogue
from voicebank.check_store import ClipStatus
from voicebank.checks import Checker, CheckResult, open_session
from voicebank.sql import utcnow

log = logging.getLogger("voiceprompt.health")

FIRST_RUN_MAX_DELAY_S = 60.0  # the first periodic check waits min(interval, this) after start

routes = web.RouteTableDef()


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
        started = utcnow()
        records = await self.catalogue.list_clips()
        results = await check_clips(self.catalogue, self.checker, records)
        self.guard.update(results)
        failed = [r for r in results if not r.ok]
        for r in failed:
            log.error("clip %s fails its fetch check: %s (%s)", r.clip_id, r.reason, r.url)
        self.last_run = RunInfo(started, utcnow(), len(results), len(failed))
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


@routes.get("/api/voicebank/health")
async def health(request: web.Request) -> web.Response:
    """``GET /api/voicebank/health[?voice=V]``: admin sees every clip, a tenant its usable ones."""
    principal = await authenticate(request)
    rt = request.app[runtime_key]
    tenants = None if principal.tenant is None else ["", principal.tenant]
    statuses = await rt.checks.clip_statuses(
        voice_id=request.query.get("voice") or None, tenants=tenants
    )
    body = summary(statuses, max_age_s=rt.settings.check_max_age, now=utcnow())
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


def context(
    settings: Settings, *, record: bool = True
) -> Callable[[web.Application], AsyncIterator[None]]:
    """The guard and the periodic check, for ``app.cleanup_ctx`` after the runtime's context.

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

    return ctx

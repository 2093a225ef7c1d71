"""The aiohttp application factory: settings in, a ready web.Application out.

Every route, every AppKey's value and every background task of the service is registered here,
from each package's ``routes`` and ``context(settings)``; the keys themselves live in
``server.keys`` so that no handler imports this module.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable

from aiohttp import web

from prompts.errors import PromptError
from server.calls import webhooks
from server.dialing import dispatcher
from server.errors import ServerError
from server.keys import reminders_key, runtime_key, throttle_key
from server.reminders import DryRunReminderStore, ReminderStore
from server.runtime import Runtime, open_runtime
from server.settings import Settings
from server.web import api, api_calls, api_voicebank, console, health, media
from server.web.throttle import SignInThrottle
from voicebank.errors import VoiceBankError

log = logging.getLogger("voiceprompt.server")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _json_error(status: int, message: str, field: str | None = None) -> web.Response:
    return web.json_response({"error": message, "field": field}, status=status)


@web.middleware
async def api_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Domain errors -> JSON with a status, for /api/ only (webhooks answer TwiML themselves)."""
    if not request.path.startswith("/api/"):
        return await handler(request)
    try:
        return await handler(request)
    except ServerError as exc:
        return _json_error(exc.status, str(exc), getattr(exc, "field", None))
    except (VoiceBankError, PromptError) as exc:
        return _json_error(getattr(exc, "status", 422), str(exc))
    except web.HTTPException as exc:
        if exc.content_type == "application/json":
            raise
        return _json_error(exc.status, exc.reason)
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return _json_error(500, "internal error; see the server log")


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"ok": True})


def create_app(
    settings: Settings,
    *,
    runtime: Runtime | None = None,
    worker: bool = False,
    dry_run: bool = False,
) -> web.Application:
    """Build the app. Pass ``runtime`` to share an already-open one (tests, one process);
    ``worker`` runs a dispatcher in the process (``serve`` unless ``--no-worker``); ``dry_run``
    answers webhooks without recording anything (``voiceprompt twiml``)."""
    store_class = DryRunReminderStore if dry_run else ReminderStore
    app = web.Application(middlewares=[api_errors], client_max_size=64 * 1024 * 1024)

    async def runtime_ctx(app: web.Application) -> AsyncIterator[None]:
        if runtime is not None:
            app[runtime_key] = runtime
            app[reminders_key] = store_class(runtime.engine)
            yield
            return
        async with open_runtime(settings) as rt:
            app[runtime_key] = rt
            app[reminders_key] = store_class(rt.engine)
            yield

    # Contexts open in this order and close in reverse: the runtime first, then what uses it.
    app.cleanup_ctx.append(runtime_ctx)
    app.cleanup_ctx.append(health.context(settings, record=not dry_run))
    app.cleanup_ctx.append(webhooks.context(settings))
    app.cleanup_ctx.append(console.context(settings))
    if worker:
        app.cleanup_ctx.append(dispatcher.context(settings, prepare=webhooks.preparer))
    app.on_shutdown.append(console.close_streams)
    # Failed console sign-ins and API tokens, per client address; in memory, per process.
    app[throttle_key] = SignInThrottle()

    app.router.add_get("/healthz", healthz)
    for routes in (media.routes, api.routes, api_calls.routes, webhooks.routes):
        app.add_routes(routes)
    app.add_routes(health.routes)
    app.add_routes(api_voicebank.routes)
    for routes in console.ROUTES:
        app.add_routes(routes)
    app.router.add_static("/console/static", console.STATIC, append_version=False)
    return app

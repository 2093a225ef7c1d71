"""The aiohttp application factory: settings in, a ready web.Application out."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable

from aiohttp import web

from prompts.errors import PromptError
from server import api, media, webhooks
from server.errors import ServerError
from server.keys import reminders_key, runtime_key
from server.reminders import ReminderStore
from server.runtime import Runtime, open_runtime
from server.settings import Settings
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


def create_app(settings: Settings, *, runtime: Runtime | None = None) -> web.Application:
    """Build the app. Pass ``runtime`` to share an already-open one (tests, one process)."""
    app = web.Application(middlewares=[api_errors], client_max_size=64 * 1024 * 1024)

    async def runtime_ctx(app: web.Application) -> AsyncIterator[None]:
        if runtime is not None:
            app[runtime_key] = runtime
            app[reminders_key] = ReminderStore(runtime.engine)
            yield
            return
        async with open_runtime(settings) as rt:
            app[runtime_key] = rt
            app[reminders_key] = ReminderStore(rt.engine)
            yield

    app.cleanup_ctx.append(runtime_ctx)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/media/{key:.+}", media.media)
    app.add_routes(api.routes)
    webhooks.setup(app, settings)
    return app

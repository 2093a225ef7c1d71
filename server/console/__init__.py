"""The web console at ``/``: voice bank, coverage, preview, tenant settings and reminders.

Server-rendered (aiohttp + Jinja2) with a little JavaScript and no build step; signed in with
the admin token or a tenant's API key, and a tenant sees only its own things. Failed sign-ins
are limited per address by server/throttle.py, shared with the REST API.

    home.py             sign-in, sign-out, home          session.py  the signed cookie, CSRF
    bank.py             voice bank, uploads, clip audio  pages.py    templates, auth, errors
    coverage.py         coverage, recording scripts
    preview.py          transcript, MP3, TwiML
    tenant_settings.py  the settings form
    reminders.py        list, detail, live updates (server-sent events)
"""

from __future__ import annotations

import weakref
from collections import OrderedDict
from collections.abc import AsyncIterator
from importlib import resources
from pathlib import Path

from aiohttp import web

from server.console import bank, coverage, home, preview, reminders, tenant_settings
from server.console.pages import jinja_key, make_jinja
from server.console.session import make_secret, secret_key
from server.keys import runtime_key
from server.preview import PreviewRenderer
from server.settings import Settings

__all__ = ["setup"]


def setup(app: web.Application, settings: Settings) -> None:
    """Add the console's routes and state to ``app`` (after the runtime's cleanup context)."""
    app[secret_key] = make_secret(settings)
    app[jinja_key] = make_jinja()
    app[reminders.streams_key] = weakref.WeakSet()
    app[preview.audio_cache_key] = OrderedDict()

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        # One renderer per app: decoded clips and text-to-speech stay cached across previews.
        app[preview.renderer_key] = PreviewRenderer(app[runtime_key])
        yield

    app.cleanup_ctx.append(ctx)
    app.on_shutdown.append(reminders.close_streams)
    for module in (home, bank, coverage, preview, tenant_settings, reminders):
        app.add_routes(module.routes)
    static = Path(str(resources.files("server.console") / "static"))
    app.router.add_static("/console/static", static, append_version=False)

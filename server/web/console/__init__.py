"""The web console at ``/``: voice bank, coverage, preview, tenant settings and reminders.

Server-rendered (aiohttp + Jinja2) with a little JavaScript and no build step; signed in with
the admin token or a tenant's API key, and a tenant sees only its own things. Failed sign-ins
are limited per address by server/web/throttle.py, shared with the REST API.

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
from collections.abc import AsyncIterator, Callable
from importlib import resources
from pathlib import Path

from aiohttp import web

from server.keys import (
    audio_cache_key,
    jinja_key,
    secret_key,
    streams_key,
)
from server.settings import Settings
from server.web.console import bank, coverage, home, preview, reminders, tenant_settings
from server.web.console.pages import make_jinja
from server.web.console.session import make_secret

__all__ = ["ROUTES", "STATIC", "close_streams", "context"]

ROUTES = tuple(m.routes for m in (home, bank, coverage, preview, tenant_settings, reminders))
STATIC = Path(str(resources.files("server.web.console") / "static"))
close_streams = reminders.close_streams  # on_shutdown: live pages end before the server waits


def context(settings: Settings) -> Callable[[web.Application], AsyncIterator[None]]:
    """The console's state, for ``app.cleanup_ctx`` after the runtime's context."""

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        app[secret_key] = make_secret(settings)
        app[jinja_key] = make_jinja()
        app[streams_key] = weakref.WeakSet()
        app[audio_cache_key] = OrderedDict()
        yield

    return ctx

"""What every console page shares: the Jinja environment, sign-in and CSRF checks, the tenants a
principal may see, and the translation of domain errors into an error page (the edge)."""

from __future__ import annotations

import functools
import hashlib
import logging
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import Any, Literal
from urllib.parse import quote, urlencode

import jinja2
from aiohttp import web

from server.errors import Forbidden, NotFound, ServerError, ValidationError
from server.keys import jinja_key, runtime_key
from server.tenants import Tenant
from server.web.console.session import (
    CSRF_FIELD,
    Session,
    csrf_ok,
    current_session,
    same_origin,
    session_key,
)
from voicebank.errors import VoiceBankError

log = logging.getLogger("voiceprompt.console")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Kind = Literal["html", "data"]

# Everything the pages load comes from us: no inline script or style, no third-party origin.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "media-src 'self' blob:; connect-src 'self'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}


def _static_version() -> str:
    """A short hash of the static files, so a new release is never served from a stale cache."""
    digest = hashlib.sha256()
    folder = resources.files("server.web.console") / "static"
    for item in sorted(folder.iterdir(), key=lambda p: p.name):
        if item.is_file():
            digest.update(item.name.encode())
            digest.update(item.read_bytes())
    return digest.hexdigest()[:10]


def make_jinja() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("server.web.console", "templates"),
        autoescape=jinja2.select_autoescape(["html"]),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    version = _static_version()
    env.globals["static"] = lambda name: f"/console/static/{name}?v={version}"
    env.globals["CSRF_FIELD"] = CSRF_FIELD
    env.filters["seconds"] = lambda ms: f"{(ms or 0) / 1000:.1f} s"
    env.filters["qs"] = lambda params: urlencode({k: v for k, v in params.items() if v})
    env.filters["path"] = lambda value: quote(str(value), safe="")
    env.filters["n"] = lambda number: f"{number:,}"  # 2345 -> "2,345"
    return env


def session_of(request: web.Request) -> Session:
    return request[session_key]


def render(
    request: web.Request, template: str, context: dict[str, Any] | None = None, *, status: int = 200
) -> web.Response:
    session = request.get(session_key)
    ctx: dict[str, Any] = {
        "session": session,
        "principal": session.principal if session else None,
        "csrf": session.csrf if session else "",
        "path": request.path,
        "nav": request.get(nav_key, ""),
        "nav_tenant": request.get(nav_tenant_key, None),
        "all_tenants": request.get(all_tenants_key, []),
    }
    ctx.update(context or {})
    body = request.app[jinja_key].get_template(template).render(ctx)
    return web.Response(
        text=body,
        status=status,
        content_type="text/html",
        charset="utf-8",
        headers=SECURITY_HEADERS,
    )


nav_key = web.RequestKey("console_nav", str)
nav_tenant_key = web.RequestKey("console_nav_tenant", str)
all_tenants_key = web.RequestKey("console_all_tenants", list)


def _error(request: web.Request, kind: Kind, status: int, message: str) -> web.Response:
    if kind == "data":
        return web.Response(
            text=message + "\n", status=status, headers={"Cache-Control": "no-store"}
        )
    titles = {401: "Sign in", 403: "Not yours", 404: "Not found", 422: "Not valid"}
    return render(
        request,
        "error.html",
        {"status": status, "title": titles.get(status, "Something went wrong"), "message": message},
        status=status,
    )


def page(
    kind: Kind = "html", *, nav: str = "", public: bool = False
) -> Callable[[Handler], Handler]:
    """Decorate a console handler: sign-in (a page redirects to the form, data answers 401),
    CSRF and origin checks on POST, and domain errors -> an error page with their status."""

    def wrap(handler: Handler) -> Handler:
        @functools.wraps(handler)
        async def wrapped(request: web.Request) -> web.StreamResponse:
            request[nav_key] = nav
            session = await current_session(request)
            if session is not None:
                request[session_key] = session
            elif not public:
                if kind == "html" and request.method == "GET":
                    target = quote(request.path_qs, safe="")
                    raise web.HTTPSeeOther(f"/console/login?next={target}")
                return _error(request, kind, 401, "Sign in first (admin token or tenant API key).")
            if request.method == "POST" and not same_origin(request):
                return _error(request, kind, 403, "This form was sent from another site.")
            if request.method == "POST" and session is not None and not public:
                form = await request.post()
                token = form.get(CSRF_FIELD)
                if not csrf_ok(session, token if isinstance(token, str) else None):
                    return _error(
                        request,
                        kind,
                        403,
                        "The form expired or was not sent by this page; "
                        "reload the page and try again.",
                    )
            try:
                return await handler(request)
            except (Forbidden, NotFound, ValidationError) as exc:
                return _error(request, kind, exc.status, str(exc))
            except ServerError as exc:
                log.exception("console error on %s %s", request.method, request.path)
                return _error(request, kind, exc.status, str(exc))
            except VoiceBankError as exc:
                return _error(request, kind, exc.status, str(exc))

        return wrapped

    return wrap


# --- tenants the signed-in principal may see -----------------------------------------------------


async def visible_tenants(request: web.Request) -> list[Tenant]:
    principal = session_of(request).principal
    store = request.app[runtime_key].tenants
    if principal.is_admin:
        return await store.list()
    assert principal.tenant is not None
    return [await store.get(principal.tenant)]


async def tenant_for(request: web.Request, slug: str) -> Tenant:
    """The tenant named in the URL, if the principal may see it (403 for another tenant's)."""
    principal = session_of(request).principal
    principal.require_tenant(slug)
    store = request.app[runtime_key].tenants
    tenant = await store.get(slug)
    request[nav_tenant_key] = tenant.slug
    if principal.is_admin:
        request[all_tenants_key] = await store.list()  # for the page's tenant switch
    return tenant


async def chosen_tenant(request: web.Request) -> Tenant | None:
    """``?tenant=`` for the admin (or the first tenant), the principal's own for a tenant."""
    principal = session_of(request).principal
    slug = request.query.get("tenant") or principal.tenant
    if slug:
        return await tenant_for(request, slug)
    tenants = await visible_tenants(request)
    if not tenants:
        return None
    request[nav_tenant_key] = tenants[0].slug
    return tenants[0]


async def to_chosen_tenant(request: web.Request, page_name: str, title: str) -> web.Response:
    """A page's address without a tenant: on to the chosen tenant's page (303), or an empty
    page when there is no tenant yet."""
    tenant = await chosen_tenant(request)
    if tenant is None:
        return render(request, "empty.html", {"title": title})
    raise web.HTTPSeeOther(f"/console/tenants/{tenant.slug}/{page_name}")


def form_text(form: Any, name: str, default: str = "") -> str:
    value = form.get(name, default)
    return value if isinstance(value, str) else default


__all__ = [
    "SECURITY_HEADERS",
    "ValidationError",
    "chosen_tenant",
    "form_text",
    "page",
    "render",
    "session_of",
    "tenant_for",
    "visible_tenants",
]


def audio_response(request: web.Request, data: bytes, *, cache_control: str) -> web.Response:
    """MP3 bytes with Range support, so the page's player can seek."""
    headers = {"Cache-Control": cache_control, "Accept-Ranges": "bytes"}
    try:
        wanted = request.http_range
    except ValueError:
        wanted = slice(None)
    if wanted.start is None and wanted.stop is None:
        return web.Response(body=data, content_type="audio/mpeg", headers=headers)
    start, stop, _ = wanted.indices(len(data))
    if start >= len(data) or stop <= start:
        return web.Response(
            status=416, headers={**headers, "Content-Range": f"bytes */{len(data)}"}
        )
    headers["Content-Range"] = f"bytes {start}-{stop - 1}/{len(data)}"
    return web.Response(
        body=data[start:stop], status=206, content_type="audio/mpeg", headers=headers
    )

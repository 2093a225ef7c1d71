"""Sign-in, sign-out and the home page."""

from __future__ import annotations

import math

from aiohttp import web

from server.keys import reminders_key, runtime_key, throttle_key
from server.web.console.pages import form_text, page, render, session_of, visible_tenants
from server.web.console.session import end_session, principal_for_token, safe_next, start_session
from server.web.throttle import client_address

routes = web.RouteTableDef()


@routes.get("/console/login")
@page(public=True)
async def login_form(request: web.Request) -> web.StreamResponse:
    return render(
        request, "login.html", {"next": safe_next(request.query.get("next")), "error": None}
    )


@routes.post("/console/login")
@page(public=True)
async def login(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    token = form_text(form, "token")
    target = safe_next(form_text(form, "next"))
    throttle = request.app[throttle_key]
    address = client_address(request, request.app[runtime_key].settings.trusted_proxies)
    # Counted before the token is checked, so concurrent guesses cannot outrun the limit.
    wait = throttle.reserve(address)
    if wait is not None:
        # Locked out: the token is not even looked at, so guessing on gains nothing.
        seconds = math.ceil(wait)
        response = render(
            request,
            "login.html",
            {"next": target, "error": f"Too many failed sign-ins. {_try_again(seconds)}"},
            status=429,
        )
        response.headers["Retry-After"] = str(seconds)
        return response
    try:
        principal = await principal_for_token(request, token)
    except BaseException:
        throttle.release(address)  # the database failed, not the token
        raise
    if principal is None:
        throttle.failed(address, reserved=True)
        return render(
            request,
            "login.html",
            {"next": target, "error": "That is neither the admin token nor a tenant's API key."},
            status=401,
        )
    throttle.release(address)
    response = web.HTTPSeeOther(target)
    start_session(request, response, principal, token)
    raise response


def _try_again(seconds: int) -> str:
    if seconds < 60:
        return f"Try again in {seconds} second{'s' if seconds != 1 else ''}."
    minutes = math.ceil(seconds / 60)
    return f"Try again in {minutes} minute{'s' if minutes != 1 else ''}."


@routes.post("/console/logout")
@page()
async def logout(request: web.Request) -> web.StreamResponse:
    response = web.HTTPSeeOther("/console/login")
    end_session(response)
    raise response


@routes.get("/")
@page(nav="home")
async def home(request: web.Request) -> web.StreamResponse:
    rt = request.app[runtime_key]
    principal = session_of(request).principal
    tenants = await visible_tenants(request)
    voices = await rt.catalogue.list_voices()
    if not principal.is_admin:
        used = {t.voice for t in tenants}
        voices = [(v, n) for v, n in voices if v.id in used]
    recent = await request.app[reminders_key].list_recent(principal.tenant, limit=10)
    zones = {t.slug: t.zone for t in tenants}
    context = {"tenants": tenants, "voices": voices, "recent": recent, "zones": zones}
    return render(request, "home.html", context)

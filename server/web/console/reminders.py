"""Reminders: the list with status and outcome, one reminder's events and Twilio log, and a
server-sent-events stream that keeps the page current.

The stream reads the database whenever this process writes the reminder (server/db/changes.py:
webhooks and the outbox wake it at once) and at least every POLL_S: the webhook that records a
keypress may land on another server process, and the database is the one place they all share.
Each read fetches only the events the page has not seen.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Sequence
from contextlib import suppress
from typing import Any

from aiohttp import web

from server.dialing.apilog import ApiExchange, ApiLog
from server.errors import NotFound
from server.keys import reminders_key, runtime_key, streams_key
from server.reminders import STATUSES, Event, Reminder, parse_reminder_id
from server.web.console.pages import chosen_tenant, page, render, session_of, visible_tenants
from server.web.console.session import current_session

routes = web.RouteTableDef()
POLL_S = 1.0
KEEPALIVE_S = 15.0
# A stream ends after this long; EventSource reconnects by itself (with Last-Event-ID).
MAX_STREAM_S = 600.0
RECHECK_S = 30.0
PAGE_SIZE = 100
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"  # UTC, as the page's headings say


async def twilio_log(request: web.Request, reminder: Reminder) -> list[ApiExchange]:
    """The Twilio API requests and responses kept for this reminder (server/dialing/apilog.py)."""
    return await ApiLog(request.app[runtime_key].engine).for_reminder(reminder.id)


def reminder_state(r: Reminder) -> dict[str, Any]:
    return {
        "id": r.id,
        "status": r.status,
        "outcome": r.outcome,
        "answered_by": r.answered_by,
        "call_sid": r.call_sid,
        "updated_at": r.updated_at.strftime(TIME_FORMAT),
    }


def event_row(e: Event) -> dict[str, Any]:
    return {
        "id": e.id,
        "kind": e.kind,
        "detail": json.dumps(e.detail, sort_keys=True) if e.detail else "",
        "call_sid": e.call_sid or "",
        "at": e.created_at.strftime(TIME_FORMAT),
    }


@routes.get("/console/reminders")
@page(nav="reminders")
async def reminder_list(request: web.Request) -> web.StreamResponse:
    principal = session_of(request).principal
    slug: str | None = None
    if request.query.get("tenant") or not principal.is_admin:
        tenant = await chosen_tenant(request)
        slug = tenant.slug if tenant else None
    try:
        offset = max(0, int(request.query.get("offset", "0")))
    except ValueError:
        offset = 0
    items = await request.app[reminders_key].list_recent(slug, limit=PAGE_SIZE + 1, offset=offset)
    tenants = await visible_tenants(request)
    return render(
        request,
        "reminders.html",
        {
            "reminders": items[:PAGE_SIZE],
            "more": len(items) > PAGE_SIZE,
            "offset": offset,
            "page_size": PAGE_SIZE,
            "tenant_filter": slug or "",
            "tenants": tenants,
            "zones": {t.slug: t.zone for t in tenants},
        },
    )


async def _visible(request: web.Request) -> Reminder:
    """The reminder in the URL, if the principal may see it (another tenant's: 403)."""
    rid = parse_reminder_id(request.match_info["id"])
    if rid is None:
        raise NotFound("no such reminder")
    reminder = await request.app[reminders_key].get(rid)
    session_of(request).principal.require_tenant(reminder.tenant)
    return reminder


@routes.get(r"/console/reminders/{id:\d+}")
@page(nav="reminders")
async def reminder_page(request: web.Request) -> web.StreamResponse:
    reminder = await _visible(request)
    tenant = await request.app[runtime_key].tenants.get(reminder.tenant)
    events = await request.app[reminders_key].events(reminder.id)
    return render(
        request,
        "reminder.html",
        {
            "reminder": reminder,
            "tenant": tenant,
            "local": reminder.appointment_at.astimezone(tenant.zone),
            "state": reminder_state(reminder),
            "events": [event_row(e) for e in events],
            "last_event": events[-1].id if events else 0,
            "log": await twilio_log(request, reminder),
            "statuses": STATUSES,
        },
    )


def _sse(event: str, data: Any, event_id: int | None = None) -> bytes:
    lines = [f"id: {event_id}"] if event_id is not None else []
    lines += [f"event: {event}", f"data: {json.dumps(data)}", "", ""]
    return "\n".join(lines).encode()


async def _changes(
    request: web.Request, reminder: Reminder, after: int
) -> AsyncIterator[Sequence[bytes]]:
    """Messages whenever the reminder or its events change (see the module docstring)."""
    store = request.app[reminders_key]
    last_state: dict[str, Any] | None = None
    with store.changes.watch(reminder.id) as watch:
        while True:
            current = await store.get(reminder.id)
            state = reminder_state(current)
            out: list[bytes] = []
            if state != last_state:
                out.append(_sse("reminder", state))
                last_state = state
            for e in await store.events(reminder.id, after=after):
                out.append(_sse("event", event_row(e), e.id))
                after = e.id
            yield out
            await watch.wait(POLL_S)


@routes.get(r"/console/reminders/{id:\d+}/events")
@page("data")
async def reminder_stream(request: web.Request) -> web.StreamResponse:
    reminder = await _visible(request)
    try:
        after = int(request.headers.get("Last-Event-ID") or request.query.get("after") or 0)
    except ValueError:
        after = 0
    resp = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-store",
            "X-Accel-Buffering": "no",  # nginx: pass each message on at once
        }
    )
    await resp.prepare(request)
    task = asyncio.current_task()
    if task is not None:
        request.app[streams_key].add(task)
    loop = asyncio.get_running_loop()
    started = quiet_since = checked = loop.time()
    await resp.write(b"retry: 1000\n\n")
    with suppress(ConnectionError):
        async for messages in _changes(request, reminder, after):
            transport = request.transport
            if transport is None or transport.is_closing():
                break
            now = loop.time()
            if messages:
                await resp.write(b"".join(messages))
                quiet_since = now
            elif now - quiet_since > KEEPALIVE_S:
                await resp.write(b": keep-alive\n\n")
                quiet_since = now
            if now - started > MAX_STREAM_S:
                break
            if now - checked > RECHECK_S:
                # A rotated key or an expired session ends the stream too, not only new pages.
                if await current_session(request) is None:
                    break
                checked = now
    return resp


async def close_streams(app: web.Application) -> None:
    """On shutdown: end open streams now instead of waiting for the shutdown timeout."""
    streams = app[streams_key]
    for task in tuple(streams):
        task.cancel()

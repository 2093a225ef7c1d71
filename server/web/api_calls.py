"""REST API for dialing: ``GET /api/reminders/{id}/log``, a reminder's Twilio requests."""

from __future__ import annotations

from aiohttp import web

from server.dialing.apilog import ApiLog
from server.keys import reminders_key, runtime_key
from server.web.auth import authenticate

routes = web.RouteTableDef()
MAX_ID = 2**31 - 1  # reminder ids are 32-bit in PostgreSQL


@routes.get("/api/reminders/{id}/log")
async def reminder_log(request: web.Request) -> web.Response:
    who = await authenticate(request)
    text = request.match_info["id"]
    if not text.isdigit() or not 0 < int(text) <= MAX_ID:
        raise web.HTTPNotFound()
    reminder = await request.app[reminders_key].get(int(text))
    who.require_tenant(reminder.tenant)
    rt = request.app[runtime_key]
    entries = await ApiLog(rt.engine).for_reminder(reminder.id)
    return web.json_response({"reminder": reminder.id, "log": [e.public_dict() for e in entries]})

"""REST API for dialing: ``GET /api/reminders/{id}/log``, a reminder's Twilio requests."""

from __future__ import annotations

from aiohttp import web

from server.dialing.apilog import ApiLog
from server.keys import runtime_key
from server.web.api import visible_reminder

routes = web.RouteTableDef()


@routes.get("/api/reminders/{id}/log")
async def reminder_log(request: web.Request) -> web.Response:
    reminder = await visible_reminder(request)
    rt = request.app[runtime_key]
    entries = await ApiLog(rt.engine).for_reminder(reminder.id)
    return web.json_response({"reminder": reminder.id, "log": [e.public_dict() for e in entries]})

"""The JSON REST API under /api/: tenants, reminders and their events.

Handlers parse and authorise, then call the stores; errors become JSON
``{"error": message, "field": name}`` in the error middleware, never an HTML page.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from aiohttp import web

from server.errors import ValidationError
from server.keys import reminders_key, runtime_key
from server.reminders import Reminder, parse_reminder_id
from server.tenants import EDITABLE, MINUTE_FIELDS, Tenant
from server.web.auth import authenticate

routes = web.RouteTableDef()
# Tenant fields that may be null (no caller ID, a menu key switched off); the rest are strings.
NULLABLE = frozenset({"caller_id", "digit_cancel", "digit_contact", "digit_repeat"})


async def _json_body(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ValidationError("the request body is not valid JSON", None) from None
    if not isinstance(body, dict):
        raise ValidationError("the request body must be a JSON object", None)
    return body


def _tenant_fields(body: dict[str, Any], *, partial: bool) -> dict[str, Any]:
    """JSON field names -> Tenant fields (templates are nested in the API)."""
    out = dict(body)
    templates = out.pop("templates", None)
    if templates is not None:
        if not isinstance(templates, dict):
            raise ValidationError(
                "templates must be an object with human and voicemail", "templates"
            )
        for kind in ("human", "voicemail"):
            if kind in templates:
                out[f"template_{kind}"] = templates[kind]
        unknown = set(templates) - {"human", "voicemail"}
        if unknown:
            raise ValidationError(f"unknown template {sorted(unknown)[0]!r}", "templates")
    allowed = set(EDITABLE) | ({"slug"} if not partial else set())
    for name in out:
        if name not in allowed:
            raise ValidationError(f"unknown field {name!r}", name)
    integers = {"loops", *MINUTE_FIELDS}
    for name in integers & set(out):
        if isinstance(out[name], bool) or not isinstance(out[name], int):
            raise ValidationError(f"{name} must be a whole number", name)
    if "skip_to_beep" in out and not isinstance(out["skip_to_beep"], bool):
        raise ValidationError("skip_to_beep must be true or false", "skip_to_beep")
    for name, value in out.items():
        if name in integers or name == "skip_to_beep" or isinstance(value, str):
            continue
        if value is None and name in NULLABLE:
            continue
        raise ValidationError(f"{name} must be a string", name)
    return out


@routes.post("/api/tenants")
async def create_tenant(request: web.Request) -> web.Response:
    (await authenticate(request)).require_admin()
    fields = _tenant_fields(await _json_body(request), partial=False)
    if "slug" not in fields or "name" not in fields:
        missing = "slug" if "slug" not in fields else "name"
        raise ValidationError(f"{missing} is required", missing)
    rt = request.app[runtime_key]
    fields.setdefault("voice", rt.settings.default_voice)
    tenant, key = await rt.tenants.create(Tenant(**fields))
    return web.json_response({**tenant.public_dict(), "api_key": key}, status=201)


@routes.get("/api/tenants")
async def list_tenants(request: web.Request) -> web.Response:
    who = await authenticate(request)
    items = await request.app[runtime_key].tenants.list()
    visible = [t.public_dict() for t in items if who.is_admin or t.slug == who.tenant]
    return web.json_response({"tenants": visible})


@routes.get("/api/tenants/{slug}")
async def get_tenant(request: web.Request) -> web.Response:
    slug = request.match_info["slug"]
    (await authenticate(request)).require_tenant(slug)
    return web.json_response((await request.app[runtime_key].tenants.get(slug)).public_dict())


@routes.patch("/api/tenants/{slug}")
async def patch_tenant(request: web.Request) -> web.Response:
    slug = request.match_info["slug"]
    (await authenticate(request)).require_tenant(slug)
    fields = _tenant_fields(await _json_body(request), partial=True)
    tenant = await request.app[runtime_key].tenants.update(slug, fields)
    return web.json_response(tenant.public_dict())


@routes.post("/api/tenants/{slug}/rotate-key")
async def rotate_key(request: web.Request) -> web.Response:
    slug = request.match_info["slug"]
    (await authenticate(request)).require_tenant(slug)
    key = await request.app[runtime_key].tenants.rotate_key(slug)
    return web.json_response({"slug": slug, "api_key": key})


@routes.post("/api/reminders")
async def create_reminder(request: web.Request) -> web.Response:
    who = await authenticate(request)
    body = await _json_body(request)
    slug = body.get("tenant") or who.tenant
    if not isinstance(slug, str):
        raise ValidationError("tenant is required", "tenant")
    who.require_tenant(slug)
    for name in ("to", "appointment_at"):
        if not isinstance(body.get(name), str) or not body[name].strip():
            raise ValidationError(f"{name} is required (a string)", name)
    try:
        when = datetime.fromisoformat(body["appointment_at"])
    except ValueError:
        raise ValidationError(
            f"appointment_at {body['appointment_at']!r} is not ISO 8601", "appointment_at"
        ) from None
    provider = body.get("provider")
    if provider is not None and not isinstance(provider, str):
        raise ValidationError("provider must be a string", "provider")
    values = body.get("values") or {}
    if not isinstance(values, dict):
        raise ValidationError("values must be an object", "values")
    rt = request.app[runtime_key]
    tenant = await rt.tenants.get(slug)
    reminder = await request.app[reminders_key].create(tenant, body["to"], when, provider, values)
    return web.json_response(reminder.public_dict(), status=201)


@routes.get("/api/reminders")
async def list_reminders(request: web.Request) -> web.Response:
    who = await authenticate(request)
    slug = request.query.get("tenant") or who.tenant
    if slug is not None:
        who.require_tenant(slug)
    try:
        limit = min(int(request.query.get("limit", "100")), 1000)
        offset = int(request.query.get("offset", "0"))
    except ValueError:
        raise ValidationError("limit and offset must be integers", "limit") from None
    if limit < 0 or offset < 0:
        raise ValidationError(
            "limit and offset must not be negative", "limit" if limit < 0 else "offset"
        )
    items = await request.app[reminders_key].list_recent(slug, limit=limit, offset=offset)
    return web.json_response({"reminders": [r.public_dict() for r in items]})


async def visible_reminder(request: web.Request) -> Reminder:
    """The reminder named in the URL, if the caller may see it (another tenant's: 403)."""
    who = await authenticate(request)
    rid = parse_reminder_id(request.match_info["id"])
    if rid is None:
        raise web.HTTPNotFound()
    reminder = await request.app[reminders_key].get(rid)
    who.require_tenant(reminder.tenant)
    return reminder


@routes.get("/api/reminders/{id}")
async def get_reminder(request: web.Request) -> web.Response:
    reminder = await visible_reminder(request)
    events = await request.app[reminders_key].events(reminder.id)
    return web.json_response(
        {**reminder.public_dict(), "events": [e.public_dict() for e in events]}
    )


@routes.get("/api/reminders/{id}/events")
async def reminder_events(request: web.Request) -> web.Response:
    reminder = await visible_reminder(request)
    events = await request.app[reminders_key].events(reminder.id)
    return web.json_response({"events": [e.public_dict() for e in events]})

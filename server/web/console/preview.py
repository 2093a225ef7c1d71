"""Preview: the call for a chosen appointment, as the callee hears it (the call URL's TwiML,
played from our storage by server/calls/preview.py), the transcript of what it plays with each
sentence's voice marked, and the TwiML itself."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from aiohttp import web

from prompts.errors import PromptError, TemplateError
from server.calls import twiml
from server.calls.answers import Call
from server.calls.messages import MessageVariant, local_today
from server.calls.preview import Preview, plan_json, preview_call
from server.calls.voices import VoiceView
from server.errors import NotFound, ValidationError
from server.keys import audio_cache_key, audio_key, reminders_key, runtime_key, voices_key
from server.reminders import Reminder, parse_reminder_id
from server.tenants import Tenant
from server.web.console.pages import (
    audio_response,
    page,
    render,
    tenant_for,
    to_chosen_tenant,
)

routes = web.RouteTableDef()
AUDIO_CACHE_SIZE = 16
EXAMPLE_PROVIDER = "Doctor Smith"  # until the tenant has reminders with real names


@dataclass(frozen=True)
class Choice:
    """The preview form, parsed: what the page shows and the MP3 URL repeats."""

    day: date
    at: time
    provider: str
    variant: MessageVariant
    reminder: Reminder | None

    def params(self) -> dict[str, str]:
        out = {
            "date": self.day.isoformat(),
            "time": self.at.strftime("%H:%M"),
            "provider": self.provider,
            "variant": self.variant,
        }
        if self.reminder is not None:
            out["reminder"] = str(self.reminder.id)
        return out


async def _choice(request: web.Request, tenant: Tenant) -> tuple[Choice, dict[str, str]]:
    """The form's values (defaults: the reminder's appointment, else tomorrow at 10:00) and
    an error per bad field."""
    q = request.query
    errors: dict[str, str] = {}
    reminder: Reminder | None = None
    if q.get("reminder"):
        rid = parse_reminder_id(q["reminder"])
        try:
            reminder = None if rid is None else await request.app[reminders_key].get(rid)
        except NotFound:
            reminder = None
        if reminder is None:
            raise NotFound(f"no reminder {q['reminder']!r}")
        if reminder.tenant != tenant.slug:
            raise NotFound(f"no reminder {q['reminder']!r}")
    if reminder is not None:
        local = reminder.appointment_at.astimezone(tenant.zone)
        day, at, provider = local.date(), local.time().replace(second=0), reminder.provider or ""
    else:
        day = local_today(tenant, datetime.now(UTC)) + timedelta(days=1)
        recent = await request.app[reminders_key].list_recent(tenant.slug, limit=1)
        at, provider = time(10, 0), (recent[0].provider if recent else None) or EXAMPLE_PROVIDER
    if q.get("date"):
        try:
            day = date.fromisoformat(q["date"])
        except ValueError:
            errors["date"] = f"{q['date']!r} is not a date (YYYY-MM-DD)"
    if q.get("time"):
        try:
            at = time.fromisoformat(q["time"])
        except ValueError:
            errors["time"] = f"{q['time']!r} is not a time (HH:MM)"
    provider = q.get("provider", provider).strip()
    variant = q.get("variant", "human")
    if variant not in ("human", "voicemail"):
        errors["variant"] = "choose person or voicemail"
        variant = "human"
    chosen = Choice(day, at, provider, "voicemail" if variant == "voicemail" else "human", reminder)
    return chosen, errors


def _call(choice: Choice, tenant: Tenant, view: VoiceView) -> Call:
    when = datetime.combine(choice.day, choice.at, tzinfo=tenant.zone)
    r = choice.reminder
    return Call(
        r.id if r else "preview", tenant, when, choice.provider or None, view, r.values if r else {}
    )


def _pretty(doc: str) -> str:
    root = ET.fromstring(doc)
    ET.indent(root, space="  ")
    return twiml.XML_DECLARATION + "\n" + ET.tostring(root, encoding="unicode")


async def _preview(request: web.Request, tenant: Tenant, choice: Choice) -> Preview:
    """The call for the choice (PromptError for a bad template, ValueError for bad settings);
    its MP3 is kept for the player, which asks for it right after the page."""
    rt = request.app[runtime_key]
    view = await request.app[voices_key].get(tenant.voice, tenant.slug)
    found = await preview_call(
        request.app[audio_key], rt.settings.public_url, _call(choice, tenant, view), choice.variant
    )
    cache = request.app[audio_cache_key]
    if found.answer.twiml not in cache:
        cache[found.answer.twiml] = found.mp3
        while len(cache) > AUDIO_CACHE_SIZE:
            cache.popitem(last=False)
    cache.move_to_end(found.answer.twiml)
    return found


def _prompt_error(exc: PromptError) -> tuple[str, str]:
    slot = exc.slot if isinstance(exc, TemplateError) else None
    field = "provider" if slot == "provider" else "template"
    return field, str(exc)


@routes.get("/console/preview")
@page(nav="preview")
async def preview_default(request: web.Request) -> web.StreamResponse:
    return await to_chosen_tenant(request, "preview", "Preview")


@routes.get("/console/tenants/{slug}/preview")
@page(nav="preview")
async def preview(request: web.Request) -> web.StreamResponse:
    tenant = await tenant_for(request, request.match_info["slug"])
    choice, errors = await _choice(request, tenant)
    ctx: dict[str, Any] = {
        "tenant": tenant,
        "choice": choice,
        "form": choice.params(),
        "errors": errors,
        "plan": None,
    }
    if not errors:
        try:
            found = await _preview(request, tenant, choice)
        except PromptError as exc:
            field, message = _prompt_error(exc)
            errors[field] = message
        except ValueError as exc:
            ctx["twiml_note"] = f"No TwiML: {exc}. Calls of this tenant would fall back to <Say>."
        else:
            heard = found.answer.message
            ctx.update(
                plan=plan_json(heard) if heard else None,
                twiml=_pretty(found.answer.twiml),
                twiml_note=found.note,
                heard_ms=found.playback.duration_ms if found.playback else 0,
            )
    return render(request, "preview.html", ctx, status=422 if errors else 200)


@routes.get("/console/tenants/{slug}/preview.mp3")
@page("data")
async def preview_audio(request: web.Request) -> web.StreamResponse:
    tenant = await tenant_for(request, request.match_info["slug"])
    choice, errors = await _choice(request, tenant)
    if errors:
        field, message = next(iter(errors.items()))
        raise ValidationError(message, field)
    try:
        found = await _preview(request, tenant, choice)
    except PromptError as exc:
        raise ValidationError(str(exc), _prompt_error(exc)[0]) from None
    except ValueError as exc:
        raise ValidationError(str(exc), "template") from None
    data = request.app[audio_cache_key][found.answer.twiml]
    return audio_response(request, data, cache_control="private, no-cache")

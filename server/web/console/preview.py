"""Preview: a tenant's message for a chosen appointment as a marked-up transcript, a stitched MP3
(rendered by the app's one PreviewRenderer, so decoded clips and TTS stay cached) and the TwiML
Twilio would receive."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from aiohttp import web

from prompts.errors import PromptError, TemplateError
from prompts.models import ClipIndex, Plan
from prompts.planner import plan_message
from server.calls import twiml
from server.calls.flow import Action, Answered, CallState, step
from server.calls.messages import MessageRequest, MessageVariant, build_plan, local_today
from server.calls.phrases import keypress_config, menu_text
from server.calls.preview import plan_json
from server.calls.webhooks import greeting_may_be_playing
from server.errors import NotFound, ValidationError
from server.keys import audio_cache_key, reminders_key, renderer_key, runtime_key
from server.reminders import Reminder
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
# What Twilio's AnsweredBy says for a machine under each AMD mode (None: AMD off, no answer).
MACHINE_ANSWER = {
    "detect-message-end": "machine_end_beep",
    "enable": "machine_start",
    "off": None,
}


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

    def request(self, tenant: Tenant) -> MessageRequest:
        when = datetime.combine(self.day, self.at, tzinfo=tenant.zone)
        extra = self.reminder.values if self.reminder else None
        return MessageRequest(tenant, when, self.provider or None, self.variant, extra=extra)


async def _choice(request: web.Request, tenant: Tenant) -> tuple[Choice, dict[str, str]]:
    """The form's values (defaults: the reminder's appointment, else tomorrow at 10:00) and
    an error per bad field."""
    q = request.query
    errors: dict[str, str] = {}
    reminder: Reminder | None = None
    if q.get("reminder"):
        try:
            reminder = await request.app[reminders_key].get(int(q["reminder"]))
        except (ValueError, NotFound):
            raise NotFound(f"no reminder {q['reminder']!r}") from None
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


def _plan(choice: Choice, tenant: Tenant, index: ClipIndex, variant: MessageVariant) -> Plan:
    req = choice.request(tenant)
    req = MessageRequest(req.tenant, req.appointment_at, req.provider, variant, req.extra)
    return build_plan(req, index, now=datetime.now(UTC))


def _pretty(doc: str) -> str:
    root = ET.fromstring(doc)
    ET.indent(root, space="  ")
    return twiml.XML_DECLARATION + "\n" + ET.tostring(root, encoding="unicode")


def twiml_preview(
    public_url: str, tenant: Tenant, choice: Choice, index: ClipIndex
) -> tuple[str, str]:
    """(TwiML, a sentence saying which answer it is for): what the call URL would answer."""
    human = choice.variant == "human"
    answered_by = "human" if human else MACHINE_ANSWER.get(tenant.amd_mode)
    result = step(keypress_config(tenant), CallState(), Answered(answered_by))
    tone = tenant.skip_to_beep and greeting_may_be_playing(answered_by, result)
    if human:
        note = "For a person (AnsweredBy=human)."
    elif answered_by is None:
        note = (
            "AMD is off, so Twilio cannot tell a machine from a person: a machine hears the "
            "person's message and menu below, not the voicemail message."
        )
    else:
        note = f"For an answering machine (AnsweredBy={answered_by}, AMD {tenant.amd_mode})."
    if tone:
        note += f" Starts with the skip-to-beep key {tenant.beep_digit}."
    rid = choice.reminder.id if choice.reminder else "preview"
    try:
        opts = twiml.ViewOptions.for_reminder(
            rid,
            prefix=public_url,
            query=result.state.as_params(),
            language=tenant.language,
            voice=tenant.say_voice,
            skip_to_beep=tone,
            skip_digit=tenant.beep_digit,
        )
    except ValueError as exc:
        return "", f"No TwiML: {exc}. Calls of this tenant would fall back to <Say>."
    if result.action is Action.PLAY_VOICEMAIL_AND_HANG_UP:
        doc = twiml.voicemail_twiml(_plan(choice, tenant, index, "voicemail"), opts)
    elif result.action is Action.PLAY_MESSAGE_WITH_MENU:
        words = menu_text(tenant).replace("{", "{{").replace("}", "}}")
        menu = plan_message(words, {}, index, today=local_today(tenant, datetime.now(UTC)), loops=1)
        doc = twiml.human_twiml(_plan(choice, tenant, index, "human"), menu, opts)
    else:
        doc = twiml.hangup_twiml()
    return _pretty(doc), note


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
    rt = request.app[runtime_key]
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
        index = await rt.catalogue.clip_index(tenant.voice, tenant.slug)
        try:
            plan = _plan(choice, tenant, index, choice.variant)
        except PromptError as exc:
            field, message = _prompt_error(exc)
            errors[field] = message
        else:
            doc, note = twiml_preview(rt.settings.public_url, tenant, choice, index)
            ctx.update(plan=plan_json(plan), twiml=doc, twiml_note=note)
    return render(request, "preview.html", ctx, status=422 if errors else 200)


@routes.get("/console/tenants/{slug}/preview.mp3")
@page("data")
async def preview_audio(request: web.Request) -> web.StreamResponse:
    rt = request.app[runtime_key]
    tenant = await tenant_for(request, request.match_info["slug"])
    choice, errors = await _choice(request, tenant)
    if errors:
        field, message = next(iter(errors.items()))
        raise ValidationError(message, field)
    index = await rt.catalogue.clip_index(tenant.voice, tenant.slug)
    try:
        plan = _plan(choice, tenant, index, choice.variant)
    except PromptError as exc:
        raise ValidationError(str(exc), _prompt_error(exc)[0]) from None
    cache = request.app[audio_cache_key]
    data = cache.get(plan)
    if data is None:
        data = await request.app[renderer_key].render(plan)
        cache[plan] = data
        while len(cache) > AUDIO_CACHE_SIZE:
            cache.popitem(last=False)
    cache.move_to_end(plan)
    return audio_response(request, data, cache_control="private, no-cache")

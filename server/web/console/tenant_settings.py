"""Tenant settings: one form drawn from the Tenant dataclass, so a field added there shows up here
without touching this module. Nothing is saved until every field is valid; each error is shown
next to its field (tenants.validate names it)."""

from __future__ import annotations

import types
import typing
from dataclasses import dataclass, fields, replace
from datetime import time
from typing import Any

from aiohttp import web

from server.errors import ValidationError
from server.keys import runtime_key
from server.tenants import AMD_MODES, DELIVERIES, EDITABLE, FALLBACKS, Tenant, validate
from server.web.console.pages import (
    form_text,
    page,
    render,
    tenant_for,
    to_chosen_tenant,
)

routes = web.RouteTableDef()

# Labels, help and groups for the fields we know; any other field lands in "Other" with its name.
LABELS = {
    "name": ("Name", "What the message calls the business."),
    "timezone": ("Time zone", "IANA name, e.g. America/Chicago: appointment times are said in it."),
    "region": ("Region", "Two-letter country code for phone numbers without +."),
    "caller_id": ("Caller ID", "The number calls come from (empty: the account default)."),
    "voice": ("Voice", "Which recorded voice speaks."),
    "language": ("Language", "For <Say> fallbacks."),
    "say_voice": ("Text-to-speech voice", "For phrases nobody recorded yet, e.g. Polly.Joanna."),
    "template_human": (
        "Message for a person",
        "Slots: {tenant}, {provider}, {appointment:time}, {appointment:date}.",
    ),
    "template_voicemail": ("Message for voicemail", "Never ask a machine to press a key."),
    "loops": ("Plays of the message", "1 to 3 for a person; a voicemail always gets at least 2."),
    "amd_mode": (
        "Answering-machine detection",
        "off, enable (fast), or detect-message-end (waits for the beep).",
    ),
    "delivery": (
        "Delivery",
        "stitched: one file per sentence, pauses kept (recommended); clips: one file per clip.",
    ),
    "fallback": (
        "Unrecorded words",
        "sentence: the text-to-speech voice says the whole sentence; word: only those words.",
    ),
    "skip_to_beep": ("Skip to the beep", "Send a key so a voicemail greeting is skipped."),
    "beep_digit": ("Skip key", "The key (or keys) that skip the greeting, e.g. # or *."),
    "digit_confirm": ("Confirm key", "Always on."),
    "digit_cancel": ("Cancel key", "Let the callee cancel the appointment."),
    "digit_contact": ("Call-me-back key", "Let the callee ask to be contacted."),
    "digit_repeat": ("Repeat key", "Let the callee hear the message again."),
    "call_lead_minutes": (
        "Call from (minutes before)",
        "How long before the appointment calls may start; 1440 is a day.",
    ),
    "calling_hours_start": ("Calling hours from", "Local time, HH:MM."),
    "calling_hours_end": ("Calling hours until", "Local time, HH:MM (24:00 is midnight)."),
    "retry_delay_minutes": ("Retry after (minutes)", "Wait before calling again after no answer."),
    "max_attempts": ("Attempts", "Calls per reminder at most."),
    "min_spacing_minutes": ("Gap between calls (minutes)", "Between any two calls to one number."),
}
GROUPS = {
    "Business": ("name", "timezone", "region", "caller_id"),
    "Voice": ("voice", "language", "say_voice"),
    "Calls": ("amd_mode", "skip_to_beep", "beep_digit", "loops", "delivery", "fallback"),
    "Keys": ("digit_confirm", "digit_cancel", "digit_contact", "digit_repeat"),
    "When to call": (
        "calling_hours_start",
        "calling_hours_end",
        "call_lead_minutes",
        "retry_delay_minutes",
        "max_attempts",
        "min_spacing_minutes",
    ),
    "Templates": ("template_human", "template_voicemail"),
}
CHOICES: dict[str, tuple[str, ...]] = {
    "amd_mode": AMD_MODES,
    "loops": ("1", "2", "3"),
    "delivery": DELIVERIES,
    "fallback": FALLBACKS,
}


@dataclass(frozen=True)
class Field:
    name: str
    label: str
    help: str
    widget: str  # text | textarea | number | checkbox | select | time | clock | optional
    value: str
    checked: bool  # checkbox state, or "enabled" of an optional field
    choices: tuple[str, ...]
    error: str | None


def _kind(tp: Any) -> tuple[type, bool]:
    """(base type, optional) of a dataclass annotation such as ``str | None``."""
    args = typing.get_args(tp)
    if typing.get_origin(tp) in (typing.Union, types.UnionType) and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        return (rest[0] if len(rest) == 1 and isinstance(rest[0], type) else str), True
    return (tp if isinstance(tp, type) else str), False


HINTS = typing.get_type_hints(Tenant)


def _widget(name: str, base: type, optional: bool) -> str:
    if name in CHOICES:
        return "select"
    if base is bool:
        return "checkbox"
    if base is int:
        return "number"
    if base is time:
        return "optional-time" if optional else "time"
    if name.startswith("template_"):
        return "textarea"
    if base is str and name.startswith("calling_hours"):
        return "clock"  # text, not <input type=time>: that cannot say 24:00
    if optional and name.startswith("digit_"):
        return "optional"  # a switch plus the key
    return "text"


def _shown(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, time):
        return value.strftime("%H:%M")
    return str(value)


def form_fields(values: dict[str, Any], errors: dict[str, str]) -> list[tuple[str, list[Field]]]:
    """The form in groups; ``values`` are the tenant's (or the submitted) values."""
    by_name: dict[str, Field] = {}
    for f in fields(Tenant):
        if f.name not in EDITABLE:
            continue
        base, optional = _kind(HINTS[f.name])
        label, help_text = LABELS.get(f.name, (f.name.replace("_", " ").capitalize(), ""))
        value = values.get(f.name)
        widget = _widget(f.name, base, optional)
        checked = bool(value) if widget == "checkbox" else value is not None
        by_name[f.name] = Field(
            f.name,
            label,
            help_text,
            widget,
            _shown(value),
            checked,
            CHOICES.get(f.name, ()),
            errors.get(f.name),
        )
    out: list[tuple[str, list[Field]]] = []
    for group, names in GROUPS.items():
        items = [by_name.pop(n) for n in names if n in by_name]
        if items:
            out.append((group, items))
    if by_name:
        out.append(("Other", list(by_name.values())))
    return out


def parse_form(form: Any) -> tuple[dict[str, Any], dict[str, str]]:
    """Submitted text -> typed field values, and an error per field that is not even the type."""
    values: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for f in fields(Tenant):
        if f.name not in EDITABLE:
            continue
        base, optional = _kind(HINTS[f.name])
        widget = _widget(f.name, base, optional)
        text = form_text(form, f.name).strip()
        if widget == "checkbox":
            values[f.name] = form_text(form, f.name) == "on"
            continue
        if widget == "optional" and form_text(form, f"{f.name}__on") != "on":
            values[f.name] = None
            continue
        if optional and not text:
            values[f.name] = None
            continue
        try:
            if base is int:
                values[f.name] = int(text)
            elif base is float:
                values[f.name] = float(text)
            elif base is time:
                values[f.name] = time.fromisoformat(text)
            else:
                # Templates keep their own line breaks; everything else is one line.
                values[f.name] = form_text(form, f.name) if widget == "textarea" else text
        except ValueError:
            what = {int: "a whole number", float: "a number", time: "a time (HH:MM)"}
            errors[f.name] = f"{text!r} is not {what.get(base, 'valid')}"
            values[f.name] = text
    return values, errors


@routes.get("/console/settings")
@page(nav="settings")
async def settings_default(request: web.Request) -> web.StreamResponse:
    return await to_chosen_tenant(request, "settings", "Tenant settings")


def _page(
    request: web.Request,
    tenant: Tenant,
    values: dict[str, Any],
    errors: dict[str, str],
    *,
    saved: bool = False,
    status: int = 200,
) -> web.Response:
    ctx = {
        "tenant": tenant,
        "groups": form_fields(values, errors),
        "errors": errors,
        "saved": saved,
    }
    return render(request, "settings.html", ctx, status=status)


@routes.get("/console/tenants/{slug}/settings")
@page(nav="settings")
async def settings_form(request: web.Request) -> web.StreamResponse:
    tenant = await tenant_for(request, request.match_info["slug"])
    values = {name: getattr(tenant, name) for name in EDITABLE}
    return _page(request, tenant, values, {}, saved=request.query.get("saved") == "1")


@routes.post("/console/tenants/{slug}/settings")
@page(nav="settings")
async def settings_save(request: web.Request) -> web.StreamResponse:
    tenant = await tenant_for(request, request.match_info["slug"])
    values, errors = parse_form(await request.post())
    # Each changed field on its own first, so every bad one is marked at once (validate stops
    # at the first); then all together, for rules that span fields (two menu keys the same).
    for name, value in values.items():
        if name in errors or value == getattr(tenant, name):
            continue
        try:
            validate(replace(tenant, **{name: value}))
        except ValidationError as exc:
            errors.setdefault(exc.field or name, exc.message)
    if not errors:
        try:
            await request.app[runtime_key].tenants.update(tenant.slug, values)
        except ValidationError as exc:
            errors[exc.field or "form"] = exc.message
        else:
            raise web.HTTPSeeOther(f"/console/tenants/{tenant.slug}/settings?saved=1")
    return _page(request, tenant, values, errors, status=422)

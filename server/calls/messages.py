"""A tenant's reminder as a Plan: template + values + the voice's clips, ready to play or render."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Literal

from prompts.models import ClipIndex, Plan
from prompts.planner import plan_message
from server.tenants import Tenant

MessageVariant = Literal["human", "voicemail"]


@dataclass(frozen=True)
class MessageRequest:
    tenant: Tenant
    appointment_at: datetime
    provider: str | None = None
    variant: MessageVariant = "human"
    extra: Mapping[str, object] | None = None


def template_values(req: MessageRequest) -> dict[str, object]:
    """Values for a tenant's template; the appointment in the tenant's own wall-clock time."""
    when = req.appointment_at
    if when.tzinfo is not None:
        when = when.astimezone(req.tenant.zone)
    values: dict[str, object] = {"tenant": req.tenant.name, "appointment": when}
    if req.provider is not None:
        values["provider"] = req.provider
    if req.extra:
        values.update(req.extra)
    return values


def local_today(tenant: Tenant, now: datetime) -> date:
    """ "Today" as the callee's calendar says it (the tenant's timezone), for today/tomorrow."""
    return (now.astimezone(tenant.zone) if now.tzinfo else now).date()


# A machine often starts recording late, after its greeting or mid-message: it always hears the
# message at least twice in a row (ARCHITECTURE: rules of the house), whatever ``loops`` a
# tenant chose for people, who can press the repeat key instead.
MIN_VOICEMAIL_LOOPS = 2


def loops_for(tenant: Tenant, variant: MessageVariant) -> int:
    return max(tenant.loops, MIN_VOICEMAIL_LOOPS) if variant == "voicemail" else tenant.loops


def build_plan(req: MessageRequest, index: ClipIndex, *, now: datetime) -> Plan:
    template = (
        req.tenant.template_human if req.variant == "human" else req.tenant.template_voicemail
    )
    return plan_message(
        template,
        template_values(req),
        index,
        today=local_today(req.tenant, now),
        loops=loops_for(req.tenant, req.variant),
        fallback=req.tenant.fallback,
    )

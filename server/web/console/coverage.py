"""Coverage: every phrase and word a tenant's calls can need, recorded or spoken by
text-to-speech, and the recording script for what is missing (text and CSV)."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from prompts.models import ClipIndex
from prompts.script import RecordingScript, ScriptLine, recording_script
from server.calls.phrases import ENDINGS, SORRY, menu_text
from server.keys import reminders_key, runtime_key
from server.tenants import Tenant
from server.web.console.pages import page, render, tenant_for, to_chosen_tenant

routes = web.RouteTableDef()


@dataclass(frozen=True)
class Need:
    line: ScriptLine
    status: str  # recorded | joined | other-take | tts
    note: str


STATUS_TEXT = {
    "recorded": "recorded",
    "joined": "recorded in pieces",
    "other-take": "other take only",
    "tts": "text-to-speech",
}


def call_texts(tenant: Tenant) -> list[str]:
    """Every template a call of this tenant can speak: both messages, the menu, the endings."""
    fixed = [menu_text(tenant), SORRY, *ENDINGS.values()]
    # Fixed sentences are templates without slots: escape any brace they might contain.
    escaped = [t.replace("{", "{{").replace("}", "}}") for t in fixed]
    return [tenant.template_human, tenant.template_voicemail, *escaped]


async def _scripts(request: web.Request, tenant: Tenant) -> tuple[RecordingScript, RecordingScript]:
    """(everything needed, what is still missing) for the tenant's voice and templates."""
    rt = request.app[runtime_key]
    recent = await request.app[reminders_key].list_recent(tenant.slug, limit=500)
    providers = sorted({r.provider for r in recent if r.provider})
    samples: dict[str, object] = {"tenant": tenant.name, "provider": providers}
    index = await rt.catalogue.clip_index(tenant.voice, tenant.slug)
    texts = call_texts(tenant)
    return (
        recording_script(texts, ClipIndex(), sample_values=samples),
        recording_script(texts, index, sample_values=samples),
    )


def needs(everything: RecordingScript, missing: RecordingScript) -> list[Need]:
    lacking = {(line.text, line.variant): line for line in missing.lines}
    out: list[Need] = []
    for line in everything.lines:
        gap = lacking.get((line.text, line.variant))
        if gap is None:
            out.append(Need(line, "recorded", ""))
        elif "covered by" in gap.note:
            out.append(Need(line, "joined", gap.note))
        elif gap.note.startswith("only a") or "; only a" in gap.note:
            out.append(Need(line, "other-take", gap.note))
        else:
            out.append(Need(line, "tts", gap.note))
    return out


@routes.get("/console/coverage")
@page(nav="coverage")
async def coverage_default(request: web.Request) -> web.StreamResponse:
    return await to_chosen_tenant(request, "coverage", "Coverage")


@routes.get("/console/tenants/{slug}/coverage")
@page(nav="coverage")
async def coverage(request: web.Request) -> web.StreamResponse:
    tenant = await tenant_for(request, request.match_info["slug"])
    everything, missing = await _scripts(request, tenant)
    items = needs(everything, missing)
    counts = {key: sum(1 for n in items if n.status == key) for key in STATUS_TEXT}
    return render(
        request,
        "coverage.html",
        {
            "tenant": tenant,
            "phrases": [n for n in items if n.line.id.startswith("P")],
            "words": [n for n in items if n.line.id.startswith("W")],
            "counts": counts,
            "total": len(items),
            "status_text": STATUS_TEXT,
            "to_record": len(missing),
        },
    )


@routes.get("/console/tenants/{slug}/script.{fmt:txt|csv}")
@page("data")
async def script(request: web.Request) -> web.StreamResponse:
    tenant = await tenant_for(request, request.match_info["slug"])
    _, missing = await _scripts(request, tenant)
    fmt = request.match_info["fmt"]
    body = missing.to_csv() if fmt == "csv" else missing.to_text()
    return web.Response(
        text=body,
        content_type="text/csv" if fmt == "csv" else "text/plain",
        charset="utf-8",
        headers={
            "Content-Disposition": f'attachment; filename="{tenant.slug}-recording-script.{fmt}"',
            "Cache-Control": "no-store",
        },
    )

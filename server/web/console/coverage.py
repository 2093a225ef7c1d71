"""Coverage: every phrase and word a tenant's calls can need, recorded or spoken by
text-to-speech, and the recording script for what is missing (text and CSV)."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from prompts.script import RecordingScript, ScriptLine
from server.calls.script import call_scripts
from server.keys import reminders_key, runtime_key
from server.tenants import Tenant
from server.web.console.pages import page, render, tenant_for, to_chosen_tenant

__all__ = ["STATUS_TEXT", "Need", "needs", "routes"]

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


async def _scripts(request: web.Request, tenant: Tenant) -> tuple[RecordingScript, RecordingScript]:
    """(everything needed, what is still missing): the same list as `voiceprompt bank script`."""
    scripts = await call_scripts(
        tenant, request.app[runtime_key].catalogue, request.app[reminders_key]
    )
    return scripts.everything, scripts.missing


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

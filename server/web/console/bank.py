"""The voice bank page: clips per voice and tenant, uploads (single files and long takes), and
each clip's audio for the page's players."""

from __future__ import annotations

import asyncio
import math
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from prompts.models import Variant
from server.errors import Forbidden, NotFound, ValidationError
from server.keys import runtime_key, voices_key
from server.runtime import Runtime
from server.tenants import Tenant
from server.web.console.pages import (
    audio_response,
    chosen_tenant,
    form_text,
    page,
    render,
    session_of,
    tenant_for,
    visible_tenants,
)
from voicebank.catalogue import ClipRecord
from voicebank.checks import CheckResult
from voicebank.errors import CatalogueError, IngestError
from voicebank.importer import FileResult, add_file, add_take, transcript_from_filename

routes = web.RouteTableDef()
_VOICE_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
SHARED = "shared"
PAGE_SIZE = 100  # clips per page of the voice bank


@dataclass(frozen=True)
class Upload:
    """One uploaded file's fate, as the page shows it."""

    filename: str
    transcript: str
    variant: str
    status: str  # added | unchanged | rejected
    message: str
    clip_id: int | None = None


async def latest_checks(rt: Runtime, clip_ids: list[int]) -> dict[int, CheckView]:
    """Each clip's last fetchability check (voicebank.checks), for the page; none: "—"."""
    if not clip_ids:
        return {}
    found = await rt.checks.latest(clip_ids)
    return {clip_id: CheckView.of(check) for clip_id, check in found.items()}


@dataclass(frozen=True)
class CheckView:
    ok: bool
    text: str
    title: str

    @classmethod
    def of(cls, check: CheckResult) -> CheckView:
        when = check.checked_at.strftime("%Y-%m-%d %H:%M UTC")
        if check.ok:
            return cls(True, f"ok · {when}", check.url)
        status = f"HTTP {check.status}" if check.status is not None else "no answer"
        return cls(False, f"failed · {when}: {check.reason or status}", f"{status} {check.url}")


async def _voices(request: web.Request, tenants: list[Tenant]) -> list[str]:
    rt = request.app[runtime_key]
    known = [v.id for v, _ in await rt.catalogue.list_voices()]
    return list(dict.fromkeys([*known, *(t.voice for t in tenants)]))


# Far past any voice's last page, and small enough that its offset fits a database integer
# (?page=99999999999999999999 was a 500 from SQLite and PostgreSQL alike).
MAX_PAGE = 1_000_000


def _page_number(request: web.Request) -> int:
    """``?page=`` as asked for; anything that is not a number counts as the first page."""
    try:
        return min(MAX_PAGE, max(1, int(request.query.get("page", "1"))))
    except ValueError:
        return 1


@dataclass(frozen=True)
class Pager:
    """Which page of a voice's clips is shown, with links that keep the page's filters."""

    number: int
    pages: int
    total: int
    first: int  # 1-based position of the first clip shown (0: none)
    last: int
    params: dict[str, str]

    def href(self, number: int) -> str:
        return "/console/bank?" + urlencode({**self.params, "page": str(number)})

    @property
    def previous(self) -> str | None:
        return self.href(self.number - 1) if self.number > 1 else None

    @property
    def next(self) -> str | None:
        return self.href(self.number + 1) if self.number < self.pages else None


async def _clip_page(
    request: web.Request, voice: str, tenants: list[str] | None, params: dict[str, str]
) -> tuple[Pager, list[ClipRecord]]:
    """One page of ``voice``'s clips, limited and offset in the database. A page past the last
    shows the last page (and a page below 1, or not a number, the first), so an old link to a
    page that no longer exists still shows clips."""
    rt = request.app[runtime_key]
    number = _page_number(request)
    total, clips = await rt.catalogue.clip_page(
        voice, tenants=tenants, limit=PAGE_SIZE, offset=(number - 1) * PAGE_SIZE
    )
    pages = max(1, math.ceil(total / PAGE_SIZE))
    if number > pages:
        number = pages
        total, clips = await rt.catalogue.clip_page(
            voice, tenants=tenants, limit=PAGE_SIZE, offset=(number - 1) * PAGE_SIZE
        )
        pages = max(1, math.ceil(total / PAGE_SIZE))
    first = (number - 1) * PAGE_SIZE + 1 if clips else 0
    pager = Pager(number, pages, total, first, first + len(clips) - 1 if clips else 0, params)
    return pager, clips


async def _bank_context(
    request: web.Request, voice: str | None = None, tenant_filter: str | None = None
) -> dict[str, Any]:
    principal = session_of(request).principal
    tenants = await visible_tenants(request)
    # The clips' owners to show ("" is shared; None: everyone's) and the filters page links keep.
    owners: list[str] | None
    if principal.is_admin:
        voices = await _voices(request, tenants)
        voice = voice or request.query.get("voice") or (voices[0] if voices else "")
        tenant_filter = (
            tenant_filter if tenant_filter is not None else request.query.get("tenant", "")
        )
        if tenant_filter not in ("", SHARED):
            await tenant_for(request, tenant_filter)  # 404 for an unknown one
        owners = [""] if tenant_filter == SHARED else [tenant_filter] if tenant_filter else None
        params = {k: v for k, v in (("voice", voice), ("tenant", tenant_filter)) if v}
    else:
        own = await chosen_tenant(request)  # 403 for another tenant's ?tenant=
        assert own is not None
        voices = [own.voice]
        voice = own.voice
        tenant_filter = own.slug
        owners = ["", own.slug]  # the shared clips, then its own
        params = {}
    if voice:
        pager, clips = await _clip_page(request, voice, owners, params)
    else:
        pager, clips = Pager(1, 1, 0, 0, 0, params), []
    # The page's clips come ordered by owner (shared first), so each owner's run is one group.
    groups: dict[str, list[ClipRecord]] = {}
    for clip in clips:
        groups.setdefault(clip.tenant, []).append(clip)
    checks = await latest_checks(request.app[runtime_key], [c.id for c in clips])
    return {
        "tenants": tenants,
        "voices": voices,
        "voice": voice,
        "tenant_filter": tenant_filter,
        "groups": list(groups.items()),
        "count": pager.total,
        "pager": pager,
        "checks": checks,
        "variants": [v.value for v in Variant],
        "uploads": [],
        "take": None,
        "upload_error": None,
    }


@routes.get("/console/bank")
@page(nav="bank")
async def bank(request: web.Request) -> web.StreamResponse:
    return render(request, "bank.html", await _bank_context(request))


async def _destination(request: web.Request, form: Any) -> tuple[str, str]:
    """(voice, tenant slug or "" for shared) an upload goes to; a tenant uploads only its own."""
    rt = request.app[runtime_key]
    principal = session_of(request).principal
    slug = form_text(form, "tenant").strip()
    if not principal.is_admin:
        if slug and slug != principal.tenant:
            raise Forbidden(f"this key may not upload for tenant {slug!r}")
        assert principal.tenant is not None
        own = await rt.tenants.get(principal.tenant)
        await rt.catalogue.ensure_voice(own.voice)
        return own.voice, own.slug
    if slug == SHARED:
        slug = ""
    if slug:
        await rt.tenants.get(slug)
    voice = form_text(form, "voice").strip()
    if not _VOICE_ID.match(voice):
        raise ValidationError(
            f"voice {voice!r} must be lower-case letters, digits, '-' or '_'", "voice"
        )
    await rt.catalogue.ensure_voice(voice)
    return voice, slug


def _variant(form: Any) -> Variant | None:
    text = form_text(form, "variant")
    if not text:
        return None
    try:
        return Variant(text)
    except ValueError:
        raise ValidationError(
            f"variant {text!r} is not one of any, continuing, final", "variant"
        ) from None


def _invalidate_calls(request: web.Request) -> None:
    """New clips reach calls now, not after the webhooks' index cache expires."""
    if voices_key in request.app:
        request.app[voices_key].invalidate()


def _upload(result: FileResult, variant: Variant) -> Upload:
    if result.error is not None:
        return Upload(result.filename, result.transcript, variant.value, "rejected", result.error)
    if result.unchanged:
        return Upload(
            result.filename,
            result.transcript,
            variant.value,
            "unchanged",
            "the current take is this very file; nothing changed",
        )
    clip = result.clip
    assert clip is not None
    return Upload(
        result.filename,
        result.transcript,
        variant.value,
        "added",
        f"clip {clip.id}: {clip.duration_ms / 1000:.2f} s at {clip.lufs:.1f} LUFS",
        clip.id,
    )


def _files(form: Any, name: str) -> list[web.FileField]:
    return [f for f in form.getall(name, []) if isinstance(f, web.FileField) and f.filename]


@routes.post("/console/bank/upload")
@page(nav="bank")
async def upload(request: web.Request) -> web.StreamResponse:
    rt = request.app[runtime_key]
    form = await request.post()
    voice, slug = await _destination(request, form)
    chosen = _variant(form)
    files = _files(form, "files")
    uploads: list[Upload] = []
    for field in files:
        data = await asyncio.to_thread(field.file.read)
        transcript, named = transcript_from_filename(field.filename)
        variant = chosen or named
        if not transcript:
            uploads.append(
                Upload(
                    field.filename,
                    "",
                    variant.value,
                    "rejected",
                    "the file name has no words to use as its transcript",
                )
            )
            continue
        result = await add_file(
            rt.catalogue,
            voice,
            field.filename,
            data,
            transcript,
            variant=variant,
            tenant=slug,
            target_lufs=rt.settings.target_lufs,
        )
        uploads.append(_upload(result, variant))
    _invalidate_calls(request)
    ctx = await _bank_context(request, voice, slug or SHARED)
    ctx["uploads"] = uploads
    if not files:
        ctx["upload_error"] = "Choose or drop at least one audio file."
    status = 422 if not files or all(u.status == "rejected" for u in uploads) else 200
    return render(request, "bank.html", ctx, status=status)


@routes.post("/console/bank/take")
@page(nav="bank")
async def take(request: web.Request) -> web.StreamResponse:
    rt = request.app[runtime_key]
    form = await request.post()
    voice, slug = await _destination(request, form)
    variant = _variant(form) or Variant.ANY
    files = _files(form, "take")
    script = [line for line in form_text(form, "script").splitlines() if line.strip()]
    result: dict[str, Any] = {"ok": False, "clips": [], "error": None, "filename": ""}
    if not files:
        result["error"] = "Choose the recording of the long take."
    elif not script:
        result["error"] = "Paste the script: one line per phrase, in the order they were read."
    else:
        field = files[0]
        result["filename"] = field.filename
        data = await asyncio.to_thread(field.file.read)
        try:
            clips = await add_take(
                rt.catalogue,
                voice,
                field.filename,
                data,
                script,
                variant=variant,
                tenant=slug,
                target_lufs=rt.settings.target_lufs,
            )
        except (IngestError, CatalogueError) as exc:
            result["error"] = str(exc)
        else:
            result.update(ok=True, clips=clips)
            _invalidate_calls(request)
    ctx = await _bank_context(request, voice, slug or SHARED)
    ctx["take"] = result
    ctx["script"] = "\n".join(script)
    return render(request, "bank.html", ctx, status=200 if result["ok"] else 422)


@routes.get(r"/console/clips/{id:\d+}.mp3")
@page("data")
async def clip_audio(request: web.Request) -> web.StreamResponse:
    """A clip's delivery MP3, for the page's players (another tenant's clip is "not found")."""
    rt = request.app[runtime_key]
    principal = session_of(request).principal
    try:
        clip = await rt.catalogue.get_clip(int(request.match_info["id"]))
    except CatalogueError:
        raise NotFound("no such clip") from None
    if not principal.is_admin and clip.tenant not in ("", principal.tenant):
        raise NotFound("no such clip")
    data = await asyncio.to_thread(rt.storage.get, clip.storage_key)
    # A clip id's bytes never change, but they are private to the people who may see the clip.
    return audio_response(request, data, cache_control="private, max-age=86400")

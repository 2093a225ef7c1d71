"""``POST /api/voicebank/slurp``: copy a tenant-hosted recording into the voice bank.

Body ``{"url", "tenant", "transcript", "variant"?, "voice"?}``. The file is downloaded (size
limit, total timeout, audio only), ingested like an upload and served from our storage from
then on. A tenant key may slurp for its own tenant, into the tenant's voice; the admin may name
another voice. A rejected file is a 422 naming the reason.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from prompts.models import Variant
from server.errors import ValidationError
from server.keys import runtime_key
from server.settings import Settings
from server.web.auth import authenticate
from voicebank.slurp import SlurpLimits, slurp_into_voice

routes = web.RouteTableDef()
VARIANTS = tuple(v.value for v in Variant)


def limits_for(settings: Settings, *, allow_private: bool | None = None) -> SlurpLimits:
    """The slurp limits the settings give (VOICEPROMPT_SLURP_*), here and in ``bank slurp``."""
    return SlurpLimits(
        max_bytes=settings.slurp_max_bytes,
        timeout_s=settings.slurp_timeout,
        allow_private=settings.slurp_allow_private if allow_private is None else allow_private,
    )


def _text(body: dict[str, Any], name: str, *, required: bool = True) -> str | None:
    value = body.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip():
        raise ValidationError(f"{name} must be a non-empty string", name)
    return value.strip()


@routes.post("/api/voicebank/slurp")
async def slurp_clip(request: web.Request) -> web.Response:
    principal = await authenticate(request)
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ValidationError("the request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise ValidationError("the request body must be a JSON object")
    unknown = set(body) - {"url", "tenant", "transcript", "variant", "voice"}
    if unknown:
        name = sorted(unknown)[0]
        raise ValidationError(f"unknown field {name!r}", name)
    url = _text(body, "url")
    slug = _text(body, "tenant")
    transcript = _text(body, "transcript")
    variant = _text(body, "variant", required=False) or "any"
    if variant not in VARIANTS:
        raise ValidationError(f"variant must be one of {', '.join(VARIANTS)}", "variant")
    voice = _text(body, "voice", required=False)
    assert url is not None and slug is not None and transcript is not None
    principal.require_tenant(slug)
    rt = request.app[runtime_key]
    tenant = await rt.tenants.get(slug)
    if voice is not None and voice != tenant.voice:
        principal.require_admin()
    result = await slurp_into_voice(
        rt.catalogue,
        url,
        voice_id=voice or tenant.voice,
        transcript=transcript,
        tenant=tenant.slug,
        variant=Variant(variant),
        target_lufs=rt.settings.target_lufs,
        limits=limits_for(rt.settings),
    )
    if result.error is not None:
        raise ValidationError(result.error, "url")
    if result.clip is None:
        return web.json_response({"unchanged": True, "transcript": transcript})
    clip = result.clip
    return web.json_response(
        {
            "id": clip.id,
            "voice": clip.voice_id,
            "tenant": clip.tenant,
            "transcript": clip.transcript,
            "variant": clip.variant.value,
            "duration_ms": clip.duration_ms,
            "source": clip.source,
            "url": rt.storage.url(clip.storage_key),
        },
        status=201,
    )

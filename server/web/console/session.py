"""Console sign-in: a form takes the admin token or a tenant's API key; a signed cookie keeps it.

The cookie never holds the token itself, only what it proves and a way to notice when it stops
being valid::

    base64url(JSON {"t": tenant slug or null, "kh": sha256(token), "csrf": ..., "exp": ...})
    + "." + base64url(HMAC-SHA256(secret, that))

``kh`` is the same hash the tenants table keeps, so rotating a tenant's key (or changing the
admin token) ends every console session signed in with the old one, on every server process.
The secret is derived from the admin token, so all processes of one installation accept each
other's cookies; without an admin token it is random per process (sessions end on restart).

The cookie is HttpOnly and SameSite=Strict; every POST also carries the session's CSRF token and
must come from our own origin when the browser says where it came from.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import sqlalchemy as sa
from aiohttp import web

from server.db.schema import tenants
from server.keys import runtime_key, secret_key
from server.settings import Settings
from server.tenants import hash_api_key
from server.web.auth import Principal

COOKIE = "vp_console"
MAX_AGE_S = 12 * 3600
CSRF_FIELD = "csrf"


@dataclass(frozen=True)
class Session:
    principal: Principal
    csrf: str
    expires: int


session_key = web.RequestKey("console_session", Session)


def make_secret(settings: Settings) -> bytes:
    """The HMAC key for session cookies (see the module docstring)."""
    if settings.admin_token:
        return hmac.new(
            settings.admin_token.encode(), b"voiceprompt console session v1", hashlib.sha256
        ).digest()
    return secrets.token_bytes(32)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def encode_cookie(secret: bytes, payload: Mapping[str, Any]) -> str:
    body = _b64(json.dumps(payload, separators=(",", ":"), sort_keys=True).encode())
    mac = hmac.new(secret, body.encode(), hashlib.sha256).digest()
    return f"{body}.{_b64(mac)}"


def decode_cookie(secret: bytes, value: str, *, now: float | None = None) -> dict[str, Any] | None:
    """The payload of a cookie we signed that has not expired, else None."""
    body, _, mac = value.partition(".")
    try:
        expected = hmac.new(secret, body.encode(), hashlib.sha256).digest()
        if not hmac.compare_digest(expected, _unb64(mac)):
            return None
        payload = json.loads(_unb64(body))
    except (binascii.Error, ValueError):
        return None
    if not isinstance(payload, dict):
        return None
    exp = payload.get("exp")
    if not isinstance(exp, int) or exp < (time.time() if now is None else now):
        return None
    return payload


async def principal_for_token(request: web.Request, token: str) -> Principal | None:
    """Who ``token`` signs in as: the admin, a tenant, or nobody."""
    token = token.strip()
    if not token:
        return None
    rt = request.app[runtime_key]
    admin = rt.settings.admin_token
    if admin and hmac.compare_digest(token.encode(), admin.encode()):
        return Principal(None)
    tenant = await rt.tenants.by_api_key(token)
    return None if tenant is None else Principal(tenant.slug)


async def _still_valid(request: web.Request, payload: Mapping[str, Any]) -> Principal | None:
    """The cookie's principal, if the key it was made with is still the current one."""
    key_hash = payload.get("kh")
    slug = payload.get("t")
    if not isinstance(key_hash, str):
        return None
    rt = request.app[runtime_key]
    if slug is None:
        admin = rt.settings.admin_token
        if admin and hmac.compare_digest(hash_api_key(admin), key_hash):
            return Principal(None)
        return None
    if not isinstance(slug, str):
        return None
    async with rt.engine.connect() as conn:
        found = (
            await conn.execute(
                sa.select(tenants.c.slug).where(
                    tenants.c.slug == slug, tenants.c.api_key_hash == key_hash
                )
            )
        ).first()
    return Principal(slug) if found else None


async def current_session(request: web.Request) -> Session | None:
    value = request.cookies.get(COOKIE)
    if not value:
        return None
    payload = decode_cookie(request.app[secret_key], value)
    if payload is None:
        return None
    principal = await _still_valid(request, payload)
    csrf = payload.get("csrf")
    if principal is None or not isinstance(csrf, str):
        return None
    return Session(principal, csrf, int(payload["exp"]))


def _is_https(request: web.Request) -> bool:
    # Only decides the cookie's Secure flag, so trusting a proxy's header costs nothing.
    return request.secure or request.headers.get("X-Forwarded-Proto", "").lower() == "https"


def start_session(
    request: web.Request, response: web.StreamResponse, principal: Principal, token: str
) -> None:
    payload = {
        "t": principal.tenant,
        "kh": hash_api_key(token.strip()),
        "csrf": secrets.token_urlsafe(24),
        "exp": int(time.time()) + MAX_AGE_S,
    }
    response.set_cookie(
        COOKIE,
        encode_cookie(request.app[secret_key], payload),
        max_age=MAX_AGE_S,
        path="/",
        httponly=True,
        samesite="Strict",
        secure=_is_https(request),
    )


def end_session(response: web.StreamResponse) -> None:
    response.del_cookie(COOKIE, path="/")


def same_origin(request: web.Request) -> bool:
    """False when the browser says the request came from another site (Origin or Referer)."""
    source = request.headers.get("Origin") or request.headers.get("Referer")
    if not source or source == "null":
        # Old browsers and non-browser clients send neither; the CSRF token still protects.
        return source != "null"
    ours = {request.host, urlsplit(request.app[runtime_key].settings.public_url).netloc}
    forwarded = request.headers.get("X-Forwarded-Host")
    if forwarded:
        ours.add(forwarded)
    return urlsplit(source).netloc in ours


def csrf_ok(session: Session, submitted: str | None) -> bool:
    return bool(submitted) and hmac.compare_digest(
        session.csrf.encode(), (submitted or "").encode()
    )


def safe_next(target: str | None) -> str:
    """A local path to go to after signing in (never another site)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target

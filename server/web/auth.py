"""Who is calling the API: the admin (``VOICEPROMPT_ADMIN_TOKEN``) or one tenant (its API key)."""

from __future__ import annotations

import hmac
import json
import math
from dataclasses import dataclass

from aiohttp import web

from server.errors import Forbidden
from server.keys import runtime_key, throttle_key
from server.web.throttle import client_address


@dataclass(frozen=True)
class Principal:
    tenant: str | None  # None = admin

    @property
    def is_admin(self) -> bool:
        return self.tenant is None

    def require_tenant(self, slug: str) -> None:
        """Tenants see only their own things; an unknown-to-you tenant looks like a missing one."""
        if self.tenant is not None and self.tenant != slug:
            raise Forbidden(f"this key may not access tenant {slug!r}")

    def require_admin(self) -> None:
        if not self.is_admin:
            raise Forbidden("this needs the admin token")


principal_key = web.RequestKey("principal", Principal)


def _unauthorized(message: str) -> web.HTTPUnauthorized:
    # The same JSON shape as every other API error.
    return web.HTTPUnauthorized(
        text=json.dumps({"error": message, "field": None}),
        content_type="application/json",
        headers={"WWW-Authenticate": "Bearer"},
    )


async def authenticate(request: web.Request) -> Principal:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise _unauthorized("send Authorization: Bearer <admin token or tenant API key>")
    token = token.strip()
    rt = request.app[runtime_key]
    throttle = request.app[throttle_key]
    address = client_address(request, rt.settings.trusted_proxies)
    wait = throttle.locked_for(address)
    if wait is not None:
        seconds = math.ceil(wait)
        raise web.HTTPTooManyRequests(
            text=json.dumps(
                {
                    "error": f"too many wrong tokens from {address}; try again in {seconds} s",
                    "field": None,
                }
            ),
            content_type="application/json",
            headers={"Retry-After": str(seconds)},
        )
    admin = rt.settings.admin_token
    if admin and hmac.compare_digest(token.encode(), admin.encode()):
        return Principal(None)
    tenant = await rt.tenants.by_api_key(token)
    if tenant is None:
        throttle.failed(address)
        raise _unauthorized("unknown token")
    return Principal(tenant.slug)

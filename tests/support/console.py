"""Helpers for the console tests: a signed-in HTTP client with its own cookie jar (so one test can
be the admin and a tenant at once), and a second tenant with its own clip and reminder."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from html.parser import HTMLParser
from typing import Any

import aiohttp

from server.reminders import Reminder
from server.tenants import Tenant
from tests.support.server import APPOINTMENT, PROVIDER, TO, VOICE, Env, ingested
from voicebank.catalogue import ClipRecord

SECRET_PHRASE = "our private farewell"
CSRF = re.compile(r'name="csrf" value="([^"]+)"')


@dataclass
class Console:
    http: aiohttp.ClientSession
    csrf: str

    async def get(self, path: str, **kwargs: Any) -> tuple[int, str]:
        async with self.http.get(path, allow_redirects=False, **kwargs) as resp:
            return resp.status, await resp.text(errors="replace")

    async def get_bytes(self, path: str, **kwargs: Any) -> aiohttp.ClientResponse:
        resp = await self.http.get(path, allow_redirects=False, **kwargs)
        await resp.read()
        return resp

    async def post(
        self,
        path: str,
        data: Mapping[str, Any] | aiohttp.FormData,
        *,
        csrf: bool = True,
        **kwargs: Any,
    ) -> tuple[int, str, aiohttp.ClientResponse]:
        if isinstance(data, aiohttp.FormData):
            if csrf:
                data.add_field("csrf", self.csrf)
            body: Any = data
        else:
            body = {**({"csrf": self.csrf} if csrf else {}), **data}
        async with self.http.post(path, data=body, allow_redirects=False, **kwargs) as resp:
            return resp.status, await resp.text(errors="replace"), resp


def base_url(env: Env) -> str:
    return str(env.client.make_url("/")).rstrip("/")


@asynccontextmanager
async def signed_in(env: Env, token: str) -> AsyncIterator[Console]:
    """A fresh cookie jar, signed in with ``token`` through the sign-in form."""
    jar = aiohttp.CookieJar(unsafe=True)  # the server is 127.0.0.1, an IP address
    async with aiohttp.ClientSession(base_url=base_url(env), cookie_jar=jar) as http:
        async with http.post(
            "/console/login", data={"token": token, "next": "/"}, allow_redirects=False
        ) as resp:
            assert resp.status == 303, await resp.text()
        async with http.get("/") as resp:
            assert resp.status == 200, await resp.text()
            found = CSRF.search(await resp.text())
        assert found, "no CSRF token on the home page"
        yield Console(http, found.group(1))


class _FormReader(HTMLParser):
    """What a browser would submit for one form (inputs, checked boxes, selected options,
    textareas) when nobody touches it."""

    def __init__(self, action: str) -> None:
        super().__init__(convert_charrefs=True)
        self.action = action
        self.inside = False
        self.values: dict[str, str] = {}
        self._select: str | None = None
        self._textarea: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form":
            self.inside = a.get("action") == self.action
        if not self.inside:
            return
        name = a.get("name", "")
        if tag == "input" and name:
            kind = a.get("type", "text")
            if kind in ("checkbox", "radio"):
                if "checked" in a:
                    self.values[name] = a.get("value") or "on"
            elif kind not in ("submit", "file"):
                self.values[name] = a.get("value", "")
        elif tag == "select":
            self._select = name
        elif tag == "option" and self._select and "selected" in a:
            self.values[self._select] = a.get("value", "")
        elif tag == "textarea":
            self._textarea = name
            self.values[name] = ""

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self.inside = False
        elif tag == "select":
            self._select = None
        elif tag == "textarea":
            self._textarea = None

    def handle_data(self, data: str) -> None:
        if self._textarea:
            self.values[self._textarea] += data


def form_values(html: str, action: str) -> dict[str, str]:
    reader = _FormReader(action)
    reader.feed(html)
    return reader.values


@dataclass
class Other:
    """A second tenant with a clip of its own and a reminder: what the first must never see."""

    tenant: Tenant
    api_key: str
    clip: ClipRecord
    reminder: Reminder


async def other_tenant(env: Env, slug: str = "other") -> Other:
    rt = env.runtime
    tenant, key = await rt.tenants.create(Tenant(slug=slug, name="Other Clinic", voice=VOICE))
    _, processed = ingested("goodbye")
    clip = await rt.catalogue.add_clip(VOICE, SECRET_PHRASE, processed, tenant=slug)
    reminder = await env.store.create(tenant, TO, APPOINTMENT, PROVIDER)
    return Other(tenant, key, clip, reminder)


__all__ = [
    "SECRET_PHRASE",
    "Console",
    "Other",
    "base_url",
    "form_values",
    "other_tenant",
    "signed_in",
]

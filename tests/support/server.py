"""Shared fixtures for the server tests: a running app on a migrated database (SQLite and
PostgreSQL, from conftest's ``db_url``), one tenant, and a small voice of real Asterisk recordings,
plus helpers that drive the app the way Twilio does (signed form POSTs, parsed TwiML).

A test module imports the fixtures it uses by their function names (``env_fixture`` provides
``env``), so the names its tests take as arguments shadow nothing.

Speed: the voice is imported once per session through the real path (ingest, catalogue, storage)
into a template: a migrated SQLite file and a media folder. Each test hard-links the media folder
and copies the SQLite file (or, on PostgreSQL, empties the session database and inserts the
template's rows), which costs milliseconds instead of an import and a migration.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from aiohttp import ClientResponse, web
from aiohttp.test_utils import TestClient
from sqlalchemy.ext.asyncio import AsyncEngine

from server.app import create_app
from server.calls.outbox import Outbox
from server.calls.signature import SIGNATURE_HEADER, sign
from server.db.engine import create_engine
from server.db.schema import clips as clip_table
from server.db.schema import metadata
from server.db.schema import voices as voice_table
from server.keys import audio_key, outbox_key, reminders_key, runtime_key
from server.reminders import Event, Reminder, ReminderStore
from server.runtime import Runtime, open_runtime
from server.settings import Settings
from server.tenants import Tenant
from voicebank.asterisk import DEFAULT_SOUNDS, find_transcript_file, read_transcript_file
from voicebank.catalogue import ClipRecord
from voicebank.ingest import ProcessedClip, ingest_bytes

AUTH_TOKEN = "0123456789abcdef0123456789abcdef"
ADMIN_TOKEN = "admin-secret-token"
# Not the loopback address the test server listens on: signatures must be checked against the
# public URL (a proxy or tunnel sits in front in production), never against what the app sees.
PUBLIC_URL = "https://voice.example.com"
VOICE = "asterisk"
TZ = ZoneInfo("America/New_York")
# 15:00 local -> "three p.m."; only the time is spoken, so the plan does not depend on today.
APPOINTMENT = datetime(2031, 3, 4, 15, 0, tzinfo=TZ)
PROVIDER = "Doctor Grey"
TO = "(415) 555-0134"

# Asterisk sound names (their transcripts come from the pack's list): 14 clips that cover most
# of the test templates and every word of the menu but "to confirm", "appointment" and the like.
SOUNDS = (
    "hello",
    "your",
    "with",
    "is",
    "digits/at",
    "digits/3",
    "digits/p-m",
    "auth-thankyou",
    "goodbye",
    "vm-press",
    "digits/1",
    "digits/5",
    "digits/9",
    "digits/star",
)
HUMAN_TEMPLATE = "Hello. Your appointment with {provider} is at {appointment:time}."
VOICEMAIL_TEMPLATE = (
    "Hello. Your appointment with {provider} is at {appointment:time}. Thank you. Goodbye."
)


@cache
def _transcripts() -> dict[str, str]:
    path = find_transcript_file(DEFAULT_SOUNDS)
    if path is None:
        raise RuntimeError("the Asterisk transcript list is not installed")
    return read_transcript_file(path)


@cache
def ingested(name: str) -> tuple[str, ProcessedClip]:
    """(transcript, processed clip) of one Asterisk sound, processed once per process."""
    path = DEFAULT_SOUNDS / f"{name}.wav"
    return _transcripts()[name], ingest_bytes(path.read_bytes(), path.name)


def needs_asterisk_sounds() -> None:
    if not (DEFAULT_SOUNDS / "hello.wav").is_file() or find_transcript_file(DEFAULT_SOUNDS) is None:
        pytest.skip("Asterisk English sounds are not installed")


async def import_voice(rt: Runtime, names: Sequence[str] = SOUNDS) -> dict[str, ClipRecord]:
    """Store the (cached) processed clips as voice ``VOICE``; returns them by sound name."""
    await rt.catalogue.ensure_voice(VOICE, "Asterisk (Allison Smith)")
    items = [ingested(n) for n in names]
    records = await rt.catalogue.add_clips(VOICE, items, source="asterisk")
    return dict(zip(names, records, strict=True))


def parse_twiml(body: bytes) -> ET.Element:
    root = ET.fromstring(body)
    assert root.tag == "Response", body
    return root


@dataclass
class Env:
    """A running app with one tenant and its voice, and helpers to drive it like Twilio does."""

    client: TestClient[web.Request, web.Application]
    settings: Settings
    tenant: Tenant
    api_key: str
    clips: dict[str, ClipRecord]
    call_count: int = field(default=0)

    @property
    def app(self) -> web.Application:
        app = self.client.app
        assert app is not None
        return app

    @property
    def runtime(self) -> Runtime:
        return self.app[runtime_key]

    @property
    def store(self) -> ReminderStore:
        return self.app[reminders_key]

    @property
    def outbox(self) -> Outbox:
        return self.app[outbox_key]

    def url(self, name: str) -> str:
        """The public URL of a clip's MP3 (what <Play> holds)."""
        return self.runtime.storage.url(self.clips[name].storage_key)

    def clip_path(self, name: str) -> Path:
        storage = self.runtime.storage
        return storage.path(self.clips[name].storage_key)  # type: ignore[attr-defined, no-any-return]

    async def set_tenant(self, **changes: Any) -> Tenant:
        self.tenant = await self.runtime.tenants.update(self.tenant.slug, changes)
        return self.tenant

    async def reminder(self, **overrides: Any) -> Reminder:
        tenant = await self.runtime.tenants.get(overrides.pop("tenant", self.tenant.slug))
        args: dict[str, Any] = {
            "to": TO,
            "appointment_at": APPOINTMENT,
            "provider": PROVIDER,
            "values": None,
        }
        args.update(overrides)
        return await self.store.create(tenant, **args)

    async def drain(self) -> None:
        await self.outbox.drain()

    async def events(self, rid: int, kind: str | None = None) -> list[Event]:
        await self.drain()
        return [e for e in await self.store.events(rid) if kind is None or e.kind == kind]

    async def fetch(self, rid: int) -> Reminder:
        await self.drain()
        return await self.store.get(rid)

    def new_call_sid(self) -> str:
        self.call_count += 1
        return f"CA{self.call_count:032x}"

    async def webhook(
        self,
        path_qs: str,
        params: Mapping[str, str] | None = None,
        *,
        signed_url: str | None = None,
        signature: str | None = None,
        unsigned: bool = False,
    ) -> ClientResponse:
        """POST form parameters the way Twilio does: signed over public URL + path + query.

        ``signed_url`` signs for another URL (a replay); ``signature`` sends that header value.
        """
        data = dict(params or {})
        headers: dict[str, str] = {}
        if not unsigned:
            url = signed_url or self.settings.public_url + path_qs
            token = self.settings.twilio_auth_token or ""
            headers[SIGNATURE_HEADER] = signature or sign(token, url, data)
        return await self.client.post(path_qs, data=data, headers=headers)

    async def twiml(self, path_qs: str, params: Mapping[str, str] | None = None) -> ET.Element:
        """A webhook's answer, held to the rules every answer obeys, parsed."""
        resp = await self.webhook(path_qs, params)
        body = await resp.read()
        assert resp.status == 200, body
        assert resp.content_type == "text/xml", resp.headers
        assert body.startswith(b"<?xml"), body[:80]
        return parse_twiml(body)

    async def answer(self, rid: int, answered_by: str = "human") -> str:
        """The call URL's answer for a new call (signed, as Twilio sends it), unparsed."""
        params = {
            "CallSid": self.new_call_sid(),
            "AccountSid": "AC" + "0" * 32,
            "CallStatus": "in-progress",
            "AnsweredBy": answered_by,
        }
        resp = await self.webhook(f"/twilio/voice/{rid}", params)
        body = await resp.text()
        assert resp.status == 200 and body.startswith("<?xml"), body
        return body

    async def settled(self, rid: int, answered_by: str = "human") -> str:
        """The answer once every sentence it needs is stitched: a sentence rendered for the
        first time may take longer than an answer waits, and plays clip by clip that once."""
        await self.answer(rid, answered_by)
        while self.app[audio_key]._background:
            await asyncio.sleep(0.02)
        return await self.answer(rid, answered_by)

    def relative(self, url: str) -> str:
        """Path and query of one of our public URLs (a Gather action, a Redirect)."""
        assert url.startswith(self.settings.public_url + "/"), url
        parts = urlsplit(url)
        return f"{parts.path}?{parts.query}" if parts.query else parts.path

    async def api(
        self, method: str, path: str, *, token: str | None = None, json: Any = None
    ) -> tuple[int, Any]:
        """A REST call with a bearer token (the admin's by default); returns (status, JSON)."""
        headers = {"Authorization": f"Bearer {token or ADMIN_TOKEN}"}
        resp = await self.client.request(method, path, json=json, headers=headers)
        assert resp.content_type == "application/json", (resp.status, await resp.text())
        return resp.status, await resp.json()


def make_settings(tmp_path: Path, db_url: str, **extra: str) -> Settings:
    env = {
        "VOICEPROMPT_DATA_DIR": str(tmp_path / "var"),
        "VOICEPROMPT_DATABASE_URL": db_url,
        "VOICEPROMPT_PUBLIC_URL": PUBLIC_URL,
        "VOICEPROMPT_ADMIN_TOKEN": ADMIN_TOKEN,
        "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
    }
    env.update(extra)
    return Settings.from_env(env)


# The flow's tests read the TwiML clip by clip: ``delivery=clips`` and ``fallback=word`` are the
# comparison modes that keep one <Play> per clip. STITCHED is the product's default.
SMILE = Tenant(
    slug="smile",
    name="Smile Dental",
    voice=VOICE,
    template_human=HUMAN_TEMPLATE,
    template_voicemail=VOICEMAIL_TEMPLATE,
    delivery="clips",
    fallback="word",
)
STITCHED = replace(SMILE, delivery="stitched", fallback="sentence")


@dataclass(frozen=True)
class VoiceTemplate:
    """A migrated SQLite database and a media folder holding the voice, made once per session
    through the real import path; each test copies them instead of importing again."""

    database: Path
    media: Path
    voice: dict[str, Any]
    clips: list[dict[str, Any]]  # rows of the clips table, without ids
    names: dict[str, str]  # storage key -> sound name


async def _build_template(root: Path) -> VoiceTemplate:
    settings = Settings(data_dir=root, public_url=PUBLIC_URL)
    async with open_runtime(settings) as rt:
        records = await import_voice(rt)
        async with rt.engine.connect() as conn:
            voice = dict((await conn.execute(sa.select(voice_table))).one()._mapping)
            rows = [dict(r._mapping) for r in await conn.execute(sa.select(clip_table))]
    for row in rows:
        del row["id"]
    return VoiceTemplate(
        database=root / "voiceprompt.db",
        media=root / "media",
        voice=voice,
        clips=rows,
        names={r.storage_key: name for name, r in records.items()},
    )


@pytest.fixture(scope="session")
def voice_template(tmp_path_factory: pytest.TempPathFactory) -> VoiceTemplate:
    needs_asterisk_sounds()
    return asyncio.run(_build_template(tmp_path_factory.mktemp("voice-template")))


async def _reseed_postgres(engine: AsyncEngine, template: VoiceTemplate) -> None:
    """Empty the session's PostgreSQL database and put the voice back (DELETE is faster than
    TRUNCATE for a few rows; ids keep counting, which no test minds)."""
    now = datetime.now(UTC)
    rows = [{**row, "created_at": now} for row in template.clips]
    async with engine.begin() as conn:
        for table in reversed(metadata.sorted_tables):
            await conn.execute(table.delete())
        await conn.execute(voice_table.insert().values({**template.voice, "created_at": now}))
        await conn.execute(clip_table.insert(), rows)


async def start_env(
    aiohttp_client: Any, settings: Settings, template: VoiceTemplate, tenant: Tenant = SMILE
) -> Env:
    """The app for ``settings`` on a database holding the template's voice, plus one tenant."""
    # Hard links: a test that deletes a clip removes its own link, not the template's file.
    shutil.copytree(template.media, settings.data_dir / "media", copy_function=os.link)
    sqlite = settings.resolved_database_url.startswith("sqlite")
    if sqlite:
        shutil.copyfile(template.database, settings.resolved_database_url.split("///", 1)[1])
    client = await aiohttp_client(create_app(settings))
    rt: Runtime = client.app[runtime_key]
    if not sqlite:
        await _reseed_postgres(rt.engine, template)
    records = await rt.catalogue.list_clips(VOICE)
    by_name = {template.names[r.storage_key]: r for r in records}
    created, key = await rt.tenants.create(tenant)
    return Env(client, settings, created, key, by_name)


MakeEnv = Callable[..., Awaitable[Env]]


@pytest.fixture(name="make_env")
def make_env_fixture(
    aiohttp_client: Any, tmp_path: Path, db_url: str, voice_template: VoiceTemplate
) -> MakeEnv:
    """``await make_env(**environment)``: the app with extra settings (once per test).

    SQLite gets a copy of the template's database; PostgreSQL (the session's database from
    conftest's ``db_url``) is emptied and seeded again.
    """

    async def make(tenant: Tenant = SMILE, **extra: str) -> Env:
        settings = make_settings(tmp_path, db_url, **extra)
        return await start_env(aiohttp_client, settings, voice_template, tenant)

    return make


@pytest.fixture(name="env")
async def env_fixture(make_env: MakeEnv) -> Env:
    """The app on a migrated database (SQLite and PostgreSQL), with signatures checked."""
    return await make_env()


@pytest.fixture(name="reminder")
async def reminder_fixture(env: Env) -> Reminder:
    return await env.reminder()


@asynccontextmanager
async def database_down(env: Env, how: str) -> AsyncIterator[None]:
    """Point every store of the running app at a database that is not there.

    ``never-answers``: a loopback TCP server that accepts connections and never says a word (a
    hung server or a black-holed network); ``closed-port``: nothing listens (connection refused).
    The clip index stays cached, as it would be mid-call. On exit the real engine is back and the
    held connections are cut, so queued events get written.
    """
    held: list[asyncio.StreamWriter] = []
    server: asyncio.Server | None = None
    if how == "never-answers":

        async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            held.append(writer)

        server = await asyncio.start_server(hold, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
    elif how == "closed-port":
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
    else:
        raise ValueError(how)
    bad = create_engine(f"postgresql+asyncpg://nobody@127.0.0.1:{port}/gone")
    rt = env.runtime
    targets: list[Any] = [env.store, env.store.tenants, rt.tenants, rt.catalogue]
    saved = [t.engine for t in targets]
    for target in targets:
        target.engine = bad
    try:
        yield
    finally:
        for target, engine in zip(targets, saved, strict=True):
            target.engine = engine
        for writer in held:
            writer.close()
        if server is not None:
            server.close()
            await server.wait_closed()
        await bad.dispose()


__all__ = [
    "database_down",
    "ADMIN_TOKEN",
    "APPOINTMENT",
    "AUTH_TOKEN",
    "PUBLIC_URL",
    "SMILE",
    "SOUNDS",
    "Env",
    "MakeEnv",
    "env_fixture",
    "make_env_fixture",
    "voice_template",
    "import_voice",
    "ingested",
    "parse_twiml",
    "reminder_fixture",
    "start_env",
    "make_settings",
]

"""Slurping tenant-hosted audio, from a loopback aiohttp server that plays every part of a
tenant's web host: a real WAV, an MP3 sent as octet-stream, a web page, a huge file, a server
that never finishes, redirects."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from click.testing import CliRunner

from server.app import create_app
from server.cli.main import main
from server.keys import runtime_key
from server.settings import Settings
from server.tenants import Tenant
from tests.support.s3_server import sqlite_url
from tests.support.server import ingested, needs_asterisk_sounds
from voicebank.asterisk import DEFAULT_SOUNDS
from voicebank.catalogue import Catalogue
from voicebank.slurp import SlurpLimits, check_url, download, open_session, slurp
from voicebank.storage.local import LocalStorage

LIMITS = SlurpLimits(max_bytes=1024 * 1024, timeout_s=0.5, allow_private=True)


@pytest.fixture
def wav() -> bytes:
    needs_asterisk_sounds()
    return (DEFAULT_SOUNDS / "digits" / "7.wav").read_bytes()


@pytest.fixture
async def host(aiohttp_server: Any, wav: bytes) -> Any:
    """The tenant's web host."""
    mp3 = ingested("digits/8")[1].mp3

    async def big(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "audio/wav"})
        if "chunked" in request.query:
            resp.enable_chunked_encoding()  # no Content-Length: the limit applies while reading
        else:
            resp.content_length = len(wav) + 2 * 1024 * 1024
        await resp.prepare(request)
        await resp.write(wav)
        for _ in range(40):
            await resp.write(b"\0" * 64 * 1024)
        return resp

    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(5)
        return web.Response(body=wav, content_type="audio/wav")

    routes = {
        "/seven.wav": lambda r: web.Response(body=wav, content_type="audio/x-wav"),
        "/download": lambda r: web.Response(body=mp3, content_type="application/octet-stream"),
        "/share/seven.wav": lambda r: web.Response(
            text="<html><body>Download seven.wav</body></html>", content_type="text/html"
        ),
        "/notes.txt": lambda r: web.Response(body=b"hello there", content_type="audio/mpeg"),
        "/gone.wav": lambda r: web.Response(status=404),
        "/moved": lambda r: web.HTTPFound("/seven.wav"),
        "/loop": lambda r: web.HTTPFound("/loop"),
    }
    app = web.Application()
    for path, handler in routes.items():

        async def serve(request: web.Request, handler: Any = handler) -> web.StreamResponse:
            result = handler(request)
            if isinstance(result, web.HTTPException):
                raise result
            return result  # type: ignore[no-any-return]

        app.router.add_get(path, serve)
    app.router.add_get("/big.wav", big)
    app.router.add_get("/slow.wav", slow)
    return await aiohttp_server(app)


async def test_a_wav_and_an_octet_stream_mp3_are_downloaded(host, wav):
    async with open_session(LIMITS) as session:
        assert await download(session, str(host.make_url("/seven.wav")), LIMITS) == (
            "seven.wav",
            wav,
        )
        name, data = await download(session, str(host.make_url("/download")), LIMITS)
        assert name == "download.mp3" and data == ingested("digits/8")[1].mp3
        assert (await download(session, str(host.make_url("/moved")), LIMITS))[1] == wav


@pytest.mark.parametrize(
    ("path", "limits", "message"),
    [
        (
            "/share/seven.wav",
            LIMITS,
            "not audio: the server sent text/html (a web page: use a direct",
        ),
        ("/notes.txt", LIMITS, "not audio: neither MP3 nor WAV (Content-Type audio/mpeg)"),
        ("/big.wav", LIMITS, "too large: over 1 MB"),
        ("/big.wav?chunked=1", LIMITS, "too large: over 1 MB"),
        ("/slow.wav", LIMITS, "timed out after 0.5 s"),
        ("/gone.wav", LIMITS, "the server answered HTTP 404"),
        ("/loop", LIMITS, "more than 5 redirects"),
        ("/seven.wav", SlurpLimits(), "127.0.0.1 is an internal address"),
    ],
)
async def test_what_is_not_a_small_audio_file_fails_clearly(host, path, limits, message):
    url = str(host.make_url(path))
    async with open_session(limits) as session:
        with pytest.raises(Exception) as err:
            await download(session, url, limits)
    assert str(err.value).startswith(f"{url}: "), err.value
    assert message in str(err.value)


async def test_a_host_name_resolving_to_loopback_is_refused_without_allow_private(host):
    url = f"http://localhost:{host.port}/seven.wav"
    async with open_session(SlurpLimits()) as session:
        with pytest.raises(Exception, match="an internal address"):
            await download(session, url, SlurpLimits())


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("file:///etc/passwd", "only http(s) URLs can be fetched, not 'file'"),
        ("ftp://example.com/a.wav", "not 'ftp'"),
        ("/just/a/path.wav", "not 'this'"),
        ("http:///a.wav", "the URL has no host"),
        ("http://169.254.169.254/latest/meta-data", "169.254.169.254 is an internal address"),
        ("http://[::1]:8080/a.wav", "::1 is an internal address"),
    ],
)
def test_only_public_http_urls_are_fetched(url, message):
    with pytest.raises(Exception, match=message.replace("(", r"\(").replace(")", r"\)")):
        check_url(url, allow_private=False)


async def test_slurp_ingests_and_serves_from_our_storage(host, sqlite_engine, tmp_path):
    catalogue = Catalogue(
        sqlite_engine, LocalStorage(tmp_path / "media", "http://127.0.0.1:8080/media")
    )
    await catalogue.ensure_voice("allison")
    url = str(host.make_url("/seven.wav"))
    async with open_session(LIMITS) as session:
        result = await slurp(
            catalogue,
            session,
            url,
            voice_id="allison",
            transcript="seven",
            tenant="",
            limits=LIMITS,
        )
        again = await slurp(
            catalogue, session, url, voice_id="allison", transcript="seven", limits=LIMITS
        )
        page = await slurp(
            catalogue,
            session,
            str(host.make_url("/share/seven.wav")),
            voice_id="allison",
            transcript="eight",
            limits=LIMITS,
        )
    assert result.clip is not None and result.clip.source == "slurp"
    assert result.clip.original_name == "seven.wav"
    assert catalogue.storage.url(result.clip.storage_key).startswith("http://127.0.0.1:8080/media/")
    assert catalogue.storage.exists(result.clip.storage_key)
    assert again.unchanged
    assert page.error is not None and "text/html" in page.error
    assert [c.transcript for c in await catalogue.list_clips()] == ["seven"]


async def _app(aiohttp_client: Any, tmp_path: Path, db_url: str, **env: str) -> tuple[Any, str]:
    settings = Settings.from_env(
        {
            "VOICEPROMPT_DATA_DIR": str(tmp_path / "var"),
            "VOICEPROMPT_DATABASE_URL": db_url,
            "VOICEPROMPT_ADMIN_TOKEN": "admin-token",
            "VOICEPROMPT_CHECK_INTERVAL": "0",
            **env,
        }
    )
    client = await aiohttp_client(create_app(settings))
    tenants = client.app[runtime_key].tenants
    _, key = await tenants.create(Tenant(slug="smile", name="Smile Dental"))
    await tenants.create(Tenant(slug="other", name="Other"))
    return client, key


async def test_the_api_slurps_for_a_tenant(aiohttp_client, host, tmp_path):
    db_url = sqlite_url(tmp_path)
    client, key = await _app(
        aiohttp_client, tmp_path, db_url, VOICEPROMPT_SLURP_ALLOW_PRIVATE="true"
    )
    auth = {"Authorization": f"Bearer {key}"}
    body = {"url": str(host.make_url("/seven.wav")), "tenant": "smile", "transcript": "seven"}
    resp = await client.post("/api/voicebank/slurp", json=body, headers=auth)
    assert resp.status == 201, await resp.text()
    clip = await resp.json()
    assert (clip["tenant"], clip["voice"], clip["source"]) == ("smile", "allison", "slurp")
    assert clip["url"].startswith("http://127.0.0.1:8080/media/clips/")

    page = {**body, "url": str(host.make_url("/share/seven.wav"))}
    resp = await client.post("/api/voicebank/slurp", json=page, headers=auth)
    assert resp.status == 422
    assert "not audio: the server sent text/html" in (await resp.json())["error"]

    resp = await client.post("/api/voicebank/slurp", json={**body, "tenant": "other"}, headers=auth)
    assert resp.status == 403
    resp = await client.post("/api/voicebank/slurp", json={**body, "voice": "x"}, headers=auth)
    assert resp.status == 403
    resp = await client.post("/api/voicebank/slurp", json={**body, "variant": "loud"}, headers=auth)
    assert resp.status == 422 and (await resp.json())["field"] == "variant"
    resp = await client.post("/api/voicebank/slurp", json=body)
    assert resp.status == 401


async def test_the_api_refuses_internal_addresses_by_default(aiohttp_client, host, tmp_path):
    db_url = sqlite_url(tmp_path)
    client, key = await _app(aiohttp_client, tmp_path, db_url)
    body = {"url": str(host.make_url("/seven.wav")), "tenant": "smile", "transcript": "seven"}
    resp = await client.post(
        "/api/voicebank/slurp", json=body, headers={"Authorization": f"Bearer {key}"}
    )
    assert resp.status == 422 and "127.0.0.1 is an internal address" in (await resp.json())["error"]


async def test_the_slurp_command(host, tmp_path):
    db_url = sqlite_url(tmp_path)
    cli = CliRunner(
        env={
            "VOICEPROMPT_DATA_DIR": str(tmp_path / "var"),
            "VOICEPROMPT_DATABASE_URL": db_url,
            "VOICEPROMPT_SLURP_TIMEOUT": "0.3",
        }
    )

    def invoke(*args: str) -> Any:
        return cli.invoke(main, list(args))

    # The command runs its own event loop; in a thread, so this test's loop keeps serving.
    created = await asyncio.to_thread(invoke, "tenant", "create", "smile", "--name", "Smile")
    assert created.exit_code == 0, created.output
    url = str(host.make_url("/seven.wav"))
    added = await asyncio.to_thread(
        invoke,
        "bank",
        "slurp",
        url,
        "--tenant",
        "smile",
        "--transcript",
        "seven",
        "--variant",
        "final",
    )
    assert added.exit_code == 0, added.output + added.stderr
    assert (
        "added clip 1: 'seven'" in added.output
        and "served from http://127.0.0.1:8080/media/" in added.output
    )
    slow = await asyncio.to_thread(
        invoke,
        "bank",
        "slurp",
        str(host.make_url("/slow.wav")),
        "--tenant",
        "smile",
        "--transcript",
        "x",
    )
    assert slow.exit_code == 2
    assert slow.stderr.strip().splitlines() == [
        f"error: {host.make_url('/slow.wav')}: timed out after 0.3 s"
    ]

"""Copy a tenant-hosted recording into our own storage ("slurp") and ingest it like an upload.

We never depend on a tenant's Dropbox staying online: the file is downloaded once, with a size
limit and a total timeout, checked to be audio (an ``audio/*`` Content-Type or MP3/WAV magic
bytes; an HTML page, say a share link that is not a direct download, is refused), and then
processed and stored like any upload, so calls play it from our store.

Only http(s) URLs. ``allow_private=False`` (the API, where a tenant names the URL) also refuses
hosts that resolve to loopback, private, link-local or otherwise internal addresses, checked at
connect time so a redirect or a DNS answer cannot lead the server into its own network.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import PurePosixPath
from urllib.parse import unquote, urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver
from yarl import URL

from prompts.models import Variant
from voicebank.catalogue import Catalogue
from voicebank.errors import IngestError
from voicebank.importer import FileResult, add_file
from voicebank.pcm import sniff_format

FORMATS = ("mp3", "wav")
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
USER_AGENT = "voiceprompt-slurp/1"


@dataclass(frozen=True)
class SlurpLimits:
    max_bytes: int = 20 * 1024 * 1024
    timeout_s: float = 10.0
    allow_private: bool = False
    max_redirects: int = 5


def _internal(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    return not ip.is_global or ip.is_multicast


class PublicResolver(AbstractResolver):
    """Resolves like aiohttp, then refuses any address that is not on the public internet."""

    def __init__(self) -> None:
        self._inner = DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        found = await self._inner.resolve(host, port, family)
        bad = [r["host"] for r in found if _internal(r["host"])]
        if bad:
            # errno + strerror: aiohttp shows only the strerror of a resolver's OSError.
            raise OSError(errno.EACCES, f"{host} resolves to {bad[0]}, an internal address")
        return found

    async def close(self) -> None:
        await self._inner.close()


def check_url(url: str, *, allow_private: bool = True) -> str:
    """The URL if it is one we may fetch (http or https with a host); IngestError otherwise.

    Host names are checked when resolved (``PublicResolver``); an IP address here.
    """
    parts = urlsplit(url.strip())
    if parts.scheme.lower() not in ("http", "https"):
        raise IngestError(url, f"only http(s) URLs can be fetched, not {parts.scheme or 'this'!r}")
    if not parts.hostname:
        raise IngestError(url, "the URL has no host")
    if not allow_private:
        try:
            internal = _internal(parts.hostname)
        except ValueError:
            internal = False  # a name, not an address
        if internal:
            raise IngestError(url, f"{parts.hostname} is an internal address")
    return url.strip()


def filename_for(url: str, fmt: str) -> str:
    """A file name for the catalogue: the URL's last path segment, with the real extension."""
    name = PurePosixPath(unquote(urlsplit(url).path)).name
    stem = name.rsplit(".", 1)[0] if "." in name else name
    return f"{stem or 'slurped'}.{fmt}"


def audio_format(url: str, content_type: str, head: bytes) -> str:
    """MP3 or WAV from the magic bytes, unless the server says it sent text; IngestError if not."""
    media = content_type.split(";")[0].strip().lower()
    sniffed = sniff_format(head)
    if media.startswith("text/") or media in ("application/json", "application/xhtml+xml"):
        raise IngestError(
            url,
            f"not audio: the server sent {media}"
            + (" (a web page: use a direct download link)" if "html" in media else ""),
        )
    if sniffed in FORMATS:
        return sniffed
    if sniffed is not None:
        raise IngestError(url, f"{sniffed.upper()} is not accepted here: send an MP3 or a WAV")
    raise IngestError(url, f"not audio: neither MP3 nor WAV (Content-Type {media or 'missing'})")


@asynccontextmanager
async def open_session(limits: SlurpLimits) -> AsyncIterator[aiohttp.ClientSession]:
    connector = aiohttp.TCPConnector(
        limit=4, resolver=None if limits.allow_private else PublicResolver()
    )
    async with aiohttp.ClientSession(
        connector=connector,
        headers={"User-Agent": USER_AGENT},
        cookie_jar=aiohttp.DummyCookieJar(),
    ) as session:
        yield session


async def _open(
    session: aiohttp.ClientSession, url: str, limits: SlurpLimits
) -> aiohttp.ClientResponse:
    """GET, following redirects by hand so that every hop is checked like the first URL."""
    for _ in range(limits.max_redirects + 1):
        check_url(url, allow_private=limits.allow_private)
        resp = await session.get(url, allow_redirects=False)
        location = resp.headers.get("Location")
        if resp.status not in _REDIRECTS or not location:
            return resp
        resp.release()
        url = str(resp.url.join(URL(location)))
    raise IngestError(url, f"more than {limits.max_redirects} redirects")


async def download(
    session: aiohttp.ClientSession, url: str, limits: SlurpLimits = SlurpLimits()
) -> tuple[str, bytes]:
    """(file name, bytes) of a tenant's recording; IngestError naming the URL and the reason."""
    first = check_url(url, allow_private=limits.allow_private)
    too_large = f"too large: over {limits.max_bytes / 2**20:g} MB"
    chunks: list[bytes] = []
    try:
        async with asyncio.timeout(limits.timeout_s):
            resp = await _open(session, first, limits)
            async with resp:
                if resp.status != 200:
                    raise IngestError(first, f"the server answered HTTP {resp.status}")
                if (resp.content_length or 0) > limits.max_bytes:
                    raise IngestError(first, too_large)
                content_type = resp.headers.get("Content-Type", "")
                size = 0
                async for chunk in resp.content.iter_chunked(64 * 1024):
                    if not chunks:
                        audio_format(first, content_type, chunk)  # refuse a web page early
                    size += len(chunk)
                    if size > limits.max_bytes:
                        raise IngestError(first, too_large)
                    chunks.append(chunk)
    except TimeoutError:
        raise IngestError(first, f"timed out after {limits.timeout_s:g} s") from None
    except (aiohttp.ClientError, OSError) as exc:
        raise IngestError(first, f"cannot download: {exc}") from None
    data = b"".join(chunks)
    if not data:
        raise IngestError(first, "empty file")
    fmt = audio_format(first, content_type, data[:4096])
    return filename_for(first, fmt), data


async def slurp(
    catalogue: Catalogue,
    session: aiohttp.ClientSession,
    url: str,
    *,
    voice_id: str,
    transcript: str,
    tenant: str = "",
    variant: Variant = Variant.ANY,
    target_lufs: float = -19.0,
    limits: SlurpLimits = SlurpLimits(),
) -> FileResult:
    """Download, ingest and store one tenant recording; a rejection comes back in the result."""
    try:
        filename, data = await download(session, url, limits)
    except IngestError as exc:
        return FileResult(url, transcript, error=str(exc))
    return await add_file(
        catalogue,
        voice_id,
        filename,
        data,
        transcript,
        variant=variant,
        tenant=tenant,
        source="slurp",
        target_lufs=target_lufs,
    )


async def slurp_into_voice(
    catalogue: Catalogue,
    url: str,
    *,
    voice_id: str,
    transcript: str,
    tenant: str = "",
    variant: Variant = Variant.ANY,
    target_lufs: float = -19.0,
    limits: SlurpLimits = SlurpLimits(),
) -> FileResult:
    """Create the voice if it is new, then ``slurp`` one recording into it with a session of its
    own: ``POST /api/voicebank/slurp`` and ``voiceprompt bank slurp`` both come here."""
    await catalogue.ensure_voice(voice_id, target_lufs=target_lufs)
    async with open_session(limits) as session:
        return await slurp(
            catalogue,
            session,
            url,
            voice_id=voice_id,
            transcript=transcript,
            tenant=tenant,
            variant=variant,
            target_lufs=target_lufs,
            limits=limits,
        )

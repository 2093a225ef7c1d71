"""Fetch checks: can Twilio still fetch each clip URL, and does it get the right bytes?

A check fetches the public URL anonymously, the way Twilio does: a ``HEAD``, or a ranged
``GET`` (``Range: bytes=0-0``) when the server refuses HEAD (S3 answers an anonymous HEAD with
403 on some stores; moto does). An origin found to refuse HEAD is asked with GET from then on,
so a run costs one request per clip. ``judge`` is the pure part: status, exact
``Content-Type``, size (Content-Length or the Content-Range total) and, where the server exposes
one, the MD5 in an S3-style ETag against the MD5 of our bytes.

Connection errors, timeouts, 5xx and 429 are retried with exponential backoff (and Retry-After);
anything else is an answer, and a wrong answer is a failed check.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urlsplit

import aiohttp
from multidict import CIMultiDict

from voicebank.storage.base import etag_md5

USER_AGENT = "voiceprompt-check/1 (fetches like TwilioProxy/1.1)"
DEFAULT_CONCURRENCY = 32
# HEAD answers that mean "ask with GET instead", not "the object is gone".
_HEAD_REFUSED = frozenset({400, 403, 405, 501})


def _transient(status: int) -> bool:
    return status == 429 or status >= 500


@dataclass(frozen=True)
class Target:
    """One URL to check and what it must serve."""

    clip_id: int
    url: str
    size: int
    md5: str | None = None  # hex MD5 of our bytes; None when not known
    content_type: str = "audio/mpeg"


@dataclass(frozen=True)
class CheckResult:
    clip_id: int
    url: str
    ok: bool
    status: int | None  # the HTTP status of the last answer; None when nothing answered
    reason: str  # "" when ok; otherwise a short sentence a person can act on
    checked_at: datetime
    attempts: int = 1


def _size(status: int, headers: Mapping[str, str]) -> int | None:
    """The object's full size: the Content-Range total for a partial answer, else Content-Length."""
    content_range = headers.get("Content-Range", "")
    if status in (206, 416) and "/" in content_range:
        total = content_range.rsplit("/", 1)[1].strip()
        return int(total) if total.isdigit() else None
    length = headers.get("Content-Length", "")
    return int(length) if status == 200 and length.strip().isdigit() else None


def judge(target: Target, status: int, headers: Mapping[str, str]) -> str:
    """Why this answer is not the clip ("" when it is): pure, so tests are a table."""
    if status == 404:
        return "not found (404): the object is gone from the store"
    if status == 403:
        # S3 answers 403, not 404, for a missing key when the public may not list the bucket.
        return "forbidden (403): missing, or not publicly readable (bucket policy or CDN)"
    if status == 416:
        size = _size(status, headers)
        return f"size {size} bytes, expected {target.size}" if size is not None else "HTTP 416"
    if status not in (200, 206):
        return f"HTTP {status}"
    problems: list[str] = []
    content_type = headers.get("Content-Type", "").split(";")[0].strip().lower()
    if content_type != target.content_type:
        problems.append(
            f"Content-Type {content_type or 'missing'!r}, expected {target.content_type!r}"
        )
    size = _size(status, headers)
    if size is None:
        problems.append("no size in the answer (Content-Length or Content-Range)")
    elif size != target.size:
        what = "truncated" if size < target.size else "too long"
        problems.append(f"{what}: {size} bytes, expected {target.size}")
    served = etag_md5(headers.get("ETag"))
    if target.md5 and served and served != target.md5:
        problems.append(f"checksum: ETag {served}, expected MD5 {target.md5}")
    return "; ".join(problems)


def _no_answer(exc: Exception, timeout_s: float | None) -> str:
    """A short reason for a request that got no HTTP answer at all."""
    if isinstance(exc, aiohttp.ClientConnectorError):
        why = exc.os_error.strerror or str(exc.os_error) or type(exc.os_error).__name__
        return f"no answer: cannot connect to {exc.host}:{exc.port} ({why.lower()})"
    if isinstance(exc, TimeoutError):
        return f"no answer within {timeout_s:g} s"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "no answer: the server closed the connection"
    return f"no answer: {type(exc).__name__} {exc}".strip()


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def _retry_after(headers: Mapping[str, str]) -> float | None:
    value = headers.get("Retry-After", "").strip()
    return float(value) if value.isdigit() else None


@asynccontextmanager
async def open_session(
    concurrency: int = DEFAULT_CONCURRENCY,
) -> AsyncIterator[aiohttp.ClientSession]:
    """An anonymous client session sized for ``concurrency`` requests at a time."""
    connector = aiohttp.TCPConnector(limit=concurrency, limit_per_host=concurrency)
    async with aiohttp.ClientSession(
        connector=connector, headers={"User-Agent": USER_AGENT}, cookie_jar=aiohttp.DummyCookieJar()
    ) as session:
        yield session


class Checker:
    """Checks targets with bounded concurrency, retrying what may pass on a second try."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        concurrency: int = DEFAULT_CONCURRENCY,
        retries: int = 3,
        timeout_s: float = 10.0,
        backoff_s: float = 0.2,
        max_backoff_s: float = 5.0,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.session = session
        self.concurrency = concurrency
        self.retries = retries
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.clock = clock
        self._head_refused: set[str] = set()  # origins that answer HEAD with 403/405/...

    async def _ask(self, method: str, url: str) -> tuple[int, CIMultiDict[str]]:
        headers = {"Range": "bytes=0-0"} if method == "GET" else {}
        async with self.session.request(
            method, url, headers=headers, timeout=self.timeout, allow_redirects=True
        ) as resp:
            if method == "GET" and resp.status == 206:
                await resp.read()  # one byte; lets the connection be reused
            return resp.status, CIMultiDict(resp.headers)

    async def fetch(self, url: str) -> tuple[int, CIMultiDict[str]]:
        """One anonymous HEAD (or ranged GET where HEAD is refused): status and headers."""
        origin = _origin(url)
        if origin not in self._head_refused:
            status, headers = await self._ask("HEAD", url)
            if status not in _HEAD_REFUSED:
                return status, headers
        status, headers = await self._ask("GET", url)
        if status in (200, 206):
            # GET works where HEAD did not: skip the HEAD for the rest of this origin's URLs.
            self._head_refused.add(origin)
        return status, headers

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, self.max_backoff_s)
        base = min(self.backoff_s * 2.0**attempt, self.max_backoff_s)
        return base * (0.5 + random.random() / 2)  # jitter spreads a crowd of retries

    async def check(self, target: Target) -> CheckResult:
        attempt = 0
        while True:
            try:
                status, headers = await self.fetch(target.url)
            except (aiohttp.ClientError, TimeoutError) as exc:
                reason = _no_answer(exc, self.timeout.total)
                if attempt < self.retries:
                    await asyncio.sleep(self._delay(attempt, None))
                    attempt += 1
                    continue
                return CheckResult(
                    target.clip_id, target.url, False, None, reason, self.clock(), attempt + 1
                )
            if _transient(status) and attempt < self.retries:
                await asyncio.sleep(self._delay(attempt, _retry_after(headers)))
                attempt += 1
                continue
            reason = judge(target, status, headers)
            return CheckResult(
                target.clip_id, target.url, not reason, status, reason, self.clock(), attempt + 1
            )

    async def check_all(
        self,
        targets: Sequence[Target],
        progress: Callable[[CheckResult], None] | None = None,
    ) -> list[CheckResult]:
        """Every target, ``concurrency`` at a time; results in the order of ``targets``, and
        ``progress`` called once per result as it comes.

        ``concurrency`` workers take the next target in turn: a task per target waiting on a
        semaphore cost the client as much CPU as the requests themselves on a fast server.
        A check that raises (a bug: failed fetches are results) cancels the other workers before
        its exception reaches the caller, so nothing runs or reports after check_all has raised;
        the exception is raised as it is, or as an ExceptionGroup when several workers failed."""
        results: list[CheckResult | None] = [None] * len(targets)
        pending = iter(enumerate(targets))

        async def worker() -> None:
            for i, target in pending:
                results[i] = result = await self.check(target)
                if progress is not None:
                    progress(result)

        try:
            async with asyncio.TaskGroup() as group:
                for _ in range(min(self.concurrency, len(targets))):
                    group.create_task(worker())
        except ExceptionGroup as failed:
            if len(failed.exceptions) == 1:
                raise failed.exceptions[0] from None
            raise
        missing = [targets[i].clip_id for i, r in enumerate(results) if r is None]
        if missing:
            raise RuntimeError(f"check_all lost the results of clips {missing}")
        return [r for r in results if r is not None]

"""Copy every clip object (MP3s, masters, originals) from one storage backend to another.

Resumable by construction: keys are content-addressed and every put is atomic (S3 stores an
object whole or not at all; the folder backend writes a temporary file and renames it), so an
interrupted run leaves only complete objects behind, and the next run skips what the
destination already holds (same size and MD5) and copies the rest. Nothing is switched: the
caller learns whether every object is verified and tells the operator how to switch.

Verification: the source bytes must match the sha256 their key names (a damaged source object
is reported, not copied); after the put, the destination's size and MD5 (S3's single-part ETag,
or the file read back) must match the bytes sent.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import Enum

from voicebank.errors import StorageError
from voicebank.storage.base import ObjectInfo, Storage, content_type_for, key_digest

DEFAULT_CONCURRENCY = 8


class Outcome(Enum):
    COPIED = "copied"
    PRESENT = "already there"
    FAILED = "failed"


@dataclass(frozen=True)
class ObjectResult:
    key: str
    outcome: Outcome
    reason: str = ""


@dataclass
class SyncReport:
    results: list[ObjectResult] = field(default_factory=list)

    def count(self, outcome: Outcome) -> int:
        return sum(1 for r in self.results if r.outcome is outcome)

    @property
    def failed(self) -> list[ObjectResult]:
        return [r for r in self.results if r.outcome is Outcome.FAILED]

    @property
    def verified(self) -> bool:
        """Every object is in the destination, checked; only then may anyone switch."""
        return not self.failed


def _matches(info: ObjectInfo | None, size: int, md5: str | None, content_type: str) -> bool:
    return (
        info is not None
        and info.size == size
        and (md5 is None or info.md5 is None or info.md5 == md5)
        and info.content_type in (None, content_type)
    )


def copy_one(source: Storage, dest: Storage, key: str) -> ObjectResult:
    """Copy one object unless the destination has it already; blocking (run in a thread)."""
    content_type = content_type_for(key)
    try:
        there = dest.stat(key)
        if there is not None:
            here = source.stat(key)
            if here is not None and _matches(there, here.size, here.md5, content_type):
                return ObjectResult(key, Outcome.PRESENT)
        data = source.get(key)
        digest = key_digest(key)
        if digest is not None and hashlib.sha256(data).hexdigest() != digest:
            return ObjectResult(key, Outcome.FAILED, "damaged in the source: sha256 differs")
        dest.replace(key, data, content_type)  # known to be missing or different
        md5 = hashlib.md5(data, usedforsecurity=False).hexdigest()
        after = dest.stat(key)
        if not _matches(after, len(data), md5, content_type):
            got = "nothing" if after is None else f"{after.size} bytes, MD5 {after.md5}"
            return ObjectResult(key, Outcome.FAILED, f"read back {got}, sent {len(data)} bytes")
        if after is not None and after.md5 is None and dest.get(key) != data:
            return ObjectResult(key, Outcome.FAILED, "read back different bytes")
    except StorageError as exc:
        return ObjectResult(key, Outcome.FAILED, str(exc))
    return ObjectResult(key, Outcome.COPIED)


async def sync(
    source: Storage,
    dest: Storage,
    keys: Sequence[str],
    *,
    concurrency: int = DEFAULT_CONCURRENCY,
    progress: Callable[[ObjectResult], None] | None = None,
) -> SyncReport:
    """Copy ``keys`` from ``source`` to ``dest``, ``concurrency`` at a time.

    An exception from ``progress`` (or a Ctrl-C) stops the run; objects already copied stay,
    and the next run skips them.
    """
    report = SyncReport()
    gate = asyncio.Semaphore(concurrency)
    running: set[asyncio.Future[ObjectResult]] = set()

    async def one(key: str) -> None:
        async with gate:
            copy = asyncio.ensure_future(asyncio.to_thread(copy_one, source, dest, key))
            running.add(copy)
            # Shielded: a thread cannot be stopped, so a cancelled run still waits for it below.
            result = await asyncio.shield(copy)
            running.discard(copy)
        report.results.append(result)
        if progress is not None:
            progress(result)

    tasks = [asyncio.ensure_future(one(key)) for key in keys]
    try:
        await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:
            task.cancel()
        # Let the copies in flight land, so that a resumed run finds them and skips them.
        await asyncio.gather(*tasks, *running, return_exceptions=True)
        raise
    return report

"""Check every clip of the catalogue, and every stitched sentence, through its public URL, and
repair the ones that fail.

A repair puts the clip's exact MP3 bytes back under its content-addressed key whenever they can
be had: from the store itself (a wrong Content-Type or a lost policy needs only a re-upload),
from another store (``sources``, e.g. the backend a ``sync`` came from), or by encoding the kept
master again (``mp3_gapless`` is deterministic: the same master gives the same bytes with the
same libsndfile/LAME). Only when nothing gives the same bytes (a different encoder version) does
the clip get new bytes, and so a new key and a new URL (Twilio caches by URL, so that is safe).
"""

from __future__ import annotations

import asyncio
import hashlib
import io
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import soundfile as sf

from voicebank import encode
from voicebank.catalogue import Catalogue, ClipRecord
from voicebank.check_store import CheckStore
from voicebank.checks import Checker, CheckResult, Target
from voicebank.errors import CatalogueError, IngestError, RenderError, StorageError
from voicebank.ingest import ingest_bytes
from voicebank.sentence_store import SentenceCheck, SentenceRecord, SentenceStore
from voicebank.stitch import SentenceRecipe, Stitcher
from voicebank.storage.base import CONTENT_TYPES, Storage, content_key, key_digest

READ_CONCURRENCY = 8
CORRUPT = "the stored object's bytes do not match the clip's sha256 (damaged in the store)"


def _md5(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class References:
    """What each clip's URL must serve, beyond its size: the MD5 of its bytes."""

    md5s: dict[int, str]  # every clip whose MD5 is known
    new: dict[int, str]  # of those, the ones read from the store this time (to cache)
    corrupt: frozenset[int]  # clips whose stored bytes are not the bytes they were made with


async def references(
    catalogue: Catalogue, records: Sequence[ClipRecord], *, concurrency: int = READ_CONCURRENCY
) -> References:
    """MD5s cached in the check store; the others read once from the storage and verified."""
    known = await CheckStore(catalogue.engine).known_md5s()
    md5s = {r.id: known[r.id] for r in records if r.id in known}
    new: dict[int, str] = {}
    corrupt: set[int] = set()
    gate = asyncio.Semaphore(concurrency)

    async def read(record: ClipRecord) -> None:
        async with gate:
            try:
                data = await asyncio.to_thread(catalogue.storage.get, record.storage_key)
            except StorageError:
                return  # the fetch check reports what is wrong, in Twilio's terms
        if _sha256(data) == record.sha256:
            new[record.id] = md5s[record.id] = _md5(data)
        else:
            corrupt.add(record.id)

    await asyncio.gather(*(read(r) for r in records if r.id not in md5s))
    return References(md5s, new, frozenset(corrupt))


def targets(storage: Storage, records: Sequence[ClipRecord], md5s: dict[int, str]) -> list[Target]:
    return [Target(r.id, storage.url(r.storage_key), r.size, md5s.get(r.id)) for r in records]


async def check_clips(
    catalogue: Catalogue,
    checker: Checker,
    records: Sequence[ClipRecord],
    *,
    progress: Callable[[CheckResult], None] | None = None,
) -> list[CheckResult]:
    """Fetch-check the clips and store each one's result in the check store."""
    refs = await references(catalogue, records)
    results = await checker.check_all(targets(catalogue.storage, records, refs.md5s), progress)
    results = [
        r
        if r.clip_id not in refs.corrupt
        else CheckResult(
            r.clip_id,
            r.url,
            False,
            r.status,
            "; ".join(filter(None, [r.reason, CORRUPT])),
            r.checked_at,
            r.attempts,
        )
        for r in results
    ]
    await CheckStore(catalogue.engine).record(results, refs.new)
    return results


@dataclass(frozen=True)
class Repair:
    clip_id: int
    done: bool  # the clip's objects were put back (the check after it says whether that helped)
    how: str  # what was done, or why nothing could be
    new_url: str | None = None  # set when the clip got new bytes, hence a new URL
    check: CheckResult | None = None  # the check after the repair


def _verified(stores: Sequence[Storage], key: str, sha256: str | None) -> tuple[bytes, str] | None:
    """The bytes of ``key`` from the first store holding them intact, and that store's name."""
    for store in stores:
        try:
            data = store.get(key)
        except StorageError:
            continue
        if sha256 is None or _sha256(data) == sha256:
            return data, store.describe()
    return None


def _encode_master(flac: bytes) -> bytes:
    pcm, rate = sf.read(io.BytesIO(flac), dtype="int16")
    return encode.mp3_gapless(pcm, int(rate))


def rebuild(
    storage: Storage, record: ClipRecord, target_lufs: float, sources: Sequence[Storage] = ()
) -> tuple[bytes, str]:
    """The MP3 bytes to put back for a clip and how they were had; blocking (run in a thread).

    Raises CatalogueError when nothing is left to rebuild from.
    """
    stores = [storage, *sources]
    found = _verified(stores, record.storage_key, record.sha256)
    if found:
        if found[1] == storage.describe():
            return found[0], "re-uploaded the stored MP3 bytes"
        return found[0], f"copied the MP3 bytes from {found[1]}"
    fallback: tuple[bytes, str] | None = None
    master = _verified(stores, record.master_key, key_digest(record.master_key))
    if master:
        mp3 = _encode_master(master[0])
        if _sha256(mp3) == record.sha256:
            return mp3, "re-encoded from the master (identical bytes)"
        fallback = (mp3, "re-encoded from the master: new bytes (the encoder changed), new URL")
    # A split clip's original is the whole long take, so only a single-phrase upload can be
    # ingested again on its own.
    if record.source != "split":
        original = _verified(stores, record.original_key, key_digest(record.original_key))
        if original:
            try:
                clip = ingest_bytes(original[0], record.original_name, target_lufs=target_lufs)
            except IngestError:
                clip = None
            if clip is not None:
                if content_key("masters", clip.master, "flac") == record.master_key:
                    storage.put(record.master_key, clip.master, CONTENT_TYPES["flac"])
                if clip.sha256 == record.sha256:
                    return clip.mp3, "ingested the original again (identical bytes)"
                fallback = fallback or (clip.mp3, "ingested the original again: new bytes, new URL")
    if fallback:
        return fallback
    raise CatalogueError(
        f"clip {record.id}: its MP3, master and original are all gone or damaged; upload it again"
    )


async def repair_clip(
    catalogue: Catalogue, checker: Checker, clip_id: int, sources: Sequence[Storage] = ()
) -> Repair:
    """Put a failed clip's MP3 back (exact bytes when possible) and check its URL again."""
    storage = catalogue.storage
    record = await catalogue.get_clip(clip_id)
    voice = await catalogue.get_voice(record.voice_id)
    try:
        data, how = await asyncio.to_thread(rebuild, storage, record, voice.target_lufs, sources)
        sha = _sha256(data)
        key = record.storage_key if sha == record.sha256 else content_key("clips", data, "mp3")
        await asyncio.to_thread(storage.replace, key, data, CONTENT_TYPES["mp3"])
    except (CatalogueError, StorageError) as exc:
        return Repair(clip_id, False, str(exc))
    new_url = None
    if key != record.storage_key:
        record = await catalogue.replace_delivery(
            clip_id, storage_key=key, sha256=sha, size=len(data)
        )
        new_url = storage.url(key)
    md5 = _md5(data)
    result = await checker.check(Target(clip_id, storage.url(key), len(data), md5))
    await CheckStore(catalogue.engine).record([result], {clip_id: md5})
    return Repair(clip_id, True, how, new_url, result)


async def repair_clips(
    catalogue: Catalogue,
    checker: Checker,
    clip_ids: Sequence[int],
    *,
    sources: Sequence[Storage] = (),
    progress: Callable[[Repair], None] | None = None,
) -> list[Repair]:
    out: list[Repair] = []
    for clip_id in clip_ids:  # one at a time: a repair may encode, and failures are few
        repair = await repair_clip(catalogue, checker, clip_id, sources)
        out.append(repair)
        if progress is not None:
            progress(repair)
    return out


# -- stitched sentences -----------------------------------------------------------------------
# Checked as clips are: the public URL as Twilio fetches it (status, type, size, ETag MD5), and
# the object in the store against the MD5 recorded when it was rendered (a local folder's
# /media/ ETag is no MD5, so only the store can tell a same-size change).
SENTENCE_MISSING = "missing from the store"


def _store_problem(storage: Storage, record: SentenceRecord) -> str:
    """Why the stored object is not the sentence that was rendered ("" when it is)."""
    try:
        info = storage.stat(record.key)
    except StorageError as exc:
        return f"the store cannot say: {exc}"
    if info is None:
        return SENTENCE_MISSING
    if info.size != record.size:
        return f"changed in the store: {info.size} bytes, rendered {record.size}"
    if info.md5 is not None and info.md5 != record.md5:
        return f"changed in the store: MD5 {info.md5}, rendered {record.md5}"
    return ""


async def check_sentences(
    sentences: SentenceStore,
    storage: Storage,
    checker: Checker,
    *,
    voice_id: str | None = None,
    progress: Callable[[SentenceCheck], None] | None = None,
    concurrency: int = READ_CONCURRENCY,
) -> list[SentenceCheck]:
    """Check every stitched sentence (of one voice) and store each one's result."""
    records = await sentences.records(voice_id)
    gate = asyncio.Semaphore(concurrency)

    async def look(record: SentenceRecord) -> str:
        async with gate:
            return await asyncio.to_thread(_store_problem, storage, record)

    problems = await asyncio.gather(*(look(r) for r in records))
    # The checker speaks of clip ids: here the id is the sentence's position in ``records``.
    targets = [
        Target(i, storage.url(r.key), r.size, r.md5, CONTENT_TYPES["mp3"])
        for i, r in enumerate(records)
    ]

    def combine(result: CheckResult) -> SentenceCheck:
        store_problem = problems[result.clip_id]
        return SentenceCheck(
            key=records[result.clip_id].key,
            url=result.url,
            ok=result.ok and not store_problem,
            status=result.status,
            reason="; ".join(filter(None, [result.reason, store_problem])),
            checked_at=result.checked_at,
        )

    results = await checker.check_all(
        targets, None if progress is None else lambda r: progress(combine(r))
    )
    checks = [combine(r) for r in results]
    await sentences.record_checks(checks)
    return checks


@dataclass(frozen=True)
class SentenceRepair:
    key: str
    done: bool  # the object was put back (the check after it says whether that helped)
    how: str  # what was done, or why nothing could be
    check: SentenceCheck | None = None  # the check after the repair


async def repair_sentence(
    sentences: SentenceStore,
    stitcher: Stitcher,
    checker: Checker,
    key: str,
    *,
    prepare: Callable[[SentenceRecipe], Awaitable[None]] | None = None,
) -> SentenceRepair:
    """Put a failed sentence back: its stored bytes if intact, else rendered from its recipe.

    ``prepare`` runs before a render (e.g. ``CatalogueMasters.resolve`` of the recipe's clips).
    The bytes go back under the same key, which calls and prepared answers already name; when
    the encoder changed since, they differ a little (the same clips, gaps and level).
    """
    storage = stitcher.storage
    record = await sentences.get(key)
    if record is None:
        return SentenceRepair(key, False, "no stitched sentence has this key")
    try:
        found = await asyncio.to_thread(_verified, [storage], key, record.sha256)
        if found is not None:
            data, how = found[0], "re-uploaded the stored bytes"
        else:
            recipe = record.recipe
            if prepare is not None:
                await prepare(recipe)
            facts, data = await asyncio.to_thread(stitcher.render, recipe)
            if facts.sha256 == record.sha256:
                how = "rendered again from its recipe (identical bytes)"
            else:
                how = "rendered again from its recipe: new bytes (the encoder changed), same URL"
                await sentences.replace_bytes(key, facts)
        await asyncio.to_thread(storage.replace, key, data, CONTENT_TYPES["mp3"])
    except (RenderError, StorageError, ValueError) as exc:
        return SentenceRepair(key, False, f"cannot repair: {exc}")
    target = Target(0, storage.url(key), len(data), _md5(data), CONTENT_TYPES["mp3"])
    result = await checker.check(target)
    check = SentenceCheck(
        key, result.url, result.ok, result.status, result.reason, result.checked_at
    )
    await sentences.record_checks([check])
    return SentenceRepair(key, True, how, check)


async def repair_sentences(
    sentences: SentenceStore,
    stitcher: Stitcher,
    checker: Checker,
    keys: Sequence[str],
    *,
    prepare: Callable[[SentenceRecipe], Awaitable[None]] | None = None,
    progress: Callable[[SentenceRepair], None] | None = None,
) -> list[SentenceRepair]:
    out: list[SentenceRepair] = []
    for key in keys:  # one at a time: a repair may render, and failures are few
        repair = await repair_sentence(sentences, stitcher, checker, key, prepare=prepare)
        out.append(repair)
        if progress is not None:
            progress(repair)
    return out

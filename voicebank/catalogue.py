"""The clip catalogue: voices and clips in the project database, audio in a Storage.

Adding a clip stores its objects first (content-addressed, so a retry is harmless) and then
records it in one transaction; the previous take of the same phrase is marked replaced, never
deleted. A rejected file never reaches this module, so a rejection changes nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TypeVar

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from prompts.models import ClipEntry, ClipIndex, Variant
from prompts.text import normalize
from voicebank.checks import CheckResult
from voicebank.errors import CatalogueError
from voicebank.ingest import ProcessedClip
from voicebank.schema import clip_checks, clips, voices
from voicebank.storage.base import CONTENT_TYPES, Storage, content_key


@dataclass(frozen=True)
class Voice:
    id: str
    name: str
    description: str
    target_lufs: float


@dataclass(frozen=True)
class ClipRecord:
    id: int
    voice_id: str
    tenant: str
    transcript: str
    variant: Variant
    duration_ms: int
    lufs: float
    peak_dbfs: float
    size: int
    sha256: str
    storage_key: str
    master_key: str
    original_key: str
    original_name: str
    source: str
    created_at: datetime
    replaced_at: datetime | None
    replaced_by: int | None

    @property
    def current(self) -> bool:
        return self.replaced_at is None


@dataclass(frozen=True)
class ClipStatus:
    """A clip, its latest fetch check (None: never checked) and the MD5 of its MP3 if known."""

    clip: ClipRecord
    check: CheckResult | None
    md5: str | None


def _now() -> datetime:
    return datetime.now(UTC)


def _record(row: sa.Row[tuple[object, ...]]) -> ClipRecord:
    m = row._mapping
    return ClipRecord(
        id=int(m["id"]),
        voice_id=str(m["voice_id"]),
        tenant=str(m["tenant"]),
        transcript=str(m["transcript"]),
        variant=Variant(m["variant"]),
        duration_ms=int(m["duration_ms"]),
        lufs=float(m["lufs"]),
        peak_dbfs=float(m["peak_dbfs"]),
        size=int(m["size"]),
        sha256=str(m["sha256"]),
        storage_key=str(m["storage_key"]),
        master_key=str(m["master_key"]),
        original_key=str(m["original_key"]),
        original_name=str(m["original_name"]),
        source=str(m["source"]),
        created_at=m["created_at"],
        replaced_at=m["replaced_at"],
        replaced_by=m["replaced_by"],
    )


class Catalogue:
    """Voices and clips: the one place that writes the clip tables."""

    def __init__(self, engine: AsyncEngine, storage: Storage) -> None:
        self.engine = engine
        self.storage = storage

    # -- voices ---------------------------------------------------------------------------
    async def ensure_voice(
        self,
        voice_id: str,
        name: str | None = None,
        *,
        description: str = "",
        target_lufs: float = -19.0,
    ) -> Voice:
        async with self.engine.begin() as conn:
            row = (await conn.execute(sa.select(voices).where(voices.c.id == voice_id))).first()
            if row is None:
                await conn.execute(
                    voices.insert().values(
                        id=voice_id,
                        name=name or voice_id,
                        description=description,
                        target_lufs=target_lufs,
                        created_at=_now(),
                    )
                )
                return Voice(voice_id, name or voice_id, description, target_lufs)
            m = row._mapping
            return Voice(m["id"], m["name"], m["description"], float(m["target_lufs"]))

    async def get_voice(self, voice_id: str) -> Voice:
        async with self.engine.connect() as conn:
            row = (await conn.execute(sa.select(voices).where(voices.c.id == voice_id))).first()
        if row is None:
            raise CatalogueError(f"unknown voice {voice_id!r}")
        m = row._mapping
        return Voice(m["id"], m["name"], m["description"], float(m["target_lufs"]))

    async def list_voices(self) -> list[tuple[Voice, int]]:
        """Every voice with its number of current clips."""
        count = (
            sa.select(sa.func.count(clips.c.id))
            .where(clips.c.voice_id == voices.c.id, clips.c.replaced_at.is_(None))
            .scalar_subquery()
        )
        async with self.engine.connect() as conn:
            rows = await conn.execute(sa.select(voices, count.label("n")).order_by(voices.c.id))
            return [
                (Voice(r.id, r.name, r.description, float(r.target_lufs)), int(r.n)) for r in rows
            ]

    # -- clips ----------------------------------------------------------------------------
    def _store_objects(self, clip: ProcessedClip) -> tuple[str, str, str]:
        mp3_key = content_key("clips", clip.mp3, "mp3")
        master_key = content_key("masters", clip.master, "flac")
        original_key = content_key("originals", clip.original, clip.original_format)
        self.storage.put(original_key, clip.original, CONTENT_TYPES[clip.original_format])
        self.storage.put(master_key, clip.master, CONTENT_TYPES["flac"])
        # The delivery object last: once it exists, everything it was made from exists too.
        self.storage.put(mp3_key, clip.mp3, CONTENT_TYPES["mp3"])
        return mp3_key, master_key, original_key

    async def add_clip(
        self,
        voice_id: str,
        transcript: str,
        clip: ProcessedClip,
        *,
        variant: Variant = Variant.ANY,
        tenant: str = "",
        source: str = "upload",
    ) -> ClipRecord:
        """Store a processed clip and make it the current take of its phrase."""
        return (
            await self.add_clips(
                voice_id, [(transcript, clip)], variant=variant, tenant=tenant, source=source
            )
        )[0]

    async def add_clips(
        self,
        voice_id: str,
        items: Sequence[tuple[str, ProcessedClip]],
        *,
        variant: Variant = Variant.ANY,
        tenant: str = "",
        source: str = "upload",
        variants: Sequence[Variant] | None = None,
    ) -> list[ClipRecord]:
        """Store several clips in one transaction: all of them become current, or none."""
        for transcript, clip in items:
            if not normalize(transcript):
                raise CatalogueError(f"{clip.filename}: the transcript {transcript!r} has no words")
        if variants is not None and len(variants) != len(items):
            raise CatalogueError("one variant per clip is needed")
        keys = [await asyncio.to_thread(self._store_objects, clip) for _, clip in items]
        now = _now()
        out: list[ClipRecord] = []
        async with self.engine.begin() as conn:
            await self._require_voice(conn, voice_id)
            for i, ((transcript, clip), (mp3_key, master_key, original_key)) in enumerate(
                zip(items, keys, strict=True)
            ):
                var = variants[i] if variants is not None else variant
                norm = normalize(transcript)
                current = clips.c.replaced_at.is_(None)
                old = (
                    await conn.execute(
                        sa.select(clips.c.id).where(
                            clips.c.voice_id == voice_id,
                            clips.c.tenant == tenant,
                            clips.c.norm == norm,
                            clips.c.variant == var.value,
                            current,
                        )
                    )
                ).scalar_one_or_none()
                if old is not None:
                    # Free the unique "current" slot before inserting the new take.
                    await conn.execute(
                        clips.update().where(clips.c.id == old).values(replaced_at=now)
                    )
                new_id = (
                    await conn.execute(
                        clips.insert()
                        .values(
                            voice_id=voice_id,
                            tenant=tenant,
                            transcript=transcript.strip(),
                            norm=norm,
                            variant=var.value,
                            duration_ms=clip.duration_ms,
                            lufs=clip.lufs,
                            peak_dbfs=clip.peak_dbfs,
                            size=len(clip.mp3),
                            sha256=clip.sha256,
                            storage_key=mp3_key,
                            master_key=master_key,
                            original_key=original_key,
                            original_name=clip.filename,
                            source=source,
                            created_at=now,
                        )
                        .returning(clips.c.id)
                    )
                ).scalar_one()
                if old is not None:
                    await conn.execute(
                        clips.update().where(clips.c.id == old).values(replaced_by=new_id)
                    )
                row = (await conn.execute(sa.select(clips).where(clips.c.id == new_id))).one()
                out.append(_record(row))
        return out

    async def _require_voice(self, conn: AsyncConnection, voice_id: str) -> None:
        found = (await conn.execute(sa.select(voices.c.id).where(voices.c.id == voice_id))).first()
        if found is None:
            raise CatalogueError(
                f"unknown voice {voice_id!r}: import or create it first "
                "(voiceprompt bank import-asterisk, or --voice on upload)"
            )

    async def get_clip(self, clip_id: int) -> ClipRecord:
        async with self.engine.connect() as conn:
            row = (await conn.execute(sa.select(clips).where(clips.c.id == clip_id))).first()
        if row is None:
            raise CatalogueError(f"no clip with id {clip_id}")
        return _record(row)

    async def list_clips(
        self,
        voice_id: str | None = None,
        *,
        tenant: str | None = None,
        include_replaced: bool = False,
    ) -> list[ClipRecord]:
        query = sa.select(clips).order_by(
            clips.c.voice_id, clips.c.tenant, clips.c.norm, clips.c.variant, clips.c.id
        )
        if voice_id is not None:
            query = query.where(clips.c.voice_id == voice_id)
        if tenant is not None:
            query = query.where(clips.c.tenant == tenant)
        if not include_replaced:
            query = query.where(clips.c.replaced_at.is_(None))
        async with self.engine.connect() as conn:
            return [_record(r) for r in await conn.execute(query)]

    async def clip_page(
        self, voice_id: str, *, tenants: Collection[str] | None = None, limit: int, offset: int = 0
    ) -> tuple[int, list[ClipRecord]]:
        """How many current clips a voice has (of ``tenants``, "" for shared; None: all), and
        ``limit`` of them from ``offset`` on, in ``list_clips``' order."""
        where = [clips.c.voice_id == voice_id, clips.c.replaced_at.is_(None)]
        if tenants is not None:
            where.append(clips.c.tenant.in_(list(tenants)))
        query = (
            sa.select(clips)
            .where(*where)
            .order_by(clips.c.tenant, clips.c.norm, clips.c.variant, clips.c.id)
            .limit(limit)
            .offset(offset)
        )
        async with self.engine.connect() as conn:
            total = (
                await conn.execute(sa.select(sa.func.count()).select_from(clips).where(*where))
            ).scalar_one()
            return int(total), [_record(r) for r in await conn.execute(query)]

    async def history(
        self, voice_id: str, transcript: str, *, tenant: str = ""
    ) -> list[ClipRecord]:
        """Every take of a phrase, newest first (replaced ones included)."""
        query = (
            sa.select(clips)
            .where(
                clips.c.voice_id == voice_id,
                clips.c.tenant == tenant,
                clips.c.norm == normalize(transcript),
            )
            .order_by(clips.c.id.desc())
        )
        async with self.engine.connect() as conn:
            return [_record(r) for r in await conn.execute(query)]

    async def voice_clips(self, voice_id: str, tenant: str = "") -> list[tuple[ClipEntry, str]]:
        """The current clips a tenant's calls may use, with the storage key of each.

        Shared clips plus the tenant's own; a tenant's take of a phrase hides the shared takes of
        the same phrase, so a tenant can re-record anything in its own voice.
        """
        query = (
            sa.select(
                clips.c.id,
                clips.c.tenant,
                clips.c.transcript,
                clips.c.norm,
                clips.c.variant,
                clips.c.duration_ms,
                clips.c.storage_key,
            )
            .where(
                clips.c.voice_id == voice_id,
                clips.c.replaced_at.is_(None),
                clips.c.tenant.in_({"", tenant}),
            )
            .order_by(clips.c.id)
        )
        async with self.engine.connect() as conn:
            rows = list(await conn.execute(query))
        own = {r.norm for r in rows if r.tenant and r.tenant == tenant}
        return [
            (
                ClipEntry(
                    clip_id=str(r.id),
                    text=r.transcript,
                    variant=Variant(r.variant),
                    duration_ms=int(r.duration_ms),
                    url=self.storage.url(r.storage_key),
                ),
                str(r.storage_key),
            )
            for r in rows
            if not (r.tenant == "" and r.norm in own)
        ]

    async def clip_index(self, voice_id: str, tenant: str = "") -> ClipIndex:
        """The planner's view of a voice for one tenant (see ``voice_clips``)."""
        return ClipIndex.build(entry for entry, _ in await self.voice_clips(voice_id, tenant))

    async def master_keys(self, clip_ids: Sequence[int]) -> dict[int, str]:
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                sa.select(clips.c.id, clips.c.master_key).where(clips.c.id.in_(list(clip_ids)))
            )
            return {int(r.id): str(r.master_key) for r in rows}

    # -- fetch checks (voicebank.checks, voicebank.audit) --------------------------------------
    async def record_checks(
        self, results: Sequence[CheckResult], md5s: Mapping[int, str] | None = None
    ) -> None:
        """Store each clip's latest check, replacing the one before.

        ``md5s`` caches the MD5 of clips' verified MP3 bytes (compared with S3 ETags); a clip
        not in it keeps the MD5 it had.
        """
        md5s = md5s or {}
        fields = ["checked_at", "ok", "status", "reason", "url"]
        rows = [
            {
                "clip_id": r.clip_id,
                "checked_at": r.checked_at,
                "ok": r.ok,
                "status": r.status,
                "reason": r.reason,
                "url": r.url,
                **({"md5": md5s[r.clip_id]} if r.clip_id in md5s else {}),
            }
            for r in results
        ]
        async with self.engine.begin() as conn:
            for batch in _batches([r for r in rows if "md5" in r]):
                await conn.execute(_upsert(conn, batch, [*fields, "md5"]))
            for batch in _batches([r for r in rows if "md5" not in r]):
                await conn.execute(_upsert(conn, batch, fields))

    async def latest_checks(self, clip_ids: Sequence[int] | None = None) -> dict[int, CheckResult]:
        """The last check of each clip (of the given ones), by clip id."""
        queries = (
            [sa.select(clip_checks)]
            if clip_ids is None
            else [
                sa.select(clip_checks).where(clip_checks.c.clip_id.in_(batch))
                for batch in _batches(list(clip_ids))
            ]
        )
        out: dict[int, CheckResult] = {}
        async with self.engine.connect() as conn:
            for query in queries:
                for r in await conn.execute(query):
                    out[int(r.clip_id)] = CheckResult(
                        clip_id=int(r.clip_id),
                        url=str(r.url),
                        ok=bool(r.ok),
                        status=r.status,
                        reason=str(r.reason),
                        checked_at=_aware(r.checked_at),
                    )
        return out

    async def known_md5s(self) -> dict[int, str]:
        """The cached MD5 of each clip's MP3 bytes, where one was computed."""
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                sa.select(clip_checks.c.clip_id, clip_checks.c.md5).where(
                    clip_checks.c.md5.is_not(None)
                )
            )
            return {int(r.clip_id): str(r.md5) for r in rows}

    async def clip_statuses(
        self,
        clip_ids: Collection[int] | None = None,
        *,
        voice_id: str | None = None,
        tenants: Collection[str] | None = None,
    ) -> list[ClipStatus]:
        """Clips with their latest check and cached MD5: the given ids (current or not), or
        every current clip, optionally of one voice and of some tenants ("" = shared)."""
        query = sa.select(
            clips,
            clip_checks.c.checked_at,
            clip_checks.c.ok,
            clip_checks.c.status,
            clip_checks.c.reason,
            clip_checks.c.url,
            clip_checks.c.md5,
        ).select_from(clips.outerjoin(clip_checks, clip_checks.c.clip_id == clips.c.id))
        if clip_ids is None:
            query = query.where(clips.c.replaced_at.is_(None))
        if voice_id is not None:
            query = query.where(clips.c.voice_id == voice_id)
        if tenants is not None:
            query = query.where(clips.c.tenant.in_(list(tenants)))
        queries = (
            [query.order_by(clips.c.id)]
            if clip_ids is None
            else [query.where(clips.c.id.in_(b)) for b in _batches(sorted(clip_ids))]
        )
        out: list[ClipStatus] = []
        async with self.engine.connect() as conn:
            for q in queries:
                for row in await conn.execute(q):
                    m = row._mapping
                    check = None
                    if m["checked_at"] is not None:
                        check = CheckResult(
                            clip_id=int(m["id"]),
                            url=str(m["url"]),
                            ok=bool(m["ok"]),
                            status=m["status"],
                            reason=str(m["reason"]),
                            checked_at=_aware(m["checked_at"]),
                        )
                    out.append(ClipStatus(_record(row), check, m["md5"]))
        return out

    async def replace_delivery(
        self, clip_id: int, *, storage_key: str, sha256: str, size: int
    ) -> ClipRecord:
        """Point a clip at new MP3 bytes (a repair that could not rebuild the exact bytes).

        The key is content-addressed, so the clip gets a new URL: Twilio caches by URL and never
        plays stale audio for it. The cached MD5 belonged to the old bytes and is dropped.
        """
        async with self.engine.begin() as conn:
            done = await conn.execute(
                clips.update()
                .where(clips.c.id == clip_id)
                .values(storage_key=storage_key, sha256=sha256, size=size)
            )
            if done.rowcount == 0:
                raise CatalogueError(f"no clip with id {clip_id}")
            await conn.execute(
                clip_checks.update().where(clip_checks.c.clip_id == clip_id).values(md5=None)
            )
            row = (await conn.execute(sa.select(clips).where(clips.c.id == clip_id))).one()
        return _record(row)

    async def object_keys(self) -> list[str]:
        """Every stored object any clip refers to (replaced takes too): MP3s, masters, originals."""
        async with self.engine.connect() as conn:
            rows = list(
                await conn.execute(
                    sa.select(clips.c.storage_key, clips.c.master_key, clips.c.original_key)
                )
            )
        return sorted({key for row in rows for key in row})


T = TypeVar("T")


def _batches(items: list[T], size: int = 500) -> list[list[T]]:
    """Chunks small enough for any driver's limit on bound parameters."""
    return [items[i : i + size] for i in range(0, len(items), size)]


def _aware(value: datetime) -> datetime:
    """SQLite hands back naive datetimes; everything here is UTC."""
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _upsert(
    conn: AsyncConnection, rows: Sequence[Mapping[str, object]], update: Sequence[str]
) -> sa.Executable:
    """INSERT ... ON CONFLICT (clip_id) DO UPDATE, in the dialect of the connection."""
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        pg = pg_insert(clip_checks).values(rows)
        return pg.on_conflict_do_update(
            index_elements=[clip_checks.c.clip_id], set_={c: pg.excluded[c] for c in update}
        )
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    lite = sqlite_insert(clip_checks).values(rows)
    return lite.on_conflict_do_update(
        index_elements=[clip_checks.c.clip_id], set_={c: lite.excluded[c] for c in update}
    )

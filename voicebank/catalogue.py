"""The clip catalogue: voices and clips in the project database, audio in a Storage.

Adding a clip stores its objects first (content-addressed, so a retry is harmless) and then
records it in one transaction; the previous take of the same phrase is marked replaced, never
deleted. A rejected file never reaches this module, so a rejection changes nothing.

Each clip's latest fetch check is kept by ``voicebank.check_store``; the one write here to its
table is ``replace_delivery`` dropping the cached MD5 of bytes a clip no longer has.
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from prompts.models import ClipEntry, ClipIndex, Variant
from prompts.text import normalize
from voicebank.errors import CatalogueError
from voicebank.ingest import ProcessedClip
from voicebank.schema import clip_checks, clips, voices
from voicebank.sql import utcnow
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


def clip_record(row: sa.Row[tuple[object, ...]]) -> ClipRecord:
    """A ``clips`` row (or a row with its columns, as in ``voicebank.check_store``) as a record."""
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
                        created_at=utcnow(),
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
        now = utcnow()
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
                out.append(clip_record(row))
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
        return clip_record(row)

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
            return [clip_record(r) for r in await conn.execute(query)]

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
            return int(total), [clip_record(r) for r in await conn.execute(query)]

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
            return [clip_record(r) for r in await conn.execute(query)]

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
        return clip_record(row)

    async def object_keys(self) -> list[str]:
        """Every stored object any clip refers to (replaced takes too): MP3s, masters, originals."""
        async with self.engine.connect() as conn:
            rows = list(
                await conn.execute(
                    sa.select(clips.c.storage_key, clips.c.master_key, clips.c.original_key)
                )
            )
        return sorted({key for row in rows for key in row})

"""The stitched-sentence table: one row per sentence MP3 in storage, and its latest check.

``voicebank.stitch.Stitcher`` renders and stores; its ``recorder`` writes the row here before the
object is stored (``SentenceStore.recorder``), so `bank check` (``voicebank.audit``) covers every
stored sentence: it reads the rows, checks each URL and the stored bytes, and repairs by
rendering the recipe again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from voicebank.schema import stitched_sentences
from voicebank.sql import aware, dialect_insert, utcnow
from voicebank.stitch import Recorder, SentenceRecipe, StitchedFile

RECORD_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class SentenceCheck:
    """The latest check of one stitched sentence: its public URL and its bytes in the store."""

    key: str
    url: str  # the URL fetched; "" when read back from the table (storage.url(key) gives it)
    ok: bool
    status: int | None  # HTTP status of the fetch; None when nothing answered
    reason: str  # "" when ok; otherwise a short sentence a person can act on
    checked_at: datetime


@dataclass(frozen=True)
class SentenceRecord:
    key: str
    voice_id: str
    sha256: str
    md5: str
    size: int
    duration_ms: int
    recipe_json: str
    created_at: datetime
    check: SentenceCheck | None

    @property
    def recipe(self) -> SentenceRecipe:
        """The recipe (raises StitchError if the stored JSON no longer validates)."""
        return SentenceRecipe.from_json(self.recipe_json)


def _record(row: sa.Row[tuple[object, ...]]) -> SentenceRecord:
    m = row._mapping
    check = None
    if m["checked_at"] is not None:
        check = SentenceCheck(
            key=str(m["key"]),
            url="",
            ok=bool(m["ok"]),
            status=m["status"],
            reason=str(m["reason"]),
            checked_at=aware(m["checked_at"]),
        )
    return SentenceRecord(
        key=str(m["key"]),
        voice_id=str(m["voice_id"]),
        sha256=str(m["sha256"]),
        md5=str(m["md5"]),
        size=int(m["size"]),
        duration_ms=int(m["duration_ms"]),
        recipe_json=str(m["recipe"]),
        created_at=aware(m["created_at"]),
        check=check,
    )


class SentenceStore:
    """Rows of stitched sentences: written when one is stored, read and updated by checks."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def record(self, file: StitchedFile) -> None:
        """Add a stored sentence's row; a row already there for the key is kept (same recipe,
        same settings, hence the same bytes)."""
        async with self.engine.begin() as conn:
            insert = dialect_insert(conn.dialect.name == "postgresql")(stitched_sentences)
            await conn.execute(
                insert.values(
                    key=file.key,
                    voice_id=file.recipe.voice_id,
                    sha256=file.sha256,
                    md5=file.md5,
                    size=file.size,
                    duration_ms=file.duration_ms,
                    recipe=file.recipe.to_json(),
                    created_at=utcnow(),
                ).on_conflict_do_nothing(index_elements=[stitched_sentences.c.key])
            )

    def recorder(
        self, loop: asyncio.AbstractEventLoop, timeout_s: float = RECORD_TIMEOUT_S
    ) -> Recorder:
        """A Stitcher recorder that writes through ``loop`` (the one the engine runs on) from
        the Stitcher's worker thread, and waits for the row."""

        def record(file: StitchedFile) -> None:
            try:
                running = asyncio.get_running_loop()
            except RuntimeError:
                running = None
            if running is loop:
                raise RuntimeError(
                    "Stitcher.ensure() blocks: call it in a thread (asyncio.to_thread), "
                    "not on the event loop"
                )
            asyncio.run_coroutine_threadsafe(self.record(file), loop).result(timeout_s)

        return record

    async def get(self, key: str) -> SentenceRecord | None:
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(
                    sa.select(stitched_sentences).where(stitched_sentences.c.key == key)
                )
            ).first()
        return None if row is None else _record(row)

    async def records(self, voice_id: str | None = None) -> list[SentenceRecord]:
        """Every stitched sentence (of one voice), oldest first."""
        query = sa.select(stitched_sentences).order_by(
            stitched_sentences.c.created_at, stitched_sentences.c.key
        )
        if voice_id is not None:
            query = query.where(stitched_sentences.c.voice_id == voice_id)
        async with self.engine.connect() as conn:
            return [_record(r) for r in await conn.execute(query)]

    async def keys(self) -> list[str]:
        """Every stitched sentence's storage key (for `bank sync`)."""
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                sa.select(stitched_sentences.c.key).order_by(stitched_sentences.c.key)
            )
            return [str(r.key) for r in rows]

    async def record_checks(self, checks: Sequence[SentenceCheck]) -> None:
        async with self.engine.begin() as conn:
            for c in checks:
                await conn.execute(
                    stitched_sentences.update()
                    .where(stitched_sentences.c.key == c.key)
                    .values(checked_at=c.checked_at, ok=c.ok, status=c.status, reason=c.reason)
                )

    async def replace_bytes(self, key: str, file: StitchedFile) -> None:
        """After a repair that put new bytes under ``key`` (the encoder changed since)."""
        async with self.engine.begin() as conn:
            await conn.execute(
                stitched_sentences.update()
                .where(stitched_sentences.c.key == key)
                .values(
                    sha256=file.sha256, md5=file.md5, size=file.size, duration_ms=file.duration_ms
                )
            )

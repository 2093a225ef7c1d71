"""The fetch-check store: each clip's latest check of its public URL (``voicebank.checks``) and
the cached MD5 of its MP3 bytes, in the ``clip_checks`` table.

One row per clip, replaced by every check (an upsert). ``voicebank.audit`` writes it after a
check or a repair; the clip guard, the health report and the console read it. It only needs the
engine: ``CheckStore(catalogue.engine)``.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from voicebank.catalogue import ClipRecord, clip_record
from voicebank.checks import CheckResult
from voicebank.schema import clip_checks, clips
from voicebank.sql import aware, dialect_insert

T = TypeVar("T")


@dataclass(frozen=True)
class ClipStatus:
    """A clip, its latest fetch check (None: never checked) and the MD5 of its MP3 if known."""

    clip: ClipRecord
    check: CheckResult | None
    md5: str | None


class CheckStore:
    """The latest fetch check and cached MD5 of each clip: the one place that writes them."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def record(
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

    async def latest(self, clip_ids: Sequence[int] | None = None) -> dict[int, CheckResult]:
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
                        checked_at=aware(r.checked_at),
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
                            checked_at=aware(m["checked_at"]),
                        )
                    out.append(ClipStatus(clip_record(row), check, m["md5"]))
        return out


def _batches(items: list[T], size: int = 500) -> list[list[T]]:
    """Chunks small enough for any driver's limit on bound parameters."""
    return [items[i : i + size] for i in range(0, len(items), size)]


def _upsert(
    conn: AsyncConnection, rows: Sequence[Mapping[str, object]], update: Sequence[str]
) -> sa.Executable:
    """INSERT ... ON CONFLICT (clip_id) DO UPDATE, in the dialect of the connection."""
    insert = dialect_insert(conn.dialect.name == "postgresql")(clip_checks).values(rows)
    upsert: sa.Executable = insert.on_conflict_do_update(
        index_elements=[clip_checks.c.clip_id], set_={c: insert.excluded[c] for c in update}
    )
    return upsert

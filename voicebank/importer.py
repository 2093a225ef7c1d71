"""Bring recordings into the catalogue: single files, long takes and Asterisk sound packs.

Each file is processed on its own: one rejected file is reported with its reason and the others
still go in. Processing runs in worker threads so a server's event loop stays responsive.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from prompts.models import Variant
from prompts.text import normalize
from voicebank.asterisk import SoundEntry, sound_transcript
from voicebank.catalogue import Catalogue, ClipRecord
from voicebank.errors import VoiceBankError
from voicebank.ingest import ProcessedClip, ingest_bytes
from voicebank.split import split_take

Progress = Callable[[str], None]

_VARIANT_SUFFIX = re.compile(r"\.(continuing|final|any)$", re.IGNORECASE)


@dataclass(frozen=True)
class FileResult:
    filename: str
    transcript: str
    clip: ClipRecord | None = None
    error: str | None = None
    unchanged: bool = False
    # Not imported on purpose, e.g. "same words as digits/1.wav" (not an error).
    skipped: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass
class ImportReport:
    results: list[FileResult] = field(default_factory=list)

    @property
    def added(self) -> list[FileResult]:
        return [r for r in self.results if r.ok and not r.unchanged and not r.skipped]

    @property
    def skipped(self) -> list[FileResult]:
        return [r for r in self.results if r.skipped]

    @property
    def unchanged(self) -> list[FileResult]:
        return [r for r in self.results if r.unchanged]

    @property
    def rejected(self) -> list[FileResult]:
        return [r for r in self.results if not r.ok]


def transcript_from_filename(filename: str) -> tuple[str, Variant]:
    """``your-appointment-with.final.wav`` -> ("your appointment with", Variant.FINAL)."""
    stem = Path(filename).name
    stem = stem.rsplit(".", 1)[0] if "." in stem else stem
    variant = Variant.ANY
    m = _VARIANT_SUFFIX.search(stem)
    if m:
        variant = Variant(m.group(1).lower())
        stem = stem[: m.start()]
    return re.sub(r"[-_]+", " ", stem).strip(), variant


def _original_sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def _unchanged(
    catalogue: Catalogue, voice_id: str, tenant: str, transcript: str, variant: Variant, data: bytes
) -> bool:
    """True when the current take of this phrase came from exactly these bytes."""
    takes = await catalogue.history(voice_id, transcript, tenant=tenant)
    digest = _original_sha(data)
    return any(t.current and t.variant is variant and digest in t.original_key for t in takes)


async def add_file(
    catalogue: Catalogue,
    voice_id: str,
    filename: str,
    data: bytes,
    transcript: str,
    *,
    variant: Variant = Variant.ANY,
    tenant: str = "",
    source: str = "upload",
    target_lufs: float = -19.0,
    skip_unchanged: bool = True,
) -> FileResult:
    """Process and store one recording; a rejection is returned, not raised."""
    try:
        if skip_unchanged and await _unchanged(
            catalogue, voice_id, tenant, transcript, variant, data
        ):
            return FileResult(filename, transcript, unchanged=True)
        processed: ProcessedClip = await asyncio.to_thread(
            ingest_bytes, data, filename, target_lufs=target_lufs
        )
        record = await catalogue.add_clip(
            voice_id, transcript, processed, variant=variant, tenant=tenant, source=source
        )
    except VoiceBankError as exc:
        return FileResult(filename, transcript, error=str(exc))
    return FileResult(filename, transcript, clip=record)


async def import_sounds(
    catalogue: Catalogue,
    voice_id: str,
    entries: Sequence[SoundEntry],
    *,
    target_lufs: float = -19.0,
    progress: Progress | None = None,
) -> ImportReport:
    """Import an Asterisk-style pack: one clip per sound file, re-runs skip unchanged files.

    When two files say the same words, the first (in name order) is the take: importing both
    would make each replace the other on every re-run. A spelled letter goes in under its own
    name ("letter A" for ``letters/a``), never as the word it is spelled like.
    """
    report = ImportReport()
    first: dict[str, str] = {}
    for entry in entries:
        filename = f"{entry.name}{entry.path.suffix}"
        transcript = sound_transcript(entry.name, entry.transcript)
        words = normalize(transcript)
        if words in first:
            report.results.append(
                FileResult(filename, transcript, skipped=f"same words as {first[words]}")
            )
            if progress:
                progress(entry.name)
            continue
        first[words] = filename
        data = await asyncio.to_thread(entry.path.read_bytes)
        result = await add_file(
            catalogue,
            voice_id,
            filename,
            data,
            transcript,
            source="asterisk",
            target_lufs=target_lufs,
        )
        report.results.append(result)
        if progress:
            progress(entry.name)
    return report


async def add_take(
    catalogue: Catalogue,
    voice_id: str,
    filename: str,
    data: bytes,
    script: Sequence[str],
    *,
    variant: Variant = Variant.ANY,
    tenant: str = "",
    target_lufs: float = -19.0,
) -> list[ClipRecord]:
    """Split a long take by its script and store every phrase, all or nothing."""
    lines = [line.strip() for line in script if line.strip()]
    pieces = await asyncio.to_thread(split_take, data, filename, lines, target_lufs=target_lufs)
    return await catalogue.add_clips(
        voice_id,
        list(zip(lines, pieces, strict=True)),
        variant=variant,
        tenant=tenant,
        source="split",
    )

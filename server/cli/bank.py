"""`voiceprompt bank ...`: import, upload, split, list and the recording script."""

from __future__ import annotations

from pathlib import Path

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from prompts.models import Variant
from server.calls.script import call_scripts
from server.cli.common import Fail, echo_json, pass_settings, run
from server.reminders import ReminderStore
from server.runtime import open_runtime
from server.settings import Settings
from voicebank.asterisk import (
    DEFAULT_SOUNDS,
    find_sounds,
    find_transcript_file,
    read_transcript_file,
)
from voicebank.importer import (
    ImportReport,
    add_file,
    add_take,
    import_sounds,
    transcript_from_filename,
)

VARIANTS = click.Choice([v.value for v in Variant])
err = Console(stderr=True)


def _progress() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[item]}"),
        TimeRemainingColumn(),
        console=err,
        transient=False,
    )


def _print_report(report: ImportReport, what: str) -> None:
    for r in report.rejected:
        click.echo(f"rejected {r.error}", err=True)
    skipped = (
        f", {len(report.skipped)} skipped (same words as another file)" if report.skipped else ""
    )
    click.echo(
        f"{what}: {len(report.added)} added, {len(report.unchanged)} unchanged, "
        f"{len(report.rejected)} rejected{skipped}"
    )


@click.group()
def bank() -> None:
    """The voice bank: recorded clips and what is still missing."""


@bank.command("import-asterisk")
@click.argument(
    "directory", type=click.Path(file_okay=False, path_type=Path), default=DEFAULT_SOUNDS
)
@click.option("--voice", default=None, help="Voice id (default: VOICEPROMPT_VOICE, 'allison').")
@click.option(
    "--transcripts",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="core-sounds-en.txt(.gz); found next to the sounds or in /usr/share/doc.",
)
@click.option(
    "--only",
    multiple=True,
    metavar="NAME",
    help="Import only this sound (digits/7) or folder (digits/). Repeatable.",
)
@pass_settings
def import_asterisk(
    settings: Settings,
    directory: Path,
    voice: str | None,
    transcripts: Path | None,
    only: tuple[str, ...],
) -> None:
    """Import an Asterisk sound pack (default: Debian's asterisk-core-sounds-en-wav)."""
    if not directory.is_dir():
        raise Fail(
            f"{directory} does not exist: install asterisk-core-sounds-en-wav "
            "(apt-get install asterisk-core-sounds-en-wav) or pass the sounds folder"
        )
    transcript_file = transcripts or find_transcript_file(directory)
    if transcript_file is None:
        raise Fail(f"no core-sounds-en.txt(.gz) found for {directory}: pass --transcripts")
    entries = list(find_sounds(directory, read_transcript_file(transcript_file), only))
    if not entries:
        raise Fail(
            f"no sound files with transcripts under {directory}"
            + (f" matching {', '.join(only)}" if only else "")
        )
    voice_id = voice or settings.default_voice

    async def go() -> ImportReport:
        async with open_runtime(settings) as rt:
            await rt.catalogue.ensure_voice(
                voice_id,
                "Allison Smith (Asterisk core sounds, CC-BY-SA-3.0)"
                if voice_id == "allison"
                else voice_id,
                target_lufs=settings.target_lufs,
            )
            with _progress() as bar:
                task = bar.add_task(f"import {voice_id}", total=len(entries), item="")
                return await import_sounds(
                    rt.catalogue,
                    voice_id,
                    entries,
                    target_lufs=settings.target_lufs,
                    progress=lambda name: bar.update(task, advance=1, item=name),
                )

    _print_report(run(go()), f"voice {voice_id}")


@bank.command("upload")
@click.argument(
    "files", nargs=-1, required=True, type=click.Path(dir_okay=False, exists=True, path_type=Path)
)
@click.option("--voice", default=None, help="Voice id (created if new).")
@click.option("--tenant", default="", help="Tenant slug for tenant-only phrases (names).")
@click.option(
    "--transcript",
    help="What the recording says (one file only); "
    "default: the file name, e.g. your-appointment-with.final.wav.",
)
@click.option(
    "--variant",
    type=VARIANTS,
    default=None,
    help="continuing, final or any (default: from the file name, else any).",
)
@pass_settings
def upload(
    settings: Settings,
    files: tuple[Path, ...],
    voice: str | None,
    tenant: str,
    transcript: str | None,
    variant: str | None,
) -> None:
    """Clean and store recordings, one phrase per file (WAV, MP3, FLAC, OGG, M4A)."""
    if transcript and len(files) > 1:
        raise Fail(
            "--transcript names one file's words; with several files, name each file "
            "after its words (your-appointment-with.wav)"
        )
    voice_id = voice or settings.default_voice

    async def go() -> ImportReport:
        report = ImportReport()
        async with open_runtime(settings) as rt:
            await rt.catalogue.ensure_voice(voice_id, target_lufs=settings.target_lufs)
            if tenant:
                await rt.tenants.get(tenant)
            with _progress() as bar:
                task = bar.add_task("upload", total=len(files), item="")
                for path in files:
                    words, var = transcript_from_filename(path.name)
                    result = await add_file(
                        rt.catalogue,
                        voice_id,
                        path.name,
                        path.read_bytes(),
                        transcript or words,
                        variant=Variant(variant) if variant else var,
                        tenant=tenant,
                        target_lufs=settings.target_lufs,
                    )
                    report.results.append(result)
                    bar.update(task, advance=1, item=path.name)
        return report

    report = run(go())
    for r in report.added:
        assert r.clip is not None
        click.echo(
            f"added clip {r.clip.id}: {r.transcript!r} ({r.clip.variant.value}, "
            f"{r.clip.duration_ms} ms, {r.clip.lufs:.1f} LUFS) from {r.filename}"
        )
    _print_report(report, "upload")
    if report.rejected:
        raise SystemExit(2)


@bank.command("split")
@click.argument("file", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@click.option(
    "--script",
    "script_file",
    required=True,
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="Text file, one phrase per line, in the order spoken.",
)
@click.option("--voice", default=None)
@click.option("--tenant", default="")
@click.option("--variant", type=VARIANTS, default="any", show_default=True)
@pass_settings
def split(
    settings: Settings, file: Path, script_file: Path, voice: str | None, tenant: str, variant: str
) -> None:
    """Split one long take into a clip per script line (all or nothing)."""
    voice_id = voice or settings.default_voice
    script = script_file.read_text(encoding="utf-8").splitlines()

    async def go() -> list[str]:
        async with open_runtime(settings) as rt:
            await rt.catalogue.ensure_voice(voice_id, target_lufs=settings.target_lufs)
            if tenant:
                await rt.tenants.get(tenant)
            with err.status(f"splitting {file.name}"):
                records = await add_take(
                    rt.catalogue,
                    voice_id,
                    file.name,
                    file.read_bytes(),
                    script,
                    variant=Variant(variant),
                    tenant=tenant,
                    target_lufs=settings.target_lufs,
                )
            return [f"clip {r.id}: {r.transcript!r} ({r.duration_ms} ms)" for r in records]

    lines = run(go())
    for line in lines:
        click.echo(line)
    click.echo(f"{file.name}: {len(lines)} clips added")


@bank.command("list")
@click.option("--voice", default=None)
@click.option("--tenant", default=None, help="Only this tenant's clips ('' for shared ones).")
@click.option("--all", "include_replaced", is_flag=True, help="Include replaced takes.")
@click.option("--json", "as_json", is_flag=True)
@pass_settings
def list_clips(
    settings: Settings, voice: str | None, tenant: str | None, include_replaced: bool, as_json: bool
) -> None:
    """List clips with transcript, variant, duration and loudness."""

    async def go() -> list[dict[str, object]]:
        async with open_runtime(settings) as rt:
            records = await rt.catalogue.list_clips(
                voice, tenant=tenant, include_replaced=include_replaced
            )
            return [
                {
                    "id": r.id,
                    "voice": r.voice_id,
                    "tenant": r.tenant,
                    "transcript": r.transcript,
                    "variant": r.variant.value,
                    "duration_ms": r.duration_ms,
                    "lufs": round(r.lufs, 1),
                    "size": r.size,
                    "sha256": r.sha256,
                    "url": rt.storage.url(r.storage_key),
                    "current": r.current,
                    "created_at": r.created_at.isoformat(),
                }
                for r in records
            ]

    rows = run(go())
    if as_json:
        echo_json(rows)
        return
    table = Table(
        "id",
        "voice",
        "tenant",
        "transcript",
        "variant",
        "ms",
        "LUFS",
        *(["current"] if include_replaced else []),
    )
    for r in rows:
        table.add_row(
            str(r["id"]),
            str(r["voice"]),
            str(r["tenant"]),
            str(r["transcript"]),
            str(r["variant"]),
            str(r["duration_ms"]),
            str(r["lufs"]),
            *(["yes" if r["current"] else "replaced"] if include_replaced else []),
        )
    Console().print(table)
    click.echo(f"{len(rows)} clips")


@bank.command("script")
@click.option("--tenant", required=True, help="Tenant slug: its templates and voice.")
@click.option("--csv", "as_csv", is_flag=True, help="CSV instead of text.")
@click.option(
    "--all",
    "everything",
    is_flag=True,
    help="Every line the calls can need, recorded or not (the coverage page's list).",
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write to a file instead of stdout.",
)
@pass_settings
def script(
    settings: Settings, tenant: str, as_csv: bool, everything: bool, out: Path | None
) -> None:
    """What the tenant's voice still lacks, as a script a voice actor can read from.

    Every phrase a call can speak: both messages, the key menu, "sorry" and the endings, with
    the tenant's name and the providers of its recent reminders. The console's coverage page
    lists the same lines.
    """

    async def go() -> str:
        async with open_runtime(settings) as rt:
            t = await rt.tenants.get(tenant)
            scripts = await call_scripts(t, rt.catalogue, ReminderStore(rt.engine))
            rs = scripts.everything if everything else scripts.missing
            return rs.to_csv() if as_csv else rs.to_text()

    text = run(go())
    if out:
        out.write_text(text, encoding="utf-8")
        click.echo(f"wrote {out}")
    else:
        click.echo(text, nl=False)

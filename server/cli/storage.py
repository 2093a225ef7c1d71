"""`voiceprompt bank sync|check|slurp`: move the voice bank between stores, check that every
clip URL serves what Twilio needs (and repair it), copy a tenant-hosted recording in.

Exit status: 0 when everything is fine, 1 when a check or copy failed (the summary says which),
2 for an error that stopped the command (one line, as everywhere in the CLI).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import click
from rich.console import Console
from rich.table import Table

from prompts.models import Variant
from server.cli.bank import VARIANTS, _progress
from server.cli.common import Fail, pass_settings, run
from server.runtime import Runtime, media_base_url, open_runtime
from server.settings import Settings
from server.web.api_voicebank import limits_for
from voicebank.audit import (
    Repair,
    SentenceRepair,
    check_clips,
    check_sentences,
    repair_clips,
    repair_sentences,
)
from voicebank.catalogue import ClipRecord
from voicebank.checks import DEFAULT_CONCURRENCY, Checker, CheckResult, open_session
from voicebank.importer import FileResult
from voicebank.render import Renderer
from voicebank.sentence_store import SentenceCheck, SentenceStore
from voicebank.slurp import slurp_into_voice
from voicebank.stitch import CatalogueMasters, SentenceRecipe, Stitcher
from voicebank.storage import open_storage
from voicebank.storage.base import Storage
from voicebank.storage.sync import DEFAULT_CONCURRENCY as SYNC_CONCURRENCY
from voicebank.storage.sync import ObjectResult, Outcome, SyncReport
from voicebank.storage.sync import sync as sync_objects


def _open(settings: Settings, uri: str, endpoint_url: str | None) -> Storage:
    if uri.startswith("s3://"):
        return open_storage(
            uri,
            media_base_url=None,
            s3_endpoint_url=endpoint_url or settings.s3_endpoint_url,
        )
    return open_storage(uri, media_base_url=media_base_url(settings))


# -- sync -----------------------------------------------------------------------------------
def _switch_hint(to: str, endpoint_url: str | None) -> str:
    lines = [f"  VOICEPROMPT_STORAGE={to}"]
    if endpoint_url:
        lines.append(f"  VOICEPROMPT_S3_ENDPOINT_URL={endpoint_url}")
    return "\n".join(lines)


@click.command("sync")
@click.option("--to", "to", required=True, help="Destination: s3://bucket/prefix or file:///dir.")
@click.option(
    "--to-endpoint-url",
    default=None,
    help="S3-compatible endpoint of the destination (default: VOICEPROMPT_S3_ENDPOINT_URL).",
)
@click.option(
    "--concurrency", default=SYNC_CONCURRENCY, show_default=True, type=click.IntRange(1, 64)
)
@pass_settings
def sync(settings: Settings, to: str, to_endpoint_url: str | None, concurrency: int) -> None:
    """Copy every clip object (MP3s, masters, originals) to another store, verified.

    Skips what the destination already holds, so an interrupted run resumes where it stopped.
    Switches nothing: at the end it prints how to switch.
    """

    async def go() -> tuple[str, str, SyncReport | None]:
        async with open_runtime(settings) as rt:
            dest = _open(settings, to, to_endpoint_url)
            if dest.describe() == rt.storage.describe():
                raise Fail(f"{to} is the current storage ({rt.storage.describe()})")
            # Every clip object and every stitched sentence (calls and prepared answers name
            # sentence URLs too).
            keys = await rt.catalogue.object_keys() + await SentenceStore(rt.engine).keys()
            with _progress() as bar:
                task = bar.add_task("sync", total=len(keys), item="")

                def step(result: ObjectResult) -> None:
                    bar.update(task, advance=1, item=result.key.rsplit("/", 1)[-1][:16])

                try:
                    report = await sync_objects(
                        rt.storage, dest, keys, concurrency=concurrency, progress=step
                    )
                except KeyboardInterrupt:
                    return rt.storage.describe(), dest.describe(), None
            return rt.storage.describe(), dest.describe(), report

    source, dest, report = run(go())
    if report is None:
        click.echo("interrupted: run the same command again to resume", err=True)
        raise SystemExit(130)
    for r in report.failed:
        click.echo(f"failed {r.key}: {r.reason}", err=True)
    click.echo(
        f"{source} -> {dest}: {report.count(Outcome.COPIED)} copied, "
        f"{report.count(Outcome.PRESENT)} already there, {len(report.failed)} failed"
    )
    if not report.verified:
        click.echo("not every object is verified: nothing to switch yet; run sync again")
        raise SystemExit(1)
    click.echo(
        f"all {len(report.results)} objects are in {dest} and verified. Nothing was switched; "
        "to serve from there, set\n"
        + _switch_hint(to, to_endpoint_url if to.startswith("s3://") else None)
        + "\nand restart the server and workers."
    )


# -- check ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class CheckRun:
    records: dict[int, ClipRecord]
    results: list[CheckResult]
    repairs: list[Repair]
    sentences: list[SentenceCheck] = field(default_factory=list)
    sentence_repairs: list[SentenceRepair] = field(default_factory=list)

    def failing_sentences(self) -> list[str]:
        """Stitched sentences still failing: not repaired, or failing the check after it."""
        fixed = {r.key for r in self.sentence_repairs if r.check is not None and r.check.ok}
        return [c.key for c in self.sentences if not c.ok and c.key not in fixed]


def _final(run_: CheckRun) -> dict[int, CheckResult]:
    """Each clip's last word: the check after its repair, if it had one."""
    out = {r.clip_id: r for r in run_.results}
    for repair in run_.repairs:
        if repair.check is not None:
            out[repair.clip_id] = repair.check
    return out


def _summary(run_: CheckRun) -> Table:
    """Every clip that failed, with its problem and what a repair did."""
    final = _final(run_)
    first = {r.clip_id: r for r in run_.results}
    repairs = {r.clip_id: r for r in run_.repairs}
    table = Table("clip", "voice", "transcript", "status", "problem", "repair")
    for clip_id, result in sorted(final.items()):
        repair = repairs.get(clip_id)
        if result.ok and repair is None:
            continue
        record = run_.records[clip_id]
        how = "" if repair is None else repair.how
        if repair is not None and repair.new_url:
            how += f": {repair.new_url}"
        table.add_row(
            str(clip_id),
            f"{record.voice_id}/{record.tenant}" if record.tenant else record.voice_id,
            record.transcript,
            "ok" if result.ok else str(result.status or "-"),
            first[clip_id].reason if result.ok else result.reason,
            how,
        )
    return table


@click.command("check")
@click.option("--voice", default=None, help="Only this voice's clips.")
@click.option("--tenant", default=None, help="Only this tenant's clips ('' for shared ones).")
@click.option("--repair", is_flag=True, help="Put failing clips back and check them again.")
@click.option(
    "--from",
    "sources",
    multiple=True,
    metavar="URI",
    help="Another store that may hold the lost MP3 bytes (repeatable), e.g. the old backend.",
)
@click.option(
    "--concurrency", default=DEFAULT_CONCURRENCY, show_default=True, type=click.IntRange(1, 256)
)
@pass_settings
def check(
    settings: Settings,
    voice: str | None,
    tenant: str | None,
    repair: bool,
    sources: tuple[str, ...],
    concurrency: int,
) -> None:
    """Fetch every current clip URL as Twilio would and verify status, type, size, checksum."""

    async def go() -> CheckRun:
        async with open_runtime(settings) as rt:
            records = await rt.catalogue.list_clips(voice, tenant=tenant)
            extra = [_open(settings, uri, None) for uri in sources]
            async with open_session(concurrency) as session:
                checker = Checker(session, concurrency=concurrency)
                with _progress() as bar:
                    task = bar.add_task("check", total=len(records), item="")
                    results = await check_clips(
                        rt.catalogue,
                        checker,
                        records,
                        progress=lambda r: bar.update(task, advance=1, item=f"clip {r.clip_id}"),
                    )
                repairs: list[Repair] = []
                failed = [r.clip_id for r in results if not r.ok]
                if repair and failed:
                    with _progress() as bar:
                        fixing = bar.add_task("repair", total=len(failed), item="")
                        repairs = await repair_clips(
                            rt.catalogue,
                            checker,
                            failed,
                            sources=extra,
                            progress=lambda r: bar.update(
                                fixing, advance=1, item=f"clip {r.clip_id}"
                            ),
                        )
                checked, fixed = await _check_sentences(rt, checker, voice=voice, repair=repair)
            return CheckRun({r.id: r for r in records}, results, repairs, checked, fixed)

    result = run(go())
    final = _final(result)
    bad = [r for r in final.values() if not r.ok]
    table = _summary(result)
    if table.row_count:
        Console().print(table)
    fixed = sum(1 for r in result.repairs if r.check is not None and r.check.ok)
    click.echo(
        f"{len(final)} clips checked: {len(final) - len(bad)} ok, {len(bad)} failed"
        + (f" ({fixed} repaired)" if result.repairs else "")
    )
    still = result.failing_sentences()
    failed_sentences = [c for c in result.sentences if not c.ok]
    click.echo(
        f"{len(result.sentences)} stitched sentences checked: "
        f"{len(result.sentences) - len(failed_sentences)} ok, {len(failed_sentences)} failed"
        + (f" ({len(failed_sentences) - len(still)} repaired)" if result.sentence_repairs else "")
    )
    for check_ in failed_sentences:
        if check_.key in still:
            click.echo(f"  {check_.key}: {check_.reason}")
    if still and not bad:
        if not repair:
            click.echo("run again with --repair to render failing sentences again")
        raise SystemExit(1)
    if bad:
        if all(r.status is None for r in bad):
            click.echo(
                f"nothing answered (e.g. {bad[0].url}): is the store, CDN or, for a local "
                "folder, `voiceprompt serve` reachable at that address?"
            )
        elif not repair:
            click.echo("run again with --repair to put failing clips back")
        raise SystemExit(1)


async def _check_sentences(
    rt: Runtime, checker: Checker, *, voice: str | None, repair: bool
) -> tuple[list[SentenceCheck], list[SentenceRepair]]:
    """Stitched sentences are checked as clips are (URL, type, size, checksum); a failing one
    is put back from its stored bytes or rendered again from its recipe under the same URL."""
    store = SentenceStore(rt.engine)
    with _progress() as bar:
        task = bar.add_task("sentences", total=len(await store.keys()), item="")
        checked = await check_sentences(
            store,
            rt.storage,
            checker,
            voice_id=voice,
            progress=lambda c: bar.update(task, advance=1, item=c.key.rsplit("/", 1)[-1][:12]),
        )
    failed = [c.key for c in checked if not c.ok]
    if not (repair and failed):
        return checked, []
    masters = CatalogueMasters(rt.catalogue)
    stitcher = Stitcher(rt.storage, Renderer(masters))

    async def prepare(recipe: SentenceRecipe) -> None:
        await masters.resolve(recipe.clip_ids)

    return checked, await repair_sentences(store, stitcher, checker, failed, prepare=prepare)


# -- slurp ----------------------------------------------------------------------------------
@click.command("slurp")
@click.argument("url")
@click.option("--tenant", required=True, help="Tenant slug the recording belongs to.")
@click.option("--transcript", required=True, help="What the recording says.")
@click.option("--voice", default=None, help="Voice id (default: the tenant's voice).")
@click.option("--variant", type=VARIANTS, default="any", show_default=True)
@pass_settings
def slurp(
    settings: Settings, url: str, tenant: str, transcript: str, voice: str | None, variant: str
) -> None:
    """Copy a tenant-hosted MP3 or WAV into the voice bank (then served from our storage)."""
    # The operator typed the URL: loopback and private hosts are allowed here, not in the API.
    limits = limits_for(settings, allow_private=True)

    async def go() -> tuple[FileResult, str]:
        async with open_runtime(settings) as rt:
            t = await rt.tenants.get(tenant)
            result = await slurp_into_voice(
                rt.catalogue,
                url,
                voice_id=voice or t.voice,
                transcript=transcript,
                tenant=t.slug,
                variant=Variant(variant),
                target_lufs=settings.target_lufs,
                limits=limits,
            )
            return result, rt.storage.url(result.clip.storage_key) if result.clip else ""

    result, clip_url = run(go())
    if result.error is not None:
        raise Fail(result.error)
    if result.clip is None:
        click.echo(f"unchanged: the current take of {transcript!r} came from this file")
        return
    click.echo(
        f"added clip {result.clip.id}: {result.clip.transcript!r} "
        f"({result.clip.duration_ms} ms) from {url}\nserved from {clip_url}"
    )


def register(bank: click.Group) -> None:
    for command in (sync, check, slurp):
        bank.add_command(command)

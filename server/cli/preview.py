"""`voiceprompt preview`: hear and read exactly what a callee will get."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import cast

import click

from server.calls.answers import Call
from server.calls.delivery import CallAudio
from server.calls.messages import MessageVariant
from server.calls.preview import Preview, plan_json, preview_call
from server.calls.voices import VoiceCache
from server.cli.common import (
    Fail,
    appointment_at_option,
    echo_json,
    pass_settings,
    provider_option,
    run,
)
from server.runtime import open_runtime
from server.settings import Settings


def parse_when(text: str, option: str) -> datetime:
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        raise Fail(f"{option} {text!r} is not an ISO date-time such as 2026-12-01T16:47") from None


@click.command()
@click.option("--tenant", required=True, help="Tenant slug.")
@appointment_at_option
@provider_option
@click.option(
    "--variant", type=click.Choice(["human", "voicemail"]), default="human", show_default=True
)
@click.option(
    "--now",
    "now_text",
    metavar="ISO",
    help="Pretend it is this time (for 'today'/'tomorrow'); default: now.",
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the stitched MP3 here (and the transcript next to it, .txt).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the plan as JSON.")
@pass_settings
def preview(
    settings: Settings,
    tenant: str,
    at_text: str,
    provider: str | None,
    variant: str,
    now_text: str | None,
    out: Path | None,
    as_json: bool,
) -> None:
    """Plan a tenant's reminder for one appointment and (with --out) render the call as the
    callee hears it: the call URL's answer for a person or a machine, menu included."""
    at = parse_when(at_text, "--at")
    now = parse_when(now_text, "--now") if now_text else datetime.now(UTC)

    async def go() -> Preview:
        async with open_runtime(settings) as rt:
            t = await rt.tenants.get(tenant)
            when = at if at.tzinfo else at.replace(tzinfo=t.zone)
            moment = now if now.tzinfo else now.replace(tzinfo=t.zone)
            view = await VoiceCache(rt.catalogue).get(t.voice, t.slug)
            call = Call("preview", t, when, provider, view)
            chosen = cast(MessageVariant, variant)
            return await preview_call(
                CallAudio(rt), settings.public_url, call, chosen, now=lambda: moment, play=bool(out)
            )

    found = run(go())
    plan = found.answer.message
    if plan is None:  # every answer to the call URL plays a message
        raise Fail("this tenant's call plays no message")
    if out and found.playback is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(found.mp3)
        out.with_suffix(".txt").write_text(plan.transcript + "\n", encoding="utf-8")
    if as_json:
        echo_json({**plan_json(plan), "twiml": found.answer.twiml, "for": found.note})
        return
    click.echo(plan.transcript)
    if found.playback is not None:
        heard = f"{found.playback.duration_ms / 1000:.1f} s as the callee hears it"
    else:
        heard = f"about {plan.duration_ms / 1000:.1f} s"
    click.echo(f"loops: {plan.loops}, {heard} ({found.note})")
    for sentence in plan.spoken:
        record = ", ".join(f"'{m}'" for m in sentence.missing)
        click.echo(f"spoken by text-to-speech: {sentence.text} (record {record})")
    if plan.missing:
        click.echo(f"missing ({len(plan.missing)}, spoken by text-to-speech until recorded):")
        for phrase in plan.missing:
            click.echo(f"  - {phrase}")
    if out:
        click.echo(f"wrote {out} and {out.with_suffix('.txt')}")

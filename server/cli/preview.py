"""`voiceprompt preview`: hear and read exactly what a callee will get."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import cast

import click

from prompts.models import Plan
from server.calls.messages import MessageRequest, MessageVariant, build_plan
from server.calls.preview import plan_json, render_plan
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
    """Plan (and optionally render) a tenant's reminder for one appointment."""
    at = parse_when(at_text, "--at")
    now = parse_when(now_text, "--now") if now_text else datetime.now(UTC)

    async def go() -> tuple[Plan, bytes | None]:
        async with open_runtime(settings) as rt:
            t = await rt.tenants.get(tenant)
            when = at if at.tzinfo else at.replace(tzinfo=t.zone)
            today_ref = now if now.tzinfo else now.replace(tzinfo=t.zone)
            index = await rt.catalogue.clip_index(t.voice, t.slug)
            req = MessageRequest(t, when, provider, cast(MessageVariant, variant))
            plan = build_plan(req, index, now=today_ref)
            audio = await render_plan(rt, plan) if out else None
            return plan, audio

    plan, audio = run(go())
    if out and audio is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(audio)
        out.with_suffix(".txt").write_text(plan.transcript + "\n", encoding="utf-8")
    if as_json:
        echo_json(plan_json(plan))
        return
    click.echo(plan.transcript)
    click.echo(f"loops: {plan.loops}, about {plan.duration_ms / 1000:.1f} s")
    if plan.missing:
        click.echo(f"missing ({len(plan.missing)}, spoken by text-to-speech until recorded):")
        for phrase in plan.missing:
            click.echo(f"  - {phrase}")
    if out:
        click.echo(f"wrote {out} and {out.with_suffix('.txt')}")

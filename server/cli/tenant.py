"""`voiceprompt tenant ...`: create, show and update tenants."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import fields
from typing import Any, TypeVar

import click

from server.cli.common import echo_json, pass_settings, run
from server.runtime import open_runtime
from server.settings import Settings
from server.tenants import AMD_MODES, DELIVERIES, FALLBACKS, MINUTE_FIELDS, Tenant

F = TypeVar("F", bound=Callable[..., Any])

_DEFAULTS = {f.name: f.default for f in fields(Tenant)}


def _minutes_help(name: str, what: str) -> str:
    """Help for a whole-number scheduling option: its range and default come from tenants.py."""
    low, high = MINUTE_FIELDS[name]
    return f"{what} ({low}-{high}, default {_DEFAULTS[name]})."


def _schedule_options() -> list[Callable[[F], F]]:
    """When calls may ring; values are checked by server.tenants.validate like the REST API's."""
    return [
        click.option(
            "--call-lead-minutes",
            type=int,
            help=_minutes_help(
                "call_lead_minutes", "Minutes before the appointment calls may start"
            ),
        ),
        click.option(
            "--calling-hours-start",
            metavar="HH:MM",
            help=f"Local time calls may start (default {_DEFAULTS['calling_hours_start']}).",
        ),
        click.option(
            "--calling-hours-end",
            metavar="HH:MM",
            help=(
                f"Local time calls must stop, after the start; 24:00 is midnight "
                f"(default {_DEFAULTS['calling_hours_end']})."
            ),
        ),
        click.option(
            "--retry-delay-minutes",
            type=int,
            help=_minutes_help("retry_delay_minutes", "Minutes to wait before calling again"),
        ),
        click.option(
            "--max-attempts",
            type=int,
            help=_minutes_help("max_attempts", "Calls per reminder at most"),
        ),
        click.option(
            "--min-spacing-minutes",
            type=int,
            help=_minutes_help("min_spacing_minutes", "Minutes between any two calls to a number"),
        ),
    ]


def tenant_options(creating: bool) -> Callable[[F], F]:
    """The options shared by create and update (None = leave unchanged on update)."""

    def deco(func: F) -> F:
        opts = [
            click.option("--name", required=creating, help="Business name, as spoken."),
            click.option("--timezone", help="IANA zone, e.g. America/Chicago."),
            click.option("--region", help="Default phone region, e.g. US."),
            click.option("--caller-id", help="Number the calls come from."),
            click.option("--voice", help="Voice id of the clips to use."),
            click.option("--template-human", help="Template for a person who answers."),
            click.option("--template-voicemail", help="Template for an answering machine."),
            click.option("--loops", type=int, help="Times the message plays (1-3, default 2)."),
            click.option("--amd-mode", type=click.Choice(AMD_MODES)),
            click.option(
                "--delivery",
                type=click.Choice(DELIVERIES),
                help="stitched: a file per sentence (default); clips: a file per clip.",
            ),
            click.option(
                "--fallback",
                type=click.Choice(FALLBACKS),
                help="Unrecorded words: the fallback voice says the whole sentence (default) "
                "or only those words.",
            ),
            click.option("--skip-to-beep/--no-skip-to-beep", default=None),
            click.option("--language", help="Language of text-to-speech fallbacks (en-US)."),
            *_schedule_options(),
        ]
        for opt in reversed(opts):
            func = opt(func)
        return func

    return deco


def _changes(kwargs: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in kwargs.items() if v is not None}


@click.group()
def tenant() -> None:
    """Tenants: the businesses reminders are sent for."""


@tenant.command("create")
@click.argument("slug")
@tenant_options(creating=True)
@click.option("--if-missing", is_flag=True, help="Do nothing if the tenant exists already.")
@pass_settings
def create(settings: Settings, slug: str, if_missing: bool, **kwargs: Any) -> None:
    """Create a tenant; prints its API key once."""
    changes = _changes(kwargs)
    changes.setdefault("voice", settings.default_voice)

    async def go() -> tuple[Tenant, str | None]:
        async with open_runtime(settings) as rt:
            if if_missing:
                existing = {t.slug: t for t in await rt.tenants.list()}
                if slug in existing:
                    return existing[slug], None
            return await rt.tenants.create(Tenant(slug=slug, **changes))

    t, key = run(go())
    if key is None:
        click.echo(f"tenant {slug} exists already")
        return
    click.echo(f"created tenant {t.slug} ({t.name})")
    click.echo(f"API key (shown once, keep it safe): {key}")


@tenant.command("show")
@click.argument("slug")
@pass_settings
def show(settings: Settings, slug: str) -> None:
    """Print a tenant's settings as JSON."""

    async def go() -> Tenant:
        async with open_runtime(settings) as rt:
            return await rt.tenants.get(slug)

    echo_json(run(go()).public_dict())


@tenant.command("update")
@click.argument("slug")
@tenant_options(creating=False)
@pass_settings
def update(settings: Settings, slug: str, **kwargs: Any) -> None:
    """Change some of a tenant's settings; the rest stay as they are."""
    changes = _changes(kwargs)
    if not changes:
        raise click.UsageError("nothing to change: pass at least one option")

    async def go() -> Tenant:
        async with open_runtime(settings) as rt:
            return await rt.tenants.update(slug, changes)

    echo_json(run(go()).public_dict())

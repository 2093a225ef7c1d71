"""`voiceprompt remind | call | worker | log | dnc`: reminders, dialing and the Twilio log."""

from __future__ import annotations

import logging
from collections import Counter
from datetime import UTC, datetime

import click

from server.calls.prepared import Preparer
from server.cli.common import (
    Fail,
    appointment_at_option,
    echo_json,
    pass_settings,
    provider_option,
    run,
)
from server.dialing.apilog import ApiExchange, ApiLog
from server.dialing.dialer import add_do_not_call, list_do_not_call, remove_do_not_call
from server.dialing.dispatcher import DispatchConfig, Dispatcher, DispatchResult
from server.dialing.schedule import first_call_at
from server.dialing.twilio import open_client
from server.dialing.worker import run_worker
from server.reminders import Reminder, ReminderStore
from server.runtime import open_runtime
from server.settings import Settings
from server.tenants import Tenant, normalize_phone


def _local(at: datetime, tenant: Tenant) -> str:
    return at.astimezone(tenant.zone).strftime("%Y-%m-%d %H:%M %Z")


def _values(pairs: tuple[str, ...]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise Fail(f"--value {pair!r} is not KEY=VALUE")
        out[key] = value
    return out


@click.command()
@click.option("--tenant", required=True, help="Tenant slug.")
@click.option("--to", "to", required=True, help="Number to call (the tenant's region applies).")
@appointment_at_option
@provider_option
@click.option("--value", "values", multiple=True, metavar="KEY=VALUE", help="Template value.")
@pass_settings
def remind(
    settings: Settings,
    tenant: str,
    to: str,
    at_text: str,
    provider: str | None,
    values: tuple[str, ...],
) -> None:
    """Create a reminder; the worker calls it from the tenant's lead time, in calling hours."""
    try:
        at = datetime.fromisoformat(at_text)
    except ValueError:
        raise Fail(f"--at {at_text!r} is not an ISO date-time such as 2026-12-01T16:47") from None
    extra = _values(values)

    async def go() -> tuple[Reminder, Tenant, datetime | None]:
        async with open_runtime(settings) as rt:
            t = await rt.tenants.get(tenant)
            when = at if at.tzinfo else at.replace(tzinfo=t.zone)
            reminder = await ReminderStore(rt.engine).create(t, to, when, provider, extra)
            first = first_call_at(reminder.appointment_at, datetime.now(UTC), t.calling_policy())
            return reminder, t, first

    reminder, t, first = run(go())
    click.echo(
        f"created reminder {reminder.id}: {reminder.to} for {t.name}, "
        f"appointment {_local(reminder.appointment_at, t)}"
    )
    if first is None:
        click.echo("warning: no calling hours are left before the appointment; it will not ring")
    else:
        click.echo(f"first call from {_local(first, t)} (run `voiceprompt worker` to dial)")


def _explain(result: DispatchResult) -> str:
    if result.result == "dialed":
        return f"reminder {result.reminder_id}: call {result.call_sid} ({result.detail or 'sent'})"
    if result.result == "postponed":
        return f"not dialed: {result.detail}; the worker tries again in a minute"
    if result.result == "unknown":
        return (
            f"the call may have been placed ({result.detail}); the worker will ask Twilio and "
            "adopt it or mark the reminder needs_review"
        )
    return result.detail or result.result


@click.command()
@click.option("--reminder", "reminder_id", required=True, type=int, help="Reminder id.")
@pass_settings
def call(settings: Settings, reminder_id: int) -> None:
    """Dial one reminder now (safety checks and number spacing still apply)."""

    async def go() -> DispatchResult:
        async with open_runtime(settings) as rt:
            api_log = ApiLog(rt.engine, secrets=[settings.twilio_auth_token or ""])
            async with open_client(settings, api_log) as client:
                prepare = Preparer.for_runtime(rt, ReminderStore(rt.engine))
                dispatcher = Dispatcher(rt.engine, settings, client, prepare=prepare)
                return await dispatcher.dial_now(reminder_id)

    result = run(go())
    if result.result != "dialed":
        raise Fail(_explain(result))
    click.echo(_explain(result))


@click.command()
@click.option("--once", is_flag=True, help="Dial what is due now, then exit.")
@click.option(
    "--lanes",
    default=4,
    show_default=True,
    type=click.IntRange(1, 64),
    help="Calls this worker has in flight at once.",
)
@pass_settings
def worker(settings: Settings, once: bool, lanes: int) -> None:
    """Dial due reminders until stopped (SIGTERM finishes the calls in hand)."""
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )

    async def go() -> Counter[str]:
        async with open_runtime(settings) as rt:  # the voice bank, to prepare each call's answers
            prepare = Preparer.for_runtime(rt, ReminderStore(rt.engine))
            return await run_worker(
                settings, once=once, config=DispatchConfig(lanes=lanes), prepare=prepare
            )

    counts = run(go())
    if once:
        summary = ", ".join(f"{n} {k}" for k, n in sorted(counts.items())) or "nothing due"
        click.echo(f"worker done: {summary}")


def _format(entry: ApiExchange) -> list[str]:
    answer = f"{entry.status}" if entry.status is not None else f"no answer ({entry.error})"
    took = f" {entry.duration_ms:.0f} ms" if entry.duration_ms is not None else ""
    lines = [f"{entry.started_at.isoformat()} {entry.method} {entry.url} -> {answer}{took}"]
    if entry.method != "GET":
        for name, value in sorted(entry.request.items()):
            lines.append(f"    {name}: {value}")
    if entry.response_body:
        lines.append(f"    <- {entry.response_body[:500]}")
    return lines


@click.command("log")
@click.option("--reminder", "reminder_id", type=int, help="Reminder id.")
@click.option("--json", "as_json", is_flag=True, help="Print the entries as JSON.")
@click.option("--purge", is_flag=True, help="Delete entries older than VOICEPROMPT_API_LOG_DAYS.")
@pass_settings
def log_cmd(settings: Settings, reminder_id: int | None, as_json: bool, purge: bool) -> None:
    """Show the Twilio API requests and responses of a reminder."""
    if (reminder_id is None) == (not purge):
        raise click.UsageError("give --reminder ID or --purge")

    async def go() -> list[ApiExchange] | int:
        async with open_runtime(settings) as rt:
            api_log = ApiLog(rt.engine)
            if purge:
                return await api_log.purge(datetime.now(UTC), settings.api_log_days)
            assert reminder_id is not None
            await ReminderStore(rt.engine).get(reminder_id)  # NotFound for a wrong id
            return await api_log.for_reminder(reminder_id)

    result = run(go())
    if isinstance(result, int):
        click.echo(f"purged {result} entries older than {settings.api_log_days} days")
        return
    if as_json:
        echo_json([e.public_dict() for e in result])
        return
    if not result:
        click.echo(f"no Twilio requests for reminder {reminder_id}")
    for entry in result:
        click.echo("\n".join(_format(entry)))


@click.group()
def dnc() -> None:
    """Tenants' do-not-call lists: numbers never dialed."""


@dnc.command("add")
@click.option("--tenant", required=True)
@click.option("--number", required=True)
@click.option("--reason", default=None)
@pass_settings
def dnc_add(settings: Settings, tenant: str, number: str, reason: str | None) -> None:
    """Never call NUMBER for this tenant."""

    async def go() -> tuple[str, bool]:
        async with open_runtime(settings) as rt:
            t = await rt.tenants.get(tenant)
            e164 = normalize_phone(number, t.region, field="number")
            return e164, await add_do_not_call(rt.engine, tenant, e164, reason)

    e164, added = run(go())
    click.echo(f"{e164} {'added to' if added else 'is already on'} {tenant}'s do-not-call list")


@dnc.command("remove")
@click.option("--tenant", required=True)
@click.option("--number", required=True)
@pass_settings
def dnc_remove(settings: Settings, tenant: str, number: str) -> None:
    """Take NUMBER off the tenant's do-not-call list."""

    async def go() -> tuple[str, bool]:
        async with open_runtime(settings) as rt:
            t = await rt.tenants.get(tenant)
            e164 = normalize_phone(number, t.region, field="number")
            return e164, await remove_do_not_call(rt.engine, tenant, e164)

    e164, removed = run(go())
    if not removed:
        raise Fail(f"{e164} is not on {tenant}'s do-not-call list")
    click.echo(f"{e164} removed from {tenant}'s do-not-call list")


@dnc.command("list")
@click.option("--tenant", required=True)
@pass_settings
def dnc_list(settings: Settings, tenant: str) -> None:
    """Print the tenant's do-not-call list."""

    async def go() -> list[tuple[str, str | None]]:
        async with open_runtime(settings) as rt:
            return await list_do_not_call(rt.engine, tenant)

    for number, reason in run(go()):
        click.echo(f"{number}  {reason or ''}".rstrip())


COMMANDS = (remind, call, worker, log_cmd, dnc)

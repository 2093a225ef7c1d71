"""`voiceprompt twiml`: print what a webhook would answer, without a server and without
recording anything."""

from __future__ import annotations

from dataclasses import replace

import click
from aiohttp.test_utils import TestClient, TestServer

from server.app import create_app
from server.cli.common import Fail, pass_settings, run
from server.reminders import ReminderStore
from server.runtime import open_runtime
from server.settings import Settings

# Twilio's identifiers have this shape; a dry run uses an obviously fake one.
DRY_RUN_CALL_SID = "CA" + "0" * 32


@click.command("twiml")
@click.option("--reminder", "reminder_id", required=True, type=int, help="Reminder id.")
@click.option(
    "--answered-by",
    default=None,
    help="Twilio's AnsweredBy (human, unknown, machine_start, machine_end_beep, fax).",
)
@click.option("--digits", default=None, help="Show the Gather step's answer to these keys.")
@click.option("--no-input", is_flag=True, help="Show the answer when no key was pressed.")
@pass_settings
def twiml_cmd(
    settings: Settings,
    reminder_id: int,
    answered_by: str | None,
    digits: str | None,
    no_input: bool,
) -> None:
    """Print the TwiML the call webhooks would answer for a reminder."""
    if digits is not None and no_input:
        raise click.UsageError("--digits and --no-input exclude each other")

    async def go() -> str:
        async with open_runtime(settings) as rt:
            await ReminderStore(rt.engine).get(reminder_id)  # NotFound -> one clear line
        # The same handlers as `serve`, in-process on an ephemeral loopback port; nothing is
        # recorded and no signature is needed for our own request.
        app = create_app(
            replace(settings, validate_signatures=False, env="development"), dry_run=True
        )
        async with TestClient(TestServer(app, host="127.0.0.1")) as client:
            form = {"CallSid": DRY_RUN_CALL_SID}
            if digits is not None or no_input:
                path = f"/twilio/gather/{reminder_id}" + ("?noinput=1" if no_input else "")
                if digits is not None:
                    form["Digits"] = digits
            else:
                path = f"/twilio/voice/{reminder_id}"
                if answered_by:
                    form["AnsweredBy"] = answered_by
            resp = await client.post(path, data=form)
            text = await resp.text()
            if resp.status != 200:
                raise Fail(f"the webhook answered HTTP {resp.status}: {text.strip()[:200]}")
            return text

    click.echo(run(go()))

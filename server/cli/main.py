"""The `voiceprompt` command group: the top-level commands and every sub-command registered."""

from __future__ import annotations

import sys

import click

from server.cli import bank, calls, preview, serve, storage, tenant, twiml
from server.cli.common import Fail, echo_json, pass_settings, run
from server.errors import ServerError
from server.settings import Settings


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.pass_context
def main(ctx: click.Context) -> None:
    """voiceprompt: appointment reminders spoken by a real human voice.

    Configuration comes from VOICEPROMPT_* environment variables (see `voiceprompt config`).
    """
    try:
        settings = Settings.from_env()
    except ServerError as exc:
        raise Fail(str(exc)) from None
    ctx.ensure_object(dict)["settings"] = settings


@main.command("config")
@pass_settings
def config_cmd(settings: Settings) -> None:
    """Show the effective settings (secrets masked)."""
    echo_json(settings.redacted())


@main.group()
def db() -> None:
    """Database migrations."""


@db.command("upgrade")
@click.option("--revision", default="heads", show_default=True)
@pass_settings
def db_upgrade(settings: Settings, revision: str) -> None:
    """Apply migrations (SQLite is also upgraded automatically on use)."""
    from server.db.engine import create_engine, current_revisions, upgrade

    async def go() -> str:
        engine = create_engine(settings.resolved_database_url)
        try:
            await upgrade(engine, revision)
            return ", ".join(await current_revisions(engine))
        finally:
            await engine.dispose()

    rev = run(go())
    click.echo(f"database {settings.redacted()['database_url']} is at migration {rev}")


storage.register(bank.bank)
main.add_command(bank.bank)
main.add_command(tenant.tenant)
main.add_command(preview.preview)
main.add_command(serve.serve)
main.add_command(twiml.twiml_cmd)
for command in calls.COMMANDS:
    main.add_command(command)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

"""The `voiceprompt` command: a thin click layer over the library.

Errors from any package become one line on stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from functools import wraps
from typing import Any, TypeVar

import click

from prompts.errors import PromptError
from server.errors import ServerError
from server.settings import Settings
from voicebank.errors import VoiceBankError

T = TypeVar("T")

HANDLED = (PromptError, ServerError, VoiceBankError, OSError)


class Fail(click.ClickException):
    """A clear one-line error with exit status 2."""

    exit_code = 2

    def show(self, file: Any = None) -> None:
        click.echo(f"error: {self.format_message()}", err=True)


def run(coro: Awaitable[T]) -> T:
    """Run a coroutine, turning the packages' errors into a one-line exit-2 failure."""
    try:
        return asyncio.run(coro)  # type: ignore[arg-type]
    except HANDLED as exc:
        raise Fail(str(exc)) from None


def settings_from(ctx: click.Context) -> Settings:
    obj = ctx.find_object(dict)
    assert obj is not None
    settings: Settings = obj["settings"]
    return settings


def pass_settings(func: Callable[..., T]) -> Callable[..., T]:
    @click.pass_context
    @wraps(func)
    def wrapper(ctx: click.Context, *args: Any, **kwargs: Any) -> T:
        return func(settings_from(ctx), *args, **kwargs)

    return wrapper


def echo_json(data: object) -> None:
    click.echo(json.dumps(data, indent=2, default=str))


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
    from server.db import create_engine, current_revisions, upgrade

    async def go() -> str:
        engine = create_engine(settings.resolved_database_url)
        try:
            await upgrade(engine, revision)
            return ", ".join(await current_revisions(engine))
        finally:
            await engine.dispose()

    rev = run(go())
    click.echo(f"database {settings.redacted()['database_url']} is at migration {rev}")


def _register() -> None:
    # Sub-command modules import this one; register them after `main` exists.
    from server import (
        cli_bank,
        cli_calls,
        cli_preview,
        cli_serve,
        cli_storage,
        cli_tenant,
        cli_twiml,
    )

    cli_storage.register(cli_bank.bank)
    main.add_command(cli_bank.bank)
    main.add_command(cli_tenant.tenant)
    main.add_command(cli_preview.preview)
    main.add_command(cli_serve.serve)
    main.add_command(cli_twiml.twiml_cmd)
    for command in cli_calls.COMMANDS:
        main.add_command(command)


_register()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

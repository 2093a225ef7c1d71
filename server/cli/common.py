"""What every `voiceprompt` command shares: one-line failures, running a coroutine, the settings.

Errors from any package become one line on stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import asyncio
import json
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


# Options that several commands take, worded once.
appointment_at_option = click.option(
    "--at",
    "at_text",
    required=True,
    metavar="ISO",
    help="Appointment time; without an offset it is the tenant's local time.",
)
provider_option = click.option(
    "--provider", default=None, help="Provider name, e.g. 'Doctor Benedict'."
)

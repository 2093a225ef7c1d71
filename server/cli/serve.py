"""`voiceprompt serve`: the web service Twilio talks to, and the API."""

from __future__ import annotations

import dataclasses
import logging

import click
from aiohttp import web

from server.app import create_app
from server.cli.common import Fail, pass_settings
from server.settings import Settings


def _banner(settings: Settings, host: str, port: int) -> str:
    local = f"http://{host}:{port}"
    public = settings.public_url
    lines = [
        f"voiceprompt serving on {local} ({settings.env}; database "
        f"{settings.redacted()['database_url']})",
        "",
        "Try:",
        f"  curl {local}/healthz",
        f"  {local}/   (the web console: sign in with the admin token)",
        f'  curl -H "Authorization: Bearer $VOICEPROMPT_ADMIN_TOKEN" {local}/api/tenants',
        "  voiceprompt twiml --reminder 1            (the answer Twilio would get, no server)",
        "",
        "Twilio must reach this server: expose it with a tunnel (e.g. `ngrok http "
        f"{port}` or `cloudflared tunnel --url {local}`), then set",
        "  VOICEPROMPT_PUBLIC_URL=https://<your-tunnel-host>   (signatures are checked against it)",
        "  TWILIO_AUTH_TOKEN=<your auth token>",
        f"and calls use {public}/twilio/voice/<reminder id> as their answer URL and "
        f"{public}/twilio/status?reminder=<id> as their status callback "
        "(built from VOICEPROMPT_PUBLIC_URL; `voiceprompt call --reminder ID` dials one).",
    ]
    if not settings.twilio_auth_token and settings.validate_signatures:
        lines.append("note: TWILIO_AUTH_TOKEN is not set, so every Twilio webhook gets 403.")
    if not settings.admin_token:
        lines.append("note: VOICEPROMPT_ADMIN_TOKEN is not set: the admin API refuses everyone.")
    return "\n".join(lines)


def served_settings(settings: Settings, host: str, port: int) -> Settings:
    """Without VOICEPROMPT_PUBLIC_URL, the URLs this server hands out (local media, Gather
    actions) and checks signatures against name the address it really listens on, not the
    default port 8080: ``serve --port 8791`` would otherwise point the console's audio at
    nothing."""
    if settings.public_url_set:
        return settings
    # Listening on every address: name loopback. "::" is IPv6 only here (asyncio opens it
    # IPV6_V6ONLY), so its loopback is ::1, not 127.0.0.1.
    shown = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
    if ":" in shown:
        shown = f"[{shown}]"  # an IPv6 address
    return dataclasses.replace(settings, public_url=f"http://{shown}:{port}")


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8080, show_default=True, type=int)
@click.option("--no-worker", is_flag=True, help="Do not dial reminders in this process.")
@pass_settings
def serve(settings: Settings, host: str, port: int, no_worker: bool) -> None:
    """Run the web service Twilio talks to (and the API), with one dialing worker."""
    settings = served_settings(settings, host, port)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        app = create_app(settings, worker=not no_worker)
    except Exception as exc:  # noqa: BLE001 - one clear line at start
        raise Fail(str(exc)) from None
    click.echo(_banner(settings, host, port))
    web.run_app(app, host=host, port=port, print=None)

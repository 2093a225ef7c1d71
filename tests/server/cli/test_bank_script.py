"""`voiceprompt bank script` lists what the console's coverage page lists: both messages, the key
menu, "sorry" and the endings, for the same tenant, voice and providers."""

from __future__ import annotations

import asyncio
import csv
import io
import re
from html import unescape

from click.testing import CliRunner, Result

from server.calls.phrases import ENDINGS, SORRY, menu_text
from server.cli.main import main
from server.tenants import Tenant
from tests.support.console import signed_in
from tests.support.server import ADMIN_TOKEN, VOICE, Env

PROVIDER = "Doctor Benedict"


def texts(csv_text: str) -> list[str]:
    return [row["text"] for row in csv.DictReader(io.StringIO(csv_text))]


async def bank_script(env: Env, *args: str) -> str:
    """The command's output, run in a thread (it has an event loop of its own)."""
    runner = CliRunner(
        env={
            "VOICEPROMPT_DATA_DIR": str(env.settings.data_dir),
            "VOICEPROMPT_DATABASE_URL": env.settings.resolved_database_url,
            "VOICEPROMPT_PUBLIC_URL": env.settings.public_url,
        }
    )
    result: Result = await asyncio.to_thread(
        runner.invoke, main, ["bank", "script", "--tenant", "demo", *args]
    )
    assert result.exit_code == 0, f"{result.output}{result.stderr}"
    return result.output


async def test_bank_script_lists_the_coverage_pages_lines(env: Env) -> None:
    demo, _ = await env.runtime.tenants.create(
        Tenant(slug="demo", name="Smile Dental", voice=VOICE)
    )
    await env.reminder(tenant="demo", provider=PROVIDER)
    async with signed_in(env, ADMIN_TOKEN) as admin:
        status, page = await admin.get("/console/tenants/demo/coverage")
        assert status == 200, page
        page_txt = (
            await (await admin.get_bytes("/console/tenants/demo/script.txt")).read()
        ).decode()
        page_csv = (
            await (await admin.get_bytes("/console/tenants/demo/script.csv")).read()
        ).decode()
    # What is still missing: the script a voice actor reads, line for line the same.
    cli_text = await bank_script(env)
    assert cli_text == page_txt
    cli_csv = await bank_script(env, "--csv")
    assert cli_csv == page_csv
    # Everything the calls can need: the coverage page's rows, in the page's order.
    rows = re.findall(r'<td data-label="Say"><strong>([^<]+)</strong>', page)
    all_lines = texts(await bank_script(env, "--csv", "--all"))
    assert [unescape(r) for r in rows] == all_lines
    # The menu, the sorry and the endings are among them, not only the two messages.
    said = " ".join(all_lines).lower()
    for sentence in [menu_text(demo), SORRY, *ENDINGS.values()]:
        for part in re.split(r"[.,]\s*", sentence.lower()):
            assert part in said, part
    missing = texts(cli_csv)
    assert "To confirm your appointment" in missing and "We will contact you soon" in missing
    assert PROVIDER in all_lines  # the providers of the tenant's reminders, as on the page

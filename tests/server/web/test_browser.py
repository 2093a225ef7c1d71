"""The console in a real browser: Debian's headless Chromium driven by Playwright, against the app
on a real loopback TCP server (the aiohttp test server), on SQLite (the HTTP-level tests in
test_console.py cover PostgreSQL too).

Never `playwright install`: the tests use /usr/bin/chromium (apt-get install chromium). Without
it they skip, except in CI (the CI variable set), where a missing browser is a failure.
Every test saves screenshots under test-output/.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from server.dialing.apilog import ApiLog
from tests.support.server import (
    ADMIN_TOKEN,
    VOICE,
    Env,
)
from voicebank.check_store import CheckStore
from voicebank.checks import CheckResult

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SEVEN = Path("/usr/share/asterisk/sounds/en/digits/7.wav")
OUT = Path(__file__).resolve().parents[3] / "test-output"
WIDE: ViewportSize = {"width": 1280, "height": 900}
NARROW: ViewportSize = {"width": 390, "height": 844}


def _unavailable(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI is set, so the browser tests must run)")
    pytest.skip(reason)


try:
    from playwright.async_api import Browser, Page, ViewportSize, async_playwright, expect
except ImportError:  # pragma: no cover - the dev extra installs it
    async_playwright = None  # type: ignore[assignment]


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    """SQLite only: a browser test costs seconds, the database paths are covered elsewhere."""
    return f"sqlite+aiosqlite:///{tmp_path / 'voiceprompt.db'}"


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    if async_playwright is None:
        _unavailable("playwright is not installed (pip install -e '.[dev]')")
    if not CHROMIUM.is_file():
        _unavailable(f"{CHROMIUM} is missing (apt-get install chromium)")
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            await browser.close()


def url(env: Env, path: str) -> str:
    return str(env.client.make_url(path))


async def new_page(browser: Browser, env: Env, token: str, viewport: ViewportSize = WIDE) -> Page:
    """A fresh browser context, signed in through the form."""
    context = await browser.new_context(viewport=viewport, base_url=url(env, "/"))
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    # A 4xx page (a refused form) is logged as "Failed to load resource": expected, not a bug.
    page.on(
        "console",
        lambda msg: (
            errors.append(msg.text)
            if msg.type == "error" and not msg.text.startswith("Failed to load resource")
            else None
        ),
    )
    page.errors = errors  # type: ignore[attr-defined]
    await page.goto("/")
    await expect(page).to_have_url(url(env, "/console/login?next=%2F"))
    await page.fill("#token", token)
    await page.click("button[type=submit]")
    await expect(page).to_have_url(url(env, "/"))
    return page


async def shot(page: Page, name: str) -> None:
    OUT.mkdir(exist_ok=True)
    await page.screenshot(path=str(OUT / f"{name}.png"), full_page=True)


async def fits(page: Page) -> bool:
    """No sideways scrolling: the document is no wider than the window."""
    return bool(await page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"))


def no_script_errors(page: Page) -> None:
    assert page.errors == []  # type: ignore[attr-defined]


async def with_twilio_log_and_checks(env: Env, reminder_id: int) -> None:
    """Long URLs and texts where they would push a narrow page wide: a Twilio log entry and
    fetch checks (one failed)."""
    log = ApiLog(env.runtime.engine)
    entry = await log.start(
        method="POST",
        url="https://api.twilio.com/2010-04-01/Accounts/AC0123456789abcdef0123456789abcdef/Calls.json",
        request={"To": "+14155550134", "Url": f"{env.settings.public_url}/twilio/voice/1"},
        reminder_id=reminder_id,
        started_at=datetime.now(UTC),
    )
    await log.finish(entry, status=201, body='{"sid": "CA' + "0" * 32 + '"}', duration_ms=91)
    now = datetime.now(UTC)
    hello, your = env.clips["hello"], env.clips["your"]
    await CheckStore(env.runtime.catalogue.engine).record(
        [
            CheckResult(hello.id, env.url("hello"), True, 200, "", now),
            CheckResult(your.id, env.url("your"), False, 403, "403 Forbidden: not public", now),
        ]
    )


async def test_every_page_fits_at_1280_and_390_pixels(browser: Browser, env: Env) -> None:
    reminder = await env.reminder()
    await env.store.record(reminder.id, "keypress", {"digits": "1"}, status="confirmed")
    await with_twilio_log_and_checks(env, reminder.id)
    pages = {
        "home": "/",
        "bank": "/console/bank",
        "coverage": "/console/tenants/smile/coverage",
        "preview": f"/console/tenants/smile/preview?reminder={reminder.id}",
        "settings": "/console/tenants/smile/settings",
        "reminders": "/console/reminders",
        "reminder": f"/console/reminders/{reminder.id}",
    }
    for who, token in (("admin", ADMIN_TOKEN), ("tenant", env.api_key)):
        page = await new_page(browser, env, token)
        for size, viewport in (("1280", WIDE), ("390", NARROW)):
            await page.set_viewport_size(viewport)
            for name, path in pages.items():
                response = await page.goto(path)
                assert response is not None and response.status == 200, (name, size)
                if who == "tenant":  # the admin's pages differ only by the tenant switches
                    await shot(page, f"{name}-{size}")
                assert await fits(page), f"{name} scrolls sideways at {size} px ({who})"
        no_script_errors(page)
        await page.context.close()


async def test_upload_a_recording_and_a_corrupt_file(
    browser: Browser, env: Env, tmp_path: Path
) -> None:
    seven = tmp_path / "seven.wav"
    shutil.copyfile(SEVEN, seven)
    page = await new_page(browser, env, env.api_key)
    await page.goto("/console/bank")
    await page.set_input_files("#up-files", str(seven))
    await expect(page.locator("#chosen")).to_have_text("seven.wav")
    await page.click("#upload-form button[type=submit]")
    added = page.locator('#upload-results li[data-filename="seven.wav"]')
    await expect(added).to_have_attribute("data-status", "added")
    row = page.locator("#clips tr", has=page.locator("td.transcript", has_text="seven"))
    await expect(row).to_have_count(1)
    # The new clip plays in the page.
    duration = await row.locator("audio").evaluate(
        """a => new Promise((resolve, reject) => {
             a.addEventListener('loadedmetadata', () => resolve(a.duration));
             a.addEventListener('error', () => reject(new Error('audio error')));
             a.preload = 'metadata'; a.load();
           })"""
    )
    assert 0.2 < duration < 2.0
    await shot(page, "upload-added")

    # A corrupt file, dropped onto the upload area: refused, with the reason.
    await page.evaluate(
        """() => {
             const dt = new DataTransfer();
             dt.items.add(new File([new Uint8Array([82, 73, 70, 70, 0, 0, 0, 0, 1, 2, 3])],
                                   'broken.wav', {type: 'audio/wav'}));
             const zone = document.getElementById('dropzone');
             for (const type of ['dragenter', 'dragover', 'drop']) {
               zone.dispatchEvent(new DragEvent(type, {dataTransfer: dt, bubbles: true,
                                                       cancelable: true}));
             }
           }"""
    )
    await expect(page.locator("#chosen")).to_have_text("broken.wav")
    await page.click("#upload-form button[type=submit]")
    rejected = page.locator('#upload-results li[data-filename="broken.wav"]')
    await expect(rejected).to_have_attribute("data-status", "rejected")
    reason = await rejected.locator(".reason").inner_text()
    assert reason.startswith("broken.wav:") and len(reason) > len("broken.wav: ")
    await shot(page, "upload-rejected")
    mine = await env.runtime.catalogue.list_clips(VOICE, tenant="smile")
    assert [c.transcript for c in mine] == ["seven"]
    no_script_errors(page)


async def test_preview_a_reminder_and_hear_it(browser: Browser, env: Env) -> None:
    reminder = await env.reminder()
    page = await new_page(browser, env, env.api_key)
    await page.goto(f"/console/reminders/{reminder.id}")
    await page.click("text=Preview this reminder")
    audio = page.locator("#preview-audio")
    await expect(audio).to_be_visible()
    await expect(page.locator('#segments [data-kind="say"]').first).to_be_visible()
    await expect(page.locator("#twiml")).to_contain_text("<Gather")
    duration = await audio.evaluate(
        """a => new Promise((resolve, reject) => {
             if (a.readyState >= 1) return resolve(a.duration);
             a.addEventListener('loadedmetadata', () => resolve(a.duration));
             a.addEventListener('error', () => reject(new Error('audio error ' + a.error.code)));
           })"""
    )
    planned = int(await audio.get_attribute("data-duration-ms") or 0) / 1000
    # Text-to-speech segments are estimates in the plan, so allow a margin.
    assert planned > 1
    assert abs(duration - planned) <= max(1.5, 0.25 * planned), (duration, planned)
    await expect(page.locator("#audio-duration")).to_contain_text("Rendered:")
    await shot(page, "preview")
    no_script_errors(page)


async def test_change_settings_and_see_an_invalid_value_refused(browser: Browser, env: Env) -> None:
    page = await new_page(browser, env, env.api_key)
    await page.goto("/console/tenants/smile/settings")
    await page.select_option("#f-loops", "3")
    await page.check("#f-skip_to_beep")
    await page.uncheck("#f-digit_cancel-on")
    await page.click("form.settings button[type=submit]")
    await expect(page.locator("#saved")).to_be_visible()
    tenant = await env.runtime.tenants.get("smile")
    assert (tenant.loops, tenant.skip_to_beep, tenant.digit_cancel) == (3, True, None)
    await expect(page.locator("#f-loops")).to_have_value("3")
    await expect(page.locator("#f-digit_cancel-on")).not_to_be_checked()

    await page.fill("#f-template_voicemail", "Please press 1 to confirm.")
    await page.select_option("#f-amd_mode", "enable")
    await page.click("form.settings button[type=submit]")
    error = page.locator('[data-field="template_voicemail"] .error')
    await expect(error).to_contain_text("must not ask to press a key")
    await expect(page.locator("#f-template_voicemail")).to_have_attribute("aria-invalid", "true")
    await expect(page.locator("#f-template_voicemail")).to_have_value("Please press 1 to confirm.")
    await expect(page.locator("#form-error")).to_contain_text("Nothing was saved")
    await shot(page, "settings-invalid")
    assert await env.runtime.tenants.get("smile") == tenant  # amd_mode unchanged too
    no_script_errors(page)


async def test_a_keypress_shows_up_live(browser: Browser, env: Env) -> None:
    reminder = await env.reminder()
    page = await new_page(browser, env, env.api_key)
    await page.goto(f"/console/reminders/{reminder.id}")
    status = page.locator("#status")
    await expect(status).to_have_text("pending")
    await expect(page.locator("#live")).to_have_text("live")
    answer = await env.webhook(
        f"/twilio/gather/{reminder.id}?state=menu&tries=0&replays=0&repeats=0",
        {"CallSid": env.new_call_sid(), "Digits": "1"},
    )
    assert answer.status == 200
    started = time.monotonic()
    await expect(status).to_have_text("confirmed", timeout=1000)
    assert time.monotonic() - started < 1.0
    await expect(page.locator("#outcome")).to_have_text("confirmed")
    await expect(page.locator("#events tr", has_text="keypress")).to_have_count(1)
    await shot(page, "reminder-live")
    no_script_errors(page)

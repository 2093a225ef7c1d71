"""The web console over real loopback HTTP: sign-in, CSRF, tenant isolation, uploads, coverage,
preview, settings and the reminder stream (the browser tests in test_browser.py drive the same
pages through Chromium)."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from html import unescape
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest

from prompts.models import ClipIndex
from prompts.script import recording_script
from prompts.text import normalize
from server.calls.script import call_texts
from server.dialing.apilog import ApiLog
from server.errors import ConfigError
from server.keys import secret_key
from server.reminders import ReminderStore
from server.settings import Settings
from server.tenants import hash_api_key
from server.web import throttle
from server.web.console import reminders as console_reminders
from server.web.console.session import COOKIE, decode_cookie, encode_cookie
from tests.support.audio import take_from_sounds
from tests.support.console import (
    SECRET_PHRASE,
    Console,
    base_url,
    form_values,
    other_tenant,
    signed_in,
)
from tests.support.server import (
    ADMIN_TOKEN,
    PROVIDER,
    PUBLIC_URL,
    VOICE,
    Env,
    MakeEnv,
)
from voicebank.check_store import CheckStore
from voicebank.checks import CheckResult
from voicebank.schema import clips as clip_table

SEVEN = Path("/usr/share/asterisk/sounds/en/digits/7.wav")
# The second tenant's own reminder: a number and a provider no smile page may ever show.
OTHER_TO = "+14155550177"
OTHER_PROVIDER = "Doctor Quill"
PAGES = [
    "/",
    "/console/bank",
    "/console/tenants/smile/coverage",
    "/console/tenants/smile/preview",
    "/console/tenants/smile/settings",
    "/console/reminders",
]


def field_error(html: str, field: str) -> str | None:
    """The error shown next to a settings field, if any."""
    m = re.search(rf'<p class="error" id="f-{field}-error">([^<]*)</p>', html)
    return m.group(1) if m else None


# --- signing in ----------------------------------------------------------------------------------


async def test_pages_need_a_sign_in(env: Env) -> None:
    reminder = await env.reminder()
    async with aiohttp.ClientSession(base_url=base_url(env)) as http:
        for path in PAGES + [f"/console/reminders/{reminder.id}", "/console/bank?tenant=smile"]:
            async with http.get(path, allow_redirects=False) as resp:
                assert resp.status == 303, path
                # To the sign-in form, which leads back to this very page (query and all).
                where = urlsplit(resp.headers["Location"])
                assert where.path == "/console/login", path
                assert parse_qs(where.query) == {"next": [path]}, path
        data_paths = [
            f"/console/clips/{env.clips['hello'].id}.mp3",
            "/console/tenants/smile/preview.mp3",
            "/console/tenants/smile/script.txt",
            f"/console/reminders/{reminder.id}/events",
        ]
        for path in data_paths:
            async with http.get(path, allow_redirects=False) as resp:
                assert resp.status == 401, path
                body = await resp.read()
                assert body.startswith(b"Sign in first"), (path, body[:80])
                assert b"Doctor Grey" not in body, path
        async with http.post(
            "/console/tenants/smile/settings", data={"loops": "3"}, allow_redirects=False
        ) as resp:
            assert resp.status == 401
    assert (await env.runtime.tenants.get("smile")).loops == 2


async def test_sign_in_with_a_wrong_token_is_refused(env: Env) -> None:
    async with aiohttp.ClientSession(base_url=base_url(env)) as http:
        for token in ["", "nope", ADMIN_TOKEN + "x", env.api_key[:-1]]:
            async with http.post("/console/login", data={"token": token}) as resp:
                assert resp.status == 401, token
                assert "neither the admin token nor" in await resp.text()
            assert COOKIE not in {c.key for c in http.cookie_jar}


async def test_the_session_cookie_is_httponly_strict_and_holds_no_token(env: Env) -> None:
    async with (
        aiohttp.ClientSession(base_url=base_url(env)) as http,
        http.post(
            "/console/login",
            data={"token": env.api_key, "next": "/console/reminders"},
            allow_redirects=False,
        ) as resp,
    ):
        assert resp.status == 303
        assert resp.headers["Location"] == "/console/reminders"
        cookie = resp.cookies[COOKIE]
    assert cookie["httponly"] is True
    assert cookie["samesite"] == "Strict"
    payload = decode_cookie(env.app[secret_key], cookie.value)
    assert payload is not None and payload["t"] == "smile"
    # The value is base64: look for the key in what it decodes to, not in the encoded text.
    assert payload["kh"] == hash_api_key(env.api_key)
    assert set(payload) == {"t", "kh", "csrf", "exp"}
    assert env.api_key not in json.dumps(payload) and env.api_key not in cookie.value


async def test_next_never_leaves_the_site(env: Env) -> None:
    async with aiohttp.ClientSession(base_url=base_url(env)) as http:
        for target in ["https://evil.example/", "//evil.example/", "/\\evil.example"]:
            async with http.post(
                "/console/login",
                data={"token": ADMIN_TOKEN, "next": target},
                allow_redirects=False,
            ) as resp:
                assert resp.headers["Location"] == "/", target


async def test_a_forged_or_stale_cookie_is_a_signed_out_visitor(env: Env) -> None:
    secret = env.app[secret_key]
    # Each forgery differs from a genuine admin cookie in one way only, so the server must
    # notice that one thing (the genuine cookie itself is let in: the control).
    good = {"t": None, "kh": hash_api_key(ADMIN_TOKEN), "csrf": "x", "exp": int(time.time()) + 60}
    genuine = encode_cookie(secret, good)
    mac = genuine.partition(".")[2]
    tenant_body = encode_cookie(secret, {**good, "t": "smile"}).partition(".")[0]
    forged = {
        "another secret": encode_cookie(b"another secret", good),
        "not the admin token's hash": encode_cookie(secret, {**good, "kh": "0" * 64}),
        "expired": encode_cookie(secret, {**good, "exp": int(time.time()) - 1}),
        "payload swapped under a valid signature": f"{tenant_body}.{mac}",
        "garbage": "garbage",
        "three parts": "a.b.c",
    }

    async def home_status(value: str) -> tuple[int, str]:
        jar = aiohttp.CookieJar(unsafe=True)
        async with aiohttp.ClientSession(base_url=base_url(env), cookie_jar=jar) as http:
            http.cookie_jar.update_cookies({COOKIE: value})
            async with http.get("/", allow_redirects=False) as resp:
                return resp.status, await resp.text()

    status, page = await home_status(genuine)
    assert status == 200 and "All tenants" in page
    for what, value in forged.items():
        status, page = await home_status(value)
        assert status == 303, what
        assert "Smile Dental" not in page, what


async def test_rotating_a_key_ends_its_console_sessions(env: Env) -> None:
    async with signed_in(env, env.api_key) as tenant:
        assert (await tenant.get("/"))[0] == 200
        await env.runtime.tenants.rotate_key("smile")
        assert (await tenant.get("/"))[0] == 303


async def test_sign_out_forgets_the_session(env: Env) -> None:
    async with signed_in(env, ADMIN_TOKEN) as admin:
        status, _, resp = await admin.post("/console/logout", {})
        assert status == 303 and resp.headers["Location"] == "/console/login"
        assert (await admin.get("/"))[0] == 303


# --- too many failed sign-ins --------------------------------------------------------------------


class FakeClock:
    """The sign-in throttle's clock, moved on by hand instead of by sleeping."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(throttle, "clock", fake)
    return fake


async def sign_in_attempt(http: aiohttp.ClientSession, token: str) -> aiohttp.ClientResponse:
    async with http.post(
        "/console/login", data={"token": token, "next": "/"}, allow_redirects=False
    ) as resp:
        await resp.read()
        return resp


async def fail(http: aiohttp.ClientSession, times: int) -> None:
    for i in range(times):
        resp = await sign_in_attempt(http, f"guess-{i}")
        assert resp.status == 401, (i, await resp.text())


async def test_five_failed_sign_ins_lock_the_address_out_even_for_the_right_token(
    env: Env, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    assert (throttle.MAX_FAILURES, throttle.WINDOW_S, throttle.LOCKOUT_S) == (5, 300, 300)
    async with (
        signed_in(env, env.api_key) as smile,
        aiohttp.ClientSession(base_url=base_url(env)) as http,
    ):
        with caplog.at_level(logging.WARNING, logger="voiceprompt.console"):
            await fail(http, 4)
            assert not [r for r in caplog.records if "locked" in r.getMessage()]
            await fail(http, 1)  # the fifth: still "wrong token", and now locked
        (warning,) = [r for r in caplog.records if "locked" in r.getMessage()]
        assert warning.levelname == "WARNING" and "127.0.0.1" in warning.getMessage()
        # The right token is refused too, with when to come back, and no session.
        clock.now += 60
        resp = await sign_in_attempt(http, ADMIN_TOKEN)
        assert resp.status == 429
        assert resp.headers["Retry-After"] == "240"
        body = await resp.text()
        assert "Too many failed sign-ins. Try again in 4 minutes." in body
        assert COOKIE not in resp.cookies
        clock.now += 239.5
        resp = await sign_in_attempt(http, env.api_key)
        assert resp.status == 429 and resp.headers["Retry-After"] == "1"
        assert "Try again in 1 second." in await resp.text()
        # Someone already signed in carries on: only signing in is refused.
        assert (await smile.get("/console/bank"))[0] == 200
        # Once the lockout is over the right token works again.
        clock.now += 0.5
        resp = await sign_in_attempt(http, ADMIN_TOKEN)
        assert resp.status == 303 and resp.headers["Location"] == "/"
        assert COOKIE in resp.cookies


async def test_behind_a_tunnel_each_forwarded_client_has_its_own_count(
    env: Env, clock: FakeClock
) -> None:
    # The test client connects from loopback, as a tunnel agent (ngrok, cloudflared) does: by
    # default its X-Forwarded-For is believed, so one guesser does not lock everyone out.
    url = base_url(env)
    async with (
        aiohttp.ClientSession(base_url=url, headers={"X-Forwarded-For": "203.0.113.7"}) as guesser,
        aiohttp.ClientSession(base_url=url, headers={"X-Forwarded-For": "198.51.100.2"}) as owner,
    ):
        await fail(guesser, throttle.MAX_FAILURES)
        assert (await sign_in_attempt(guesser, ADMIN_TOKEN)).status == 429
        assert (await sign_in_attempt(owner, ADMIN_TOKEN)).status == 303


async def test_a_forwarded_address_from_an_untrusted_peer_is_not_believed(
    make_env: MakeEnv, clock: FakeClock
) -> None:
    env = await make_env(VOICEPROMPT_TRUSTED_PROXIES="none")
    async with aiohttp.ClientSession(base_url=base_url(env)) as http:
        for i in range(throttle.MAX_FAILURES):  # a new made-up address on every guess
            async with http.post(
                "/console/login",
                data={"token": f"guess-{i}", "next": "/"},
                headers={"X-Forwarded-For": f"192.0.2.{i}"},
            ) as resp:
                assert resp.status == 401
        async with http.post(
            "/console/login",
            data={"token": ADMIN_TOKEN, "next": "/"},
            headers={"X-Forwarded-For": "192.0.2.99"},
            allow_redirects=False,
        ) as resp:
            assert resp.status == 429


def test_the_client_behind_trusted_proxies_is_the_nearest_untrusted_hop() -> None:
    local = Settings.from_env({}).trusted_proxies
    lan = Settings.from_env({"VOICEPROMPT_TRUSTED_PROXIES": "127.0.0.1, 10.0.0.0/8"})
    assert throttle.client_from("203.0.113.5", ["198.51.100.1"], local) == "203.0.113.5"
    assert throttle.client_from("127.0.0.1", [], local) == "127.0.0.1"
    assert throttle.client_from("::1", ["198.51.100.1"], local) == "198.51.100.1"
    # The client writes the left end of the list: only the right end is the proxies' own.
    chain = ["1.2.3.4, 198.51.100.1", "10.1.2.3"]
    assert throttle.client_from("127.0.0.1", chain, lan.trusted_proxies) == "198.51.100.1"
    assert throttle.client_from("127.0.0.1", ["not-an-ip"], local) == "127.0.0.1"
    assert throttle.client_from(None, [], local) == "unknown"
    assert Settings.from_env({"VOICEPROMPT_TRUSTED_PROXIES": "none"}).trusted_proxies == ()
    with pytest.raises(ConfigError, match="VOICEPROMPT_TRUSTED_PROXIES item 'localhost'"):
        Settings.from_env({"VOICEPROMPT_TRUSTED_PROXIES": "127.0.0.1,localhost"})


async def test_failures_age_out_but_a_success_does_not_forgive_them(
    env: Env, clock: FakeClock
) -> None:
    async with aiohttp.ClientSession(base_url=base_url(env)) as http:
        # A tenant cannot guess on for ever by signing in with its own key in between.
        await fail(http, 4)
        assert (await sign_in_attempt(http, env.api_key)).status == 303
        resp = await sign_in_attempt(http, "another-guess")
        assert resp.status == 401  # the fifth failure: now locked
        assert (await sign_in_attempt(http, env.api_key)).status == 429
        clock.now += throttle.LOCKOUT_S
        # The window slides: a failure counts for five minutes, then no more.
        await fail(http, 1)
        clock.now += 200
        await fail(http, 3)
        clock.now += 101  # the first is older than the window now, the other three are not
        await fail(http, 1)
        resp = await sign_in_attempt(http, ADMIN_TOKEN)
        assert resp.status == 303, await resp.text()


async def test_the_api_locks_out_an_address_that_sends_wrong_tokens(
    env: Env, clock: FakeClock
) -> None:
    async with aiohttp.ClientSession(base_url=base_url(env)) as http:

        async def tenants(token: str) -> aiohttp.ClientResponse:
            headers = {"Authorization": f"Bearer {token}"}
            async with http.get("/api/tenants/smile", headers=headers) as resp:
                await resp.read()
                return resp

        for i in range(throttle.MAX_FAILURES - 1):
            assert (await tenants(f"guess-{i}")).status == 401
        assert (await tenants(env.api_key)).status == 200  # no forgiveness either
        assert (await tenants("guess-last")).status == 401
        locked = await tenants(ADMIN_TOKEN)
        assert locked.status == 429 and locked.headers["Retry-After"] == "300"
        # The console's sign-in shares the count: one limit per address for every door.
        assert (await sign_in_attempt(http, ADMIN_TOKEN)).status == 429
        clock.now += throttle.LOCKOUT_S
        assert (await tenants(ADMIN_TOKEN)).status == 200


def test_forwarded_addresses_with_ports_brackets_and_ipv6_are_normalised() -> None:
    local = Settings.from_env({}).trusted_proxies
    hop = lambda text: throttle.client_from("127.0.0.1", [text], local)  # noqa: E731
    assert hop("203.0.113.7:5123") == "203.0.113.7"
    assert hop("[2001:db8::1]:443") == "2001:db8::/64"
    # One IPv6 subscriber (a /64) is one count, however its address is written.
    assert hop("2001:DB8:0::1") == hop("2001:db8::ffff:1") == "2001:db8::/64"
    assert throttle.client_from("::ffff:198.51.100.4", [], local) == "198.51.100.4"
    assert hop("unknown") == "127.0.0.1"


async def test_a_burst_of_concurrent_guesses_gets_only_five_tokens_checked(
    env: Env, clock: FakeClock
) -> None:
    async with aiohttp.ClientSession(base_url=base_url(env)) as http:
        statuses = [
            r.status
            for r in await asyncio.gather(*(sign_in_attempt(http, f"g{i}") for i in range(12)))
        ]
        assert sorted(statuses) == [401] * 5 + [429] * 7


def test_the_sign_in_throttle_forgets_old_addresses_and_stays_bounded(
    clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(throttle, "MAX_ADDRESSES", 100)
    limiter = throttle.SignInThrottle()
    for _ in range(throttle.MAX_FAILURES):
        limiter.failed("203.0.113.9")
    # A flood of one-off addresses: memory stays bounded, the recent lockout stays.
    for i in range(50):
        limiter.failed(f"10.0.{i // 256}.{i % 256}")
    assert len(limiter) == 51 and limiter.locked_for("203.0.113.9") == throttle.LOCKOUT_S
    for i in range(5000):
        limiter.failed(f"10.1.{i // 256}.{i % 256}")
    assert len(limiter) == 100
    # A sign-in being checked is not forgotten while it runs.
    assert limiter.reserve("198.51.100.7") is None
    # Everything older than the window and lockouts is forgotten at the next failure.
    clock.now += max(throttle.WINDOW_S, throttle.LOCKOUT_S)
    limiter.failed("198.51.100.1")
    assert len(limiter) == 2 and limiter.locked_for("198.51.100.1") is None
    limiter.release("198.51.100.7")  # it ended well: nothing left to remember of it
    limiter.failed("198.51.100.2")
    assert len(limiter) == 2 and limiter.locked_for("198.51.100.7") is None
    clock.now += throttle.WINDOW_S
    limiter.failed("198.51.100.3")
    assert len(limiter) == 1


# --- CSRF ----------------------------------------------------------------------------------------


async def test_a_post_without_the_session_csrf_token_changes_nothing(env: Env) -> None:
    async with signed_in(env, ADMIN_TOKEN) as admin:
        settings = "/console/tenants/smile/settings"
        status, body, _ = await admin.post(settings, {"loops": "3"}, csrf=False)
        assert status == 403 and "form expired" in body
        status, _, _ = await admin.post(settings, {"loops": "3", "csrf": "wrong"}, csrf=False)
        assert status == 403
        status, body, _ = await admin.post(
            settings, {"loops": "3"}, headers={"Origin": "https://evil.example"}
        )
        assert status == 403 and "another site" in body
    assert (await env.runtime.tenants.get("smile")).loops == 2


async def test_forms_from_our_own_origin_or_public_url_are_accepted(env: Env) -> None:
    async with signed_in(env, env.api_key) as smile:
        for origin, loops in [(base_url(env), 3), (PUBLIC_URL, 2)]:
            form = await settings_form(smile, loops=str(loops))
            status, body, _ = await smile.post(SETTINGS, form, headers={"Origin": origin})
            assert status == 303, (origin, body[:300])
            assert (await env.runtime.tenants.get("smile")).loops == loops, origin


async def test_pages_carry_security_headers(env: Env) -> None:
    async with signed_in(env, ADMIN_TOKEN) as admin:
        resp = await admin.get_bytes("/console/bank")
        assert resp.status == 200
        assert "script-src 'self'" in resp.headers["Content-Security-Policy"]
        assert resp.headers["X-Frame-Options"] == "DENY"
        assert resp.headers["Cache-Control"] == "no-store"


# --- tenant isolation ----------------------------------------------------------------------------


async def test_a_tenant_key_cannot_open_another_tenants_pages_or_audio(env: Env) -> None:
    other = await other_tenant(env)
    mine = await env.reminder()
    # The other tenant's newest reminder has words of its own, so a leak shows on any page
    # (the fixture's reminder has the same number and provider as smile's).
    theirs = await env.reminder(tenant="other", to=OTHER_TO, provider=OTHER_PROVIDER)
    rid = theirs.id
    theirs_only = [
        "Other Clinic",
        SECRET_PHRASE,
        OTHER_PROVIDER,
        OTHER_TO,
        f"/console/clips/{other.clip.id}.mp3",
        f'/console/reminders/{rid}"',
        f'/console/reminders/{other.reminder.id}"',
    ]

    def leaked(body: str) -> list[str]:
        return [text for text in theirs_only if text in body]

    async with signed_in(env, env.api_key) as smile:
        forbidden = [
            "/console/bank?tenant=other",
            "/console/tenants/other/coverage",
            "/console/tenants/other/script.txt",
            "/console/tenants/other/script.csv",
            "/console/tenants/other/preview",
            "/console/tenants/other/preview.mp3",
            "/console/tenants/other/settings",
            "/console/coverage?tenant=other",
            "/console/reminders?tenant=other",
            f"/console/reminders/{rid}",
            f"/console/reminders/{rid}/events",
        ]
        for path in forbidden:
            status, body = await smile.get(path)
            assert status == 403, path
            assert leaked(body) == [], path
        missing = [
            f"/console/clips/{other.clip.id}.mp3",
            f"/console/tenants/smile/preview?reminder={rid}",
            f"/console/tenants/smile/preview.mp3?reminder={rid}",
        ]
        for path in missing:
            status, body = await smile.get(path)
            assert status == 404, path
            assert leaked(body) == [], path
        status, _, _ = await smile.post("/console/tenants/other/settings", {"loops": "3"})
        assert status == 403
        form = aiohttp.FormData()
        form.add_field("tenant", "other")
        form.add_field("files", SEVEN.read_bytes(), filename="seven.wav")
        status, _, _ = await smile.post("/console/bank/upload", form)
        assert status == 403
        # Its own and the shared things are there; nothing of the other tenant's is.
        status, bank = await smile.get("/console/bank")
        assert status == 200 and leaked(bank) == []
        assert f'src="/console/clips/{env.clips["hello"].id}.mp3"' in bank
        mine_link = f'href="/console/reminders/{mine.id}"'
        for path in ["/", "/console/reminders"]:
            status, page = await smile.get(path)
            assert status == 200 and mine_link in page, path
            assert leaked(page) == [], path
        # Coverage and preview pick sample providers from recent reminders: only its own.
        for path in ["/console/tenants/smile/coverage", "/console/tenants/smile/preview"]:
            status, page = await smile.get(path)
            assert status == 200 and PROVIDER in page, path
            assert leaked(page) == [], path
        shared = await smile.get_bytes(f"/console/clips/{env.clips['hello'].id}.mp3")
        assert shared.status == 200 and shared.content_type == "audio/mpeg"
    assert (await env.runtime.tenants.get("other")).loops == 2
    assert [c.transcript for c in await env.runtime.catalogue.list_clips(tenant="other")] == [
        SECRET_PHRASE
    ]


def heading(html: str) -> str:
    """The page's <h1>, tags and all."""
    m = re.search(r"<h1>(.*?)</h1>", html, re.S)
    assert m, html[:400]
    return m.group(1)


async def test_the_admin_sees_every_tenant(env: Env) -> None:
    other = await other_tenant(env)
    async with signed_in(env, ADMIN_TOKEN) as admin:
        status, home = await admin.get("/")
        assert status == 200 and "Other Clinic" in home and "Smile Dental" in home
        assert f'href="/console/reminders/{other.reminder.id}"' in home
        # Each page is about the other tenant (its name in the heading), not the first one.
        for path in [
            "/console/tenants/other/coverage",
            "/console/tenants/other/preview",
            "/console/tenants/other/settings",
            f"/console/reminders/{other.reminder.id}",
        ]:
            status, body = await admin.get(path)
            assert status == 200, path
            assert "Other Clinic" in heading(body), path
        status, bank = await admin.get("/console/bank?tenant=other")
        assert status == 200 and SECRET_PHRASE in bank
        assert f'src="/console/clips/{other.clip.id}.mp3"' in bank
        status, listing = await admin.get("/console/reminders?tenant=other")
        assert status == 200 and f'href="/console/reminders/{other.reminder.id}"' in listing
        resp = await admin.get_bytes(f"/console/clips/{other.clip.id}.mp3")
        assert resp.status == 200
        assert await resp.read() == env.runtime.storage.get(other.clip.storage_key)
        status, _ = await admin.get("/console/tenants/nobody/settings")
        assert status == 404


async def test_every_page_renders_for_both_kinds_of_user(env: Env) -> None:
    reminder = await env.reminder()
    link = f'href="/console/reminders/{reminder.id}"'
    hello = f'src="/console/clips/{env.clips["hello"].id}.mp3"'
    # page -> (its heading starts with, what it shows of smile's things)
    shows = {
        "/console/bank": ("Voice bank", hello),
        "/console/tenants/smile/coverage": ("Coverage", 'data-status="recorded"'),
        "/console/tenants/smile/preview": ("Preview", 'id="twiml"'),
        "/console/tenants/smile/settings": ("Settings", 'name="loops"'),
        "/console/reminders": ("Reminders", link),
        f"/console/reminders/{reminder.id}": (f"Reminder #{reminder.id}", PROVIDER),
    }
    assert set(shows) | {"/"} == set(PAGES) | {f"/console/reminders/{reminder.id}"}
    for token, home in ((ADMIN_TOKEN, "All tenants"), (env.api_key, "Smile Dental")):
        async with signed_in(env, token) as user:
            for path, (title, sign) in {"/": (home, link), **shows}.items():
                status, body = await user.get(path)
                assert status == 200, (path, body[:400])
                assert heading(body).startswith(title), (path, heading(body))
                assert sign in body, (path, sign)
            for name in ["coverage", "preview", "settings"]:
                path = f"/console/{name}"
                async with user.http.get(path, allow_redirects=False) as resp:
                    assert resp.status == 303, path
                    assert resp.headers["Location"] == f"/console/tenants/smile/{name}", path


# --- voice bank ----------------------------------------------------------------------------------


async def test_uploading_several_files_reports_each_and_lists_the_clips(
    env: Env, tmp_path: Path
) -> None:
    async with signed_in(env, env.api_key) as smile:
        form = aiohttp.FormData()
        form.add_field("files", SEVEN.read_bytes(), filename="seven.wav")
        form.add_field("files", b"RIFF\x00\x00not audio at all", filename="broken.wav")
        form.add_field("files", SEVEN.read_bytes(), filename="lucky-number.final.wav")
        status, body, _ = await smile.post("/console/bank/upload", form)
        assert status == 200, body
        results = re.findall(r'data-status="(\w+)" data-filename="([^"]+)"', body)
        assert results == [
            ("added", "seven.wav"),
            ("rejected", "broken.wav"),
            ("added", "lucky-number.final.wav"),
        ]
        reason = re.search(r'data-filename="broken.wav">.*?class="reason">([^<]+)<', body, re.S)
        assert reason and "broken.wav" in reason.group(1)
        # A tenant's uploads are its own clips, in its voice.
        mine = await env.runtime.catalogue.list_clips(VOICE, tenant="smile")
        assert {(c.transcript, c.variant.value) for c in mine} == {
            ("seven", "any"),
            ("lucky number", "final"),
        }
        status, bank = await smile.get("/console/bank")
        assert "seven" in bank and "lucky number" in bank
        clip = next(c for c in mine if c.transcript == "seven")
        assert f'src="/console/clips/{clip.id}.mp3"' in bank
        # The same file again changes nothing.
        form = aiohttp.FormData()
        form.add_field("files", SEVEN.read_bytes(), filename="seven.wav")
        status, body, _ = await smile.post("/console/bank/upload", form)
        assert 'data-status="unchanged"' in body


async def test_the_admin_chooses_voice_tenant_and_take(env: Env) -> None:
    async with signed_in(env, ADMIN_TOKEN) as admin:
        form = aiohttp.FormData()
        form.add_field("voice", "narrator")
        form.add_field("tenant", "shared")
        form.add_field("variant", "continuing")
        form.add_field("files", SEVEN.read_bytes(), filename="seven.final.wav")
        status, body, _ = await admin.post("/console/bank/upload", form)
        assert status == 200, body
        (clip,) = await env.runtime.catalogue.list_clips("narrator")
        assert (clip.tenant, clip.transcript, clip.variant.value) == ("", "seven", "continuing")
        form = aiohttp.FormData()
        form.add_field("voice", "Not A Voice!")
        form.add_field("files", SEVEN.read_bytes(), filename="seven.wav")
        status, body, _ = await admin.post("/console/bank/upload", form)
        assert status == 422 and "must be lower-case" in body
        # A valid voice but no file: the page asks for one (and adds nothing).
        form = aiohttp.FormData()
        form.add_field("voice", "narrator")
        status, body, _ = await admin.post("/console/bank/upload", form)
        assert status == 422 and "Choose or drop at least one audio file." in body
        assert len(await env.runtime.catalogue.list_clips("narrator")) == 1


async def test_a_long_take_is_split_by_its_script_or_refused_with_the_reason(env: Env) -> None:
    take = take_from_sounds(["digits/1", "digits/2", "digits/3"], 700)
    async with signed_in(env, env.api_key) as smile:
        form = aiohttp.FormData()
        form.add_field("take", take, filename="count.wav")
        form.add_field("script", "one\ntwo\n")
        status, body, _ = await smile.post("/console/bank/take", form)
        assert status == 422
        result = re.search(r'<div id="take-result">(.*?)</div>', body, re.S)
        assert result, body
        # The reason, so the voice actor knows what to fix.
        assert re.search(
            r'<p class="error">count\.wav: found 3 phrases but the script has 2 lines',
            result.group(1),
        ), result.group(1)
        assert await env.runtime.catalogue.list_clips(tenant="smile") == []
        form = aiohttp.FormData()
        form.add_field("take", take, filename="count.wav")
        form.add_field("script", "one\ntwo\nthree\n")
        status, body, _ = await smile.post("/console/bank/take", form)
        assert status == 200, body
        assert "3 clips added" in body
    mine = await env.runtime.catalogue.list_clips(VOICE, tenant="smile")
    assert sorted(c.transcript for c in mine) == ["one", "three", "two"]


async def test_the_bank_shows_each_clips_last_fetch_check(env: Env) -> None:
    now = datetime.now(UTC)
    hello, your = env.clips["hello"], env.clips["your"]
    await CheckStore(env.runtime.catalogue.engine).record(
        [
            CheckResult(hello.id, env.url("hello"), True, 200, "", now),
            CheckResult(your.id, env.url("your"), False, 403, "not publicly readable", now),
        ]
    )
    async with signed_in(env, env.api_key) as smile:
        status, bank = await smile.get("/console/bank")
    assert status == 200

    def check_cell(clip_id: int) -> str:
        row = bank[bank.index(f'data-clip="{clip_id}"') :]
        row = row[: row.index("</tr>")]
        m = re.search(r'data-label="Last check">(.*?)</td>', row, re.S)
        assert m
        return m.group(1)

    assert "ok ·" in check_cell(hello.id)
    assert "failed ·" in check_cell(your.id) and "not publicly readable" in check_cell(your.id)
    assert check_cell(env.clips["with"].id) == "—"


async def add_many_clips(env: Env, voice: str, count: int, *, tenant: str = "") -> None:
    """``count`` current clips ("<tenant or shared> 0000", ...) in one INSERT: copies of one real
    clip's row under other transcripts, so a test gets thousands without ingesting any audio."""
    rt = env.runtime
    await rt.catalogue.ensure_voice(voice)
    model = env.clips["hello"]
    now = datetime.now(UTC)
    rows = []
    for i in range(count):
        transcript = f"{tenant or 'shared'} {i:04d}"
        rows.append(
            {
                "voice_id": voice,
                "tenant": tenant,
                "transcript": transcript,
                "norm": normalize(transcript),
                "variant": "any",
                "duration_ms": model.duration_ms,
                "lufs": model.lufs,
                "peak_dbfs": model.peak_dbfs,
                "size": model.size,
                "sha256": model.sha256,
                "storage_key": model.storage_key,
                "master_key": model.master_key,
                "original_key": model.original_key,
                "original_name": f"{transcript}.wav",
                "source": "upload",
                "created_at": now,
            }
        )
    async with rt.engine.begin() as conn:
        await conn.execute(clip_table.insert(), rows)


@dataclass
class BankPage:
    """What the voice bank page shows of its clips and how to get to the other pages."""

    transcripts: list[str]
    groups: list[str]
    showing: str
    previous: str | None
    next: str | None
    bottom: bool  # the page links are repeated under the clips


def bank_page(html: str) -> BankPage:
    clips = html[html.index('<section id="clips">') :]
    top = re.search(r'<nav class="pager" id="pager-top".*?</nav>', clips, re.S)
    assert top, clips[:600]

    def link(rel: str) -> str | None:
        m = re.search(rf'rel="{rel}" href="([^"]+)"', top.group(0))
        return unescape(m.group(1)) if m else None

    showing = re.search(r'<span class="muted showing">([^<]*)</span>', top.group(0))
    assert showing
    return BankPage(
        transcripts=re.findall(r'class="transcript">([^<]*)<', clips),
        groups=re.findall(r"<h3>([^<]*)</h3>", clips),
        showing=showing.group(1),
        previous=link("prev"),
        next=link("next"),
        bottom='id="pager-bottom"' in clips,
    )


async def test_the_bank_shows_a_hundred_clips_a_page_with_links_to_the_others(env: Env) -> None:
    await add_many_clips(env, "many", 2345)
    names = [f"shared {i:04d}" for i in range(2345)]
    async with signed_in(env, ADMIN_TOKEN) as admin:
        status, html = await admin.get("/console/bank?voice=many")
        assert status == 200
        assert 'Clips of voice many <span class="muted">(2,345)</span>' in html
        first = bank_page(html)
        assert first.transcripts == names[:100]
        assert first.showing == "Showing 1–100 of 2,345 · page 1 of 24"
        assert first.previous is None and first.bottom
        assert first.next == "/console/bank?voice=many&page=2"
        status, html = await admin.get(first.next)
        second = bank_page(html)
        assert second.transcripts == names[100:200]
        assert second.showing == "Showing 101–200 of 2,345 · page 2 of 24"
        assert second.previous == "/console/bank?voice=many&page=1"
        assert second.next == "/console/bank?voice=many&page=3"
        status, html = await admin.get("/console/bank?voice=many&page=24")
        last = bank_page(html)
        assert last.transcripts == names[2300:]
        assert last.showing == "Showing 2,301–2,345 of 2,345 · page 24 of 24"
        assert last.previous == "/console/bank?voice=many&page=23" and last.next is None
        # A page past the end shows the last one; below 1 or not a number, the first.
        huge = "9" * 20  # past what a database integer holds
        for asked, shown in [("25", last), (huge, last), ("0", first), ("-2", first)]:
            status, html = await admin.get(f"/console/bank?voice=many&page={asked}")
            assert status == 200 and bank_page(html) == shown, asked
        status, html = await admin.get("/console/bank?voice=many&page=two")
        assert status == 200 and bank_page(html) == first
        # A voice with few clips: one page, no links.
        status, html = await admin.get(f"/console/bank?voice={VOICE}")
        only = bank_page(html)
        assert only.showing == "Showing 1–14 of 14" and len(only.transcripts) == 14
        assert (only.previous, only.next, only.bottom) == (None, None, False)


async def test_bank_page_links_keep_the_voice_and_tenant_filters(env: Env) -> None:
    await add_many_clips(env, "many", 150)
    await add_many_clips(env, "many", 120, tenant="smile")
    shared = [f"shared {i:04d}" for i in range(150)]
    smiles = [f"smile {i:04d}" for i in range(120)]
    async with signed_in(env, ADMIN_TOKEN) as admin:
        status, html = await admin.get("/console/bank?voice=many&tenant=smile")
        page = bank_page(html)
        assert page.next == "/console/bank?voice=many&tenant=smile&page=2"
        status, html = await admin.get(page.next)
        page = bank_page(html)
        assert (page.groups, page.transcripts) == (["Only smile"], smiles[100:])
        assert page.showing == "Showing 101–120 of 120 · page 2 of 2"
        assert page.previous == "/console/bank?voice=many&tenant=smile&page=1"
        status, html = await admin.get("/console/bank?voice=many&tenant=shared&page=2")
        page = bank_page(html)
        assert (page.groups, page.transcripts) == (["Shared by every tenant"], shared[100:])
        assert page.previous == "/console/bank?voice=many&tenant=shared&page=1"
        # Everyone's: the shared clips first, then each tenant's, a page cutting across both.
        status, html = await admin.get("/console/bank?voice=many&page=2")
        page = bank_page(html)
        assert page.groups == ["Shared by every tenant", "Only smile"]
        assert page.transcripts == shared[100:] + smiles[:50]
        assert page.showing == "Showing 101–200 of 270 · page 2 of 3"
        assert page.next == "/console/bank?voice=many&page=3"


async def test_a_tenant_pages_through_shared_clips_and_its_own_only(env: Env) -> None:
    await other_tenant(env)
    await add_many_clips(env, VOICE, 190, tenant="smile")
    await add_many_clips(env, VOICE, 300, tenant="other")
    shared = sorted(env.clips.values(), key=lambda c: (normalize(c.transcript), c.id))
    smiles = [f"smile {i:04d}" for i in range(190)]
    async with signed_in(env, env.api_key) as smile:
        status, html = await smile.get("/console/bank")
        page = bank_page(html)
        # 14 shared and 190 of its own; the other tenant's 301 are neither shown nor counted.
        assert page.showing == "Showing 1–100 of 204 · page 1 of 3"
        assert page.groups == ["Shared by every tenant", "Only smile"]
        assert page.transcripts == [c.transcript for c in shared] + smiles[:86]
        assert page.next == "/console/bank?page=2"
        status, html = await smile.get(page.next)
        page = bank_page(html)
        assert (page.groups, page.transcripts) == (["Only smile"], smiles[86:186])
        status, html = await smile.get("/console/bank?page=3")
        page = bank_page(html)
        assert page.transcripts == smiles[186:] and page.next is None
        assert SECRET_PHRASE not in html and "other 0000" not in html


async def test_clip_audio_supports_ranges(env: Env) -> None:
    async with signed_in(env, env.api_key) as smile:
        path = f"/console/clips/{env.clips['hello'].id}.mp3"
        whole = await smile.get_bytes(path)
        data = await whole.read()
        part = await smile.get_bytes(path, headers={"Range": "bytes=10-19"})
        assert part.status == 206
        assert await part.read() == data[10:20]
        assert part.headers["Content-Range"] == f"bytes 10-19/{len(data)}"


# --- coverage ------------------------------------------------------------------------------------


async def test_coverage_marks_each_phrase_and_offers_the_script(env: Env) -> None:
    await env.reminder()  # its provider is a phrase to record
    async with signed_in(env, env.api_key) as smile:
        status, body = await smile.get("/console/tenants/smile/coverage")
        assert status == 200
        rows = re.findall(
            r'data-status="([\w-]+)">\s*<td data-label="Say"><strong>([^<]+)</strong>', body
        )
        by_text = {text: status for status, text in rows}
        assert by_text["Hello"] == "recorded"
        assert by_text["three"] == "recorded"
        assert by_text["four"] == "tts"
        assert by_text["Doctor Grey"] == "tts"
        resp = await smile.get_bytes("/console/tenants/smile/script.csv")
        assert resp.status == 200 and resp.content_type == "text/csv"
        assert "attachment" in resp.headers["Content-Disposition"]
        csv_text = (await resp.read()).decode()
        tenant = env.tenant
        samples = {"tenant": tenant.name, "provider": ["Doctor Grey"]}
        index = await env.runtime.catalogue.clip_index(tenant.voice, tenant.slug)
        expected = recording_script(call_texts(tenant), index, sample_values=samples)
        assert csv_text == expected.to_csv()
        assert "Doctor Grey" in csv_text and "\nP" in csv_text
        everything = recording_script(call_texts(tenant), ClipIndex(), sample_values=samples)
        assert len(rows) == len(everything)
        text = await smile.get_bytes("/console/tenants/smile/script.txt")
        assert (await text.read()).decode() == expected.to_text()


# --- preview -------------------------------------------------------------------------------------


async def test_preview_marks_segments_and_shows_the_twiml(env: Env) -> None:
    reminder = await env.reminder()
    async with signed_in(env, env.api_key) as smile:
        status, body = await smile.get(f"/console/tenants/smile/preview?reminder={reminder.id}")
        assert status == 200, body
        kinds = re.findall(r'data-kind="(\w+)"', body)
        assert {"clip", "say", "pause"} <= set(kinds)
        assert re.search(r'data-kind="clip"[^>]*>Hello\.?<', body)
        assert re.search(r'data-kind="say"[^>]*>appointment<', body)
        twiml = re.search(r'<pre class="code" id="twiml">(.*?)</pre>', body, re.S)
        assert twiml is not None
        assert "&lt;Gather" in twiml.group(1) and "&lt;Play&gt;" in twiml.group(1)
        assert f"/twilio/gather/{reminder.id}?" in twiml.group(1)
        audio = re.search(r'data-duration-ms="(\d+)"\s+src="([^"]+)"', body)
        assert audio is not None
        resp = await smile.get_bytes(audio.group(2).replace("&amp;", "&"))
        assert resp.status == 200 and resp.content_type == "audio/mpeg"
        assert len(await resp.read()) > 1000
        status, body = await smile.get(
            "/console/tenants/smile/preview?date=2031-03-04&time=15:00&provider=Doctor+Grey"
            "&variant=voicemail"
        )
        assert status == 200
        assert "&lt;Gather" not in body and "&lt;Hangup" in body
        assert "AnsweredBy=machine_end_beep" in body


async def test_preview_form_errors_are_shown_by_their_field(env: Env) -> None:
    async with signed_in(env, env.api_key) as smile:
        status, body = await smile.get("/console/tenants/smile/preview?date=soon&time=25:99")
        assert status == 422
        assert 'id="date-error"' in body and 'id="time-error"' in body
        status, body = await smile.get("/console/tenants/smile/preview?provider=")
        assert status == 422 and 'id="provider-error"' in body
        status, _ = await smile.get("/console/tenants/smile/preview.mp3?date=soon")
        assert status == 422


# --- settings ------------------------------------------------------------------------------------


SETTINGS = "/console/tenants/smile/settings"


async def settings_form(user: Console, **changes: str | None) -> dict[str, str]:
    """The settings form as the page fills it, with ``changes`` (None: leave a box unticked)."""
    status, page = await user.get(SETTINGS)
    assert status == 200
    form = form_values(page, SETTINGS)
    for key, value in changes.items():
        if value is None:
            form.pop(key, None)
        else:
            form[key] = value
    return form


async def test_settings_are_saved_when_valid(env: Env) -> None:
    async with signed_in(env, env.api_key) as smile:
        status, body = await smile.get("/console/tenants/smile/settings")
        assert status == 200
        for name in ("amd_mode", "skip_to_beep", "loops", "digit_cancel", "template_human"):
            assert f'name="{name}"' in body, name
        form = await settings_form(
            smile,
            loops="3",
            amd_mode="enable",
            skip_to_beep="on",
            digit_cancel__on=None,
            calling_hours_start="09:30",
        )
        assert form["template_human"] == env.tenant.template_human
        status, _, resp = await smile.post("/console/tenants/smile/settings", form)
        assert status == 303, _
        assert resp.headers["Location"].endswith("?saved=1")
    tenant = await env.runtime.tenants.get("smile")
    assert (
        tenant.loops,
        tenant.amd_mode,
        tenant.skip_to_beep,
        tenant.digit_cancel,
        tenant.calling_hours_start,
    ) == (3, "enable", True, None, "09:30")
    assert (
        replace(
            tenant,
            loops=2,
            amd_mode="detect-message-end",
            skip_to_beep=False,
            digit_cancel="5",
            calling_hours_start="08:00",
        )
        == env.tenant
    )


@pytest.mark.parametrize(
    ("changes", "fields"),
    [
        ({"loops": "7"}, ["loops"]),
        ({"loops": "many"}, ["loops"]),
        ({"amd_mode": "sometimes"}, ["amd_mode"]),
        ({"digit_cancel": "1"}, ["digit_cancel"]),  # the confirm key already
        ({"template_voicemail": "Press 1 to confirm."}, ["template_voicemail"]),
        ({"timezone": "Mars/Olympus", "beep_digit": "x"}, ["timezone", "beep_digit"]),
        ({"calling_hours_start": "21:00"}, ["calling_hours_end"]),  # after the end
    ],
)
async def test_invalid_settings_are_shown_by_their_field_and_not_saved(
    env: Env, changes: dict[str, str], fields: list[str]
) -> None:
    before = await env.runtime.tenants.get("smile")
    async with signed_in(env, env.api_key) as smile:
        status, body, _ = await smile.post(SETTINGS, await settings_form(smile, **changes))
        assert status == 422
        # Exactly the wrong fields are marked, each with its message.
        marked = re.findall(r'<div class="field invalid" data-field="(\w+)">', body)
        assert sorted(marked) == sorted(fields)
        for name in fields:
            assert field_error(body, name), (name, body)
        assert f"Nothing was saved: {len(fields)} field" in body
        # What was typed stays in the form, to be corrected: the form sends it back as typed.
        resent = form_values(body, SETTINGS)
        for name, value in changes.items():
            assert resent[name] == value, (name, resent.get(name))
    assert await env.runtime.tenants.get("smile") == before


# --- reminders -----------------------------------------------------------------------------------


class EventReader:
    """Server-sent events off a response, as {"event", "data"} dicts."""

    def __init__(self, resp: aiohttp.ClientResponse) -> None:
        self.resp = resp
        self.buffer = ""

    async def until(self, text: str, timeout: float) -> list[dict[str, Any]]:
        """Events up to and including the first whose data contains ``text``."""
        seen: list[dict[str, Any]] = []
        async with asyncio.timeout(timeout):
            while True:
                while "\n\n" in self.buffer:
                    block, self.buffer = self.buffer.split("\n\n", 1)
                    fields = dict(
                        line.split(": ", 1) for line in block.splitlines() if ": " in line
                    )
                    if "event" in fields:
                        data = json.loads(fields["data"])
                        seen.append({"event": fields["event"], "data": data})
                        if text in fields["data"]:
                            return seen
                chunk = await self.resp.content.readany()
                assert chunk, "the stream ended"
                self.buffer += chunk.decode()


async def test_the_reminder_stream_follows_a_keypress_within_a_second(env: Env) -> None:
    reminder = await env.reminder()
    async with signed_in(env, env.api_key) as smile:
        status, page = await smile.get(f"/console/reminders/{reminder.id}")
        assert status == 200 and 'id="status" data-field="status">pending</span>' in page
        assert "No Twilio API requests for this reminder" in page
        stream = re.search(r'data-stream="([^"]+)"', page)
        assert stream
        async with smile.http.get(stream.group(1)) as resp:
            assert resp.status == 200
            assert resp.headers["Content-Type"] == "text/event-stream"
            events = EventReader(resp)
            first = await events.until('"pending"', 2)
            assert first[0]["event"] == "reminder"
            sid = env.new_call_sid()
            answer = await env.webhook(
                f"/twilio/gather/{reminder.id}?state=menu&tries=0&replays=0&repeats=0",
                {"CallSid": sid, "Digits": "1"},
            )
            assert answer.status == 200
            started = time.monotonic()
            seen = await events.until('"confirmed"', 1.5)
            assert time.monotonic() - started < 1.0
            seen += await events.until('"keypress"', 1.0)
            states = [e["data"] for e in seen if e["event"] == "reminder"]
            assert states[-1]["status"] == "confirmed" and states[-1]["call_sid"] == sid
            kinds = [e["data"]["kind"] for e in seen if e["event"] == "event"]
            assert "keypress" in kinds


async def test_the_stream_wakes_on_this_process_writes_and_polls_for_the_others(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    reminder = await env.reminder()
    elsewhere = ReminderStore(env.runtime.engine)  # another server process's writes
    monkeypatch.setattr(console_reminders, "POLL_S", 30.0)
    path = f"/console/reminders/{reminder.id}/events"
    async with signed_in(env, env.api_key) as smile, smile.http.get(path) as resp:
        events = EventReader(resp)
        await events.until('"pending"', 2)
        assert len(env.store.changes) == 1  # the open page watches its reminder
        await elsewhere.record(reminder.id, "status", {}, status="busy", outcome="busy")
        with pytest.raises(TimeoutError):  # nothing wakes the page: it waits for its poll
            await events.until('"busy"', 0.5)
        await env.store.record(reminder.id, "note", {"n": 1})  # this process: at once
        seen = await events.until('"note"', 1.0)
        states = [e["data"]["status"] for e in seen if e["event"] == "reminder"]
        kinds = [e["data"]["kind"] for e in seen if e["event"] == "event"]
        assert states == ["busy"] and kinds == ["status", "note"]
        # What webhooks write goes through the outbox (a batch): it wakes the page too.
        env.outbox.add(reminder.id, "keypress", {"digits": "1"}, status="confirmed")
        seen = await events.until('"keypress"', 1.0)
        assert [e["data"]["status"] for e in seen if e["event"] == "reminder"] == ["confirmed"]
    # The page has gone: nothing is left watching.
    async with asyncio.timeout(2):
        while len(env.store.changes):
            await asyncio.sleep(0.02)


async def test_the_stream_polls_for_writes_of_other_processes(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    reminder = await env.reminder()
    elsewhere = ReminderStore(env.runtime.engine)
    monkeypatch.setattr(console_reminders, "POLL_S", 0.1)
    path = f"/console/reminders/{reminder.id}/events"
    async with signed_in(env, env.api_key) as smile, smile.http.get(path) as resp:
        events = EventReader(resp)
        await events.until('"pending"', 2)
        await elsewhere.record(reminder.id, "status", {}, status="busy", outcome="busy")
        seen = await events.until('"busy"', 1.0)
        assert seen[-1]["event"] == "reminder"


async def test_the_stream_ends_when_the_key_is_rotated(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(console_reminders, "RECHECK_S", 0.0)
    reminder = await env.reminder()
    async with signed_in(env, env.api_key) as smile:
        path = f"/console/reminders/{reminder.id}/events"
        async with smile.http.get(path) as resp:
            events = EventReader(resp)
            await events.until('"pending"', 2)
            # The session is checked again on every poll; while it is valid the stream goes on.
            await env.store.record(reminder.id, "status", {}, status="busy", outcome="busy")
            seen = await events.until('"busy"', 2)
            assert seen[-1]["event"] == "reminder" and seen[-1]["data"]["status"] == "busy"
            await env.runtime.tenants.rotate_key("smile")
            async with asyncio.timeout(2):
                while await resp.content.readany():
                    pass


async def test_the_reminder_page_shows_its_twilio_log(env: Env) -> None:
    reminder = await env.reminder()
    log = ApiLog(env.runtime.engine)
    entry = await log.start(
        method="POST",
        url="https://api.twilio.com/2010-04-01/Accounts/AC1/Calls.json",
        request={"To": reminder.to, "MachineDetection": "DetectMessageEnd"},
        reminder_id=reminder.id,
        started_at=datetime.now(UTC),
    )
    await log.finish(entry, status=201, body='{"sid": "CA<b>1</b>"}', duration_ms=87.0)
    async with signed_in(env, env.api_key) as smile:
        status, page = await smile.get(f"/console/reminders/{reminder.id}")
    assert status == 200
    section = page[page.index('id="twilio-log"') :]
    assert "Calls.json" in section and ">201<" in section and "87 ms" in section
    assert "DetectMessageEnd" in section
    assert "CA&lt;b&gt;1&lt;/b&gt;" in section  # escaped, never markup


def reminder_row(html: str, rid: int) -> dict[str, str]:
    """The cells of one reminder's row in a list, by column, as text."""
    m = re.search(
        rf'<tr>\s*<td data-label="#"><a href="/console/reminders/{rid}">.*?</tr>', html, re.S
    )
    assert m, f"no row for reminder {rid}"
    cells = re.findall(r'<td data-label="([^"]+)">(.*?)</td>', m.group(0), re.S)
    return {label: re.sub(r"<[^>]+>", "", text).strip() for label, text in cells}


async def test_the_reminder_list_shows_status_and_outcome(env: Env) -> None:
    other = await other_tenant(env)
    busy = await env.reminder()
    await env.store.record(busy.id, "status", {}, status="busy", outcome="busy")
    ringing = await env.reminder()
    await env.store.record(ringing.id, "status", {}, status="in_progress")  # no outcome yet
    async with signed_in(env, ADMIN_TOKEN) as admin:
        status, body = await admin.get("/console/reminders?tenant=smile")
        assert status == 200
        row = reminder_row(body, busy.id)
        assert (row["Tenant"], row["Status"], row["Outcome"]) == ("smile", "busy", "busy")
        assert 'class="badge s-busy">busy<' in body
        row = reminder_row(body, ringing.id)
        assert (row["Status"], row["Outcome"], row["Provider"]) == ("in_progress", "—", PROVIDER)
        # The tenant filter shows only that tenant's; without it, everyone's.
        assert f'href="/console/reminders/{other.reminder.id}"' not in body
        status, everyone = await admin.get("/console/reminders")
        assert status == 200 and reminder_row(everyone, other.reminder.id)["Tenant"] == "other"
        assert reminder_row(everyone, busy.id)["Status"] == "busy"


async def test_static_files_are_served_and_packaged(env: Env) -> None:
    for name, kind in [("console.css", "text/css"), ("console.js", "javascript")]:
        resp = await env.client.get(f"/console/static/{name}")
        assert resp.status == 200 and kind in resp.content_type, name
    pyproject = (Path(__file__).resolve().parents[3] / "pyproject.toml").read_text()
    assert '"console/templates/*", "console/static/*"' in pyproject

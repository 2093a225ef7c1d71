"""The REST API under /api/: tenants, reminders and their events, over real loopback HTTP.

The admin token sees everything; a tenant's API key sees its own tenant only. Every error is
JSON with ``error`` (the message) and ``field`` (the offending field, or null).
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.server import (
    ADMIN_TOKEN,
    Env,
)

WHEN = "2031-03-04T15:00:00-05:00"


def assert_error(status: int, body: Any, expected: int, field: str | None = None) -> None:
    assert status == expected, body
    assert set(body) == {"error", "field"}, body
    assert isinstance(body["error"], str) and body["error"]
    assert body["field"] == field, body


async def new_tenant(env: Env, slug: str, **fields: Any) -> str:
    status, body = await env.api(
        "POST", "/api/tenants", json={"slug": slug, "name": slug, **fields}
    )
    assert status == 201, body
    return str(body["api_key"])


# --- authentication ----------------------------------------------------------------------------


NO_ENTRY = [
    {},
    {"Authorization": "Bearer"},
    {"Authorization": "Basic YWRtaW46eA=="},
    {"Authorization": "Bearer not-a-key"},
    {"Authorization": f"Token {ADMIN_TOKEN}"},
]


async def test_without_a_valid_token_nothing_is_served(env: Env) -> None:
    for headers in NO_ENTRY:
        for method, path in [
            ("GET", "/api/tenants"),
            ("GET", "/api/reminders"),
            ("POST", "/api/tenants"),
            ("GET", "/api/reminders/1/events"),
        ]:
            resp = await env.client.request(method, path, headers=headers, json={})
            assert resp.status == 401, (method, path, headers)
            assert resp.content_type == "application/json"
            assert_error(resp.status, await resp.json(), 401)
            assert resp.headers["WWW-Authenticate"] == "Bearer"


# --- tenants -----------------------------------------------------------------------------------


async def test_admin_creates_reads_lists_and_changes_tenants(env: Env) -> None:
    status, body = await env.api(
        "POST",
        "/api/tenants",
        json={
            "slug": "karate",
            "name": "Kicks Karate",
            "region": "gb",
            "timezone": "Europe/London",
            "caller_id": "020 7946 0018",
            "loops": 3,
            "skip_to_beep": True,
            "beep_digit": "*",
            "templates": {"human": "Hello from {tenant}.", "voicemail": "Bye from {tenant}."},
        },
    )
    assert status == 201, body
    key = body.pop("api_key")
    assert key.startswith("vpk_karate_")
    assert body["region"] == "GB" and body["caller_id"] == "+442079460018"
    assert body["templates"] == {"human": "Hello from {tenant}.", "voicemail": "Bye from {tenant}."}
    assert body["voice"] == env.settings.default_voice
    # The key is shown once: never again in a read.
    status, got = await env.api("GET", "/api/tenants/karate")
    assert status == 200 and "api_key" not in got and got == body
    status, listed = await env.api("GET", "/api/tenants")
    assert [t["slug"] for t in listed["tenants"]] == ["karate", "smile"]

    status, changed = await env.api(
        "PATCH",
        "/api/tenants/karate",
        json={"loops": 1, "amd_mode": "off", "templates": {"human": "Hi from {tenant}."}},
    )
    assert status == 200, changed
    assert changed["loops"] == 1 and changed["amd_mode"] == "off"
    assert changed["templates"] == {"human": "Hi from {tenant}.", "voicemail": "Bye from {tenant}."}
    assert (await env.api("GET", "/api/tenants/karate"))[1] == changed


BAD_TENANTS: list[tuple[dict[str, Any], str]] = [
    ({"name": "No slug"}, "slug"),
    ({"slug": "noname"}, "name"),
    ({"slug": "smile", "name": "Again"}, "slug"),  # exists
    ({"slug": "Bad Slug", "name": "x"}, "slug"),
    ({"slug": "x", "name": "x", "loops": 4}, "loops"),
    ({"slug": "x", "name": "x", "loops": "2"}, "loops"),
    ({"slug": "x", "name": "x", "skip_to_beep": "yes"}, "skip_to_beep"),
    ({"slug": "x", "name": "x", "amd_mode": "maybe"}, "amd_mode"),
    ({"slug": "x", "name": "x", "region": "XX"}, "region"),
    ({"slug": "x", "name": "x", "colour": "red"}, "colour"),
    (
        {"slug": "x", "name": "x", "templates": {"voicemail": "Press 1 now."}},
        "template_voicemail",
    ),
    ({"slug": "x", "name": "x", "templates": {"human": "Hi {who:colour}"}}, "template_human"),
    ({"slug": "x", "name": "x", "templates": "Hi"}, "templates"),
    ({"slug": None, "name": "x"}, "slug"),
    ({"slug": "x", "name": None}, "name"),
]


async def test_bad_tenants_are_refused_naming_the_field(
    env: Env, subtests: pytest.Subtests
) -> None:
    for body, field in BAD_TENANTS:
        with subtests.test(body=body):
            status, got = await env.api("POST", "/api/tenants", json=body)
            assert_error(status, got, 422, field)
    assert [t["slug"] for t in (await env.api("GET", "/api/tenants"))[1]["tenants"]] == ["smile"]


BAD_CHANGES: list[tuple[dict[str, Any], str]] = [
    ({"loops": 0}, "loops"),
    ({"slug": "renamed"}, "slug"),
    ({"digit_cancel": "1"}, "digit_cancel"),  # the confirm key already
    ({"timezone": None}, "timezone"),
    ({"name": None}, "name"),
    ({"beep_digit": 5}, "beep_digit"),
]


async def test_bad_changes_are_refused_naming_the_field(
    env: Env, subtests: pytest.Subtests
) -> None:
    for body, field in BAD_CHANGES:
        with subtests.test(body=body):
            status, got = await env.api("PATCH", "/api/tenants/smile", json=body)
            assert_error(status, got, 422, field)
    assert (await env.api("GET", "/api/tenants/smile"))[1]["loops"] == env.tenant.loops


async def test_nullable_settings_can_be_cleared(env: Env) -> None:
    status, got = await env.api(
        "PATCH", "/api/tenants/smile", json={"digit_cancel": None, "caller_id": None}
    )
    assert status == 200 and got["digit_cancel"] is None and got["caller_id"] is None


async def test_bodies_that_are_not_json_objects_are_refused(env: Env) -> None:
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}", "Content-Type": "application/json"}
    for data in (b"{not json", b"[1, 2]", b"\xff\xfe"):
        resp = await env.client.post("/api/tenants", data=data, headers=headers)
        assert_error(resp.status, await resp.json(), 422)


async def test_unknown_things_are_404_json(env: Env) -> None:
    for method, path in [
        ("GET", "/api/tenants/nobody"),
        ("PATCH", "/api/tenants/nobody"),
        ("GET", "/api/reminders/424242"),
        ("GET", "/api/reminders/abc"),
        ("GET", "/api/reminders/424242/events"),
        # Past the 32-bit ids PostgreSQL stores, or not plain digits: no such reminder either.
        ("GET", f"/api/reminders/{2**31}"),
        ("GET", f"/api/reminders/{2**63}/events"),
        ("GET", f"/api/reminders/{2**31}/log"),
        ("GET", "/api/reminders/1_0"),
        ("GET", "/api/nothing"),
    ]:
        status, body = await env.api(method, path, json={"loops": 2})
        assert_error(status, body, 404)


async def test_rotating_a_key_retires_the_old_one(env: Env) -> None:
    old = env.api_key
    assert (await env.api("GET", "/api/tenants/smile", token=old))[0] == 200
    status, body = await env.api("POST", "/api/tenants/smile/rotate-key", token=old)
    assert status == 200 and body["slug"] == "smile" and body["api_key"] != old
    status, err = await env.api("GET", "/api/tenants/smile", token=old)
    assert status == 401
    assert (await env.api("GET", "/api/tenants/smile", token=body["api_key"]))[0] == 200
    # The admin can rotate any tenant's key.
    status, again = await env.api("POST", "/api/tenants/smile/rotate-key")
    assert status == 200
    assert (await env.api("GET", "/api/tenants/smile", token=body["api_key"]))[0] == 401


# --- reminders ---------------------------------------------------------------------------------


NUMBERS = [
    ("US", "(415) 555-0134", "+14155550134"),
    ("US", "415.555.0134", "+14155550134"),
    ("US", "+44 20 7946 0018", "+442079460018"),
    ("GB", "020 7946 0018", "+442079460018"),
    ("GB", "+1 415 555 0134", "+14155550134"),
]


async def test_numbers_are_stored_in_e164_with_the_tenants_region(env: Env) -> None:
    keys = {
        region: await new_tenant(env, f"clinic-{region.lower()}", region=region)
        for region in ("US", "GB")
    }
    for region, number, e164 in NUMBERS:
        status, body = await env.api(
            "POST",
            "/api/reminders",
            token=keys[region],
            json={"to": number, "appointment_at": WHEN, "provider": "Doctor Grey"},
        )
        assert status == 201, body
        assert body["to"] == e164 and body["status"] == "pending", (region, number)
        assert body["tenant"] == f"clinic-{region.lower()}"


async def test_an_invalid_number_is_422_naming_to(env: Env) -> None:
    for number in ["555", "hello", "+1 000 000 0000", "020 7946 0018"]:
        status, body = await env.api(
            "POST", "/api/reminders", token=env.api_key, json={"to": number, "appointment_at": WHEN}
        )
        assert_error(status, body, 422, "to")
        assert number in body["error"]
    assert (await env.api("GET", "/api/reminders"))[1]["reminders"] == []


BAD_REMINDERS: list[tuple[dict[str, Any], str]] = [
    ({"appointment_at": WHEN}, "to"),
    ({"to": "4155550134"}, "appointment_at"),
    ({"to": "4155550134", "appointment_at": "next tuesday"}, "appointment_at"),
    ({"to": "4155550134", "appointment_at": "2031-03-04T15:00:00"}, "appointment_at"),
    ({"to": "4155550134", "appointment_at": WHEN, "provider": 7}, "provider"),
    ({"to": "4155550134", "appointment_at": WHEN, "values": [1]}, "values"),
    ({"to": 4155550134, "appointment_at": WHEN}, "to"),
]


async def test_bad_reminders_are_refused_naming_the_field(
    env: Env, subtests: pytest.Subtests
) -> None:
    for body, field in BAD_REMINDERS:
        with subtests.test(body=body):
            status, got = await env.api("POST", "/api/reminders", token=env.api_key, json=body)
            assert_error(status, got, 422, field)


async def test_the_admin_names_the_tenant_of_a_reminder(env: Env) -> None:
    status, body = await env.api(
        "POST", "/api/reminders", json={"to": "4155550134", "appointment_at": WHEN}
    )
    assert_error(status, body, 422, "tenant")
    status, body = await env.api(
        "POST",
        "/api/reminders",
        json={"tenant": "nobody", "to": "4155550134", "appointment_at": WHEN},
    )
    assert_error(status, body, 404)
    status, body = await env.api(
        "POST",
        "/api/reminders",
        json={"tenant": "smile", "to": "4155550134", "appointment_at": WHEN},
    )
    assert status == 201 and body["tenant"] == "smile"


async def test_a_reminder_shows_its_status_and_events(env: Env) -> None:
    status, created = await env.api(
        "POST",
        "/api/reminders",
        token=env.api_key,
        json={
            "to": "4155550134",
            "appointment_at": WHEN,
            "provider": "Doctor Grey",
            "values": {"room": "3"},
        },
    )
    assert status == 201
    rid = created["id"]
    assert created["appointment_at"] == "2031-03-04T20:00:00+00:00"
    assert created["values"] == {"room": "3"}
    await env.store.record(
        rid, "status", {"CallStatus": "busy"}, call_sid="CA1", status="busy", outcome="busy"
    )
    status, got = await env.api("GET", f"/api/reminders/{rid}", token=env.api_key)
    assert status == 200
    assert (got["status"], got["outcome"], got["call_sid"]) == ("busy", "busy", "CA1")
    assert [e["kind"] for e in got["events"]] == ["created", "status"]
    assert got["events"][1]["detail"] == {"CallStatus": "busy"}
    status, events = await env.api("GET", f"/api/reminders/{rid}/events", token=env.api_key)
    assert status == 200 and events["events"] == got["events"]
    status, listed = await env.api("GET", "/api/reminders", token=env.api_key)
    assert [r["id"] for r in listed["reminders"]] == [rid]
    assert listed["reminders"][0]["status"] == "busy"


async def test_paging_reminders(env: Env) -> None:
    ids = []
    for _ in range(3):
        status, body = await env.api(
            "POST",
            "/api/reminders",
            token=env.api_key,
            json={"to": "4155550134", "appointment_at": WHEN},
        )
        ids.append(body["id"])
    status, page = await env.api("GET", "/api/reminders?limit=2&offset=1", token=env.api_key)
    assert [r["id"] for r in page["reminders"]] == [ids[1], ids[0]]
    for query in ("limit=x", "limit=-1", "offset=-5"):
        status, body = await env.api("GET", f"/api/reminders?{query}", token=env.api_key)
        assert status == 422 and body["field"] in ("limit", "offset"), (query, body)


# --- one tenant cannot reach another ----------------------------------------------------------


async def test_a_tenant_key_cannot_read_or_change_another_tenant(env: Env) -> None:
    other_key = await new_tenant(env, "karate")
    status, theirs = await env.api(
        "POST", "/api/reminders", token=other_key, json={"to": "4155550134", "appointment_at": WHEN}
    )
    rid = theirs["id"]
    mine = env.api_key
    forbidden: list[tuple[str, str, Any]] = [
        ("GET", "/api/tenants/karate", None),
        ("PATCH", "/api/tenants/karate", {"loops": 1}),
        ("POST", "/api/tenants/karate/rotate-key", None),
        ("GET", f"/api/reminders/{rid}", None),
        ("GET", f"/api/reminders/{rid}/events", None),
        ("GET", "/api/reminders?tenant=karate", None),
        (
            "POST",
            "/api/reminders",
            {"tenant": "karate", "to": "4155550134", "appointment_at": WHEN},
        ),
        ("POST", "/api/tenants", {"slug": "mine", "name": "Mine"}),  # admin only
    ]
    for method, path, body in forbidden:
        status, got = await env.api(method, path, token=mine, json=body)
        assert_error(status, got, 403)
    # Nothing changed, nothing leaked into lists.
    status, tenants = await env.api("GET", "/api/tenants", token=mine)
    assert [t["slug"] for t in tenants["tenants"]] == ["smile"]
    status, reminders = await env.api("GET", "/api/reminders", token=mine)
    assert reminders["reminders"] == []
    status, theirs_now = await env.api("GET", "/api/tenants/karate")
    assert theirs_now["loops"] == 2
    assert (await env.api("GET", "/api/tenants/karate", token=other_key))[0] == 200
    status, all_reminders = await env.api("GET", "/api/reminders")
    assert [r["id"] for r in all_reminders["reminders"]] == [rid]


async def test_a_beep_digit_longer_than_the_views_take_is_refused(env: Env) -> None:
    status, body = await env.api("PATCH", "/api/tenants/smile", json={"beep_digit": "1w2w3"})
    assert_error(status, body, 422, "beep_digit")


async def test_scheduling_minutes_are_numbers_in_the_api(env: Env) -> None:
    status, body = await env.api(
        "PATCH", "/api/tenants/smile", json={"retry_delay_minutes": 45, "max_attempts": 3}
    )
    assert status == 200, body
    assert (body["retry_delay_minutes"], body["max_attempts"]) == (45, 3)
    status, body = await env.api("PATCH", "/api/tenants/smile", json={"max_attempts": "3"})
    assert_error(status, body, 422, "max_attempts")

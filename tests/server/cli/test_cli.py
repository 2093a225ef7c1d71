"""The `voiceprompt` command, run in-process with click's CliRunner on a throw-away install."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from server.cli.main import main
from voicebank.asterisk import DEFAULT_SOUNDS

needs_sounds = pytest.mark.skipif(
    not (DEFAULT_SOUNDS / "digits" / "1.wav").is_file(),
    reason="asterisk-core-sounds-en-wav is not installed (make setup installs it)",
)

# Enough of the Asterisk voice for "Tuesday, December first" and "four forty seven p.m.".
PACK = [
    "digits/4",
    "digits/40",
    "digits/7",
    "digits/p-m",
    "digits/day-2",
    "digits/mon-11",
    "digits/h-1",
    "digits/today",
    "digits/tomorrow",
]


@pytest.fixture
def cli(settings) -> CliRunner:
    """A runner whose environment points at the test's database and data folder."""
    env = {
        "VOICEPROMPT_DATA_DIR": str(settings.data_dir),
        "VOICEPROMPT_DATABASE_URL": settings.database_url,
        "VOICEPROMPT_PUBLIC_URL": settings.public_url,
    }
    return CliRunner(env=env)


def ok(result: Result) -> Result:
    assert result.exit_code == 0, f"exit {result.exit_code}: {result.output}{result.stderr}"
    return result


def fails(result: Result, message: str) -> None:
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert message in lines[0]
    assert "Traceback" not in result.output + result.stderr


def import_pack(cli: CliRunner) -> None:
    args = ["bank", "import-asterisk"]
    for name in PACK:
        args += ["--only", name]
    ok(cli.invoke(main, args))


@needs_sounds
def test_import_list_and_rerun(cli):
    first = ok(
        cli.invoke(main, ["bank", "import-asterisk", "--only", "digits/7", "--only", "digits/p-m"])
    )
    assert "voice allison: 2 added, 0 unchanged, 0 rejected" in first.output
    again = ok(
        cli.invoke(main, ["bank", "import-asterisk", "--only", "digits/7", "--only", "digits/p-m"])
    )
    assert "0 added, 2 unchanged" in again.output
    listed = json.loads(ok(cli.invoke(main, ["bank", "list", "--json"])).output)
    assert sorted(c["transcript"] for c in listed) == ["P.M.", "seven"]
    assert all(c["url"].startswith("http://127.0.0.1:8080/media/clips/") for c in listed)


def test_tenant_create_show_update(cli):
    created = ok(
        cli.invoke(
            main,
            [
                "tenant",
                "create",
                "smile",
                "--name",
                "Smile Dental",
                "--timezone",
                "America/Chicago",
            ],
        )
    )
    assert "API key (shown once" in created.output
    shown = json.loads(ok(cli.invoke(main, ["tenant", "show", "smile"])).output)
    assert shown["loops"] == 2 and shown["timezone"] == "America/Chicago"
    assert "{appointment:time}" in shown["templates"]["human"]
    updated = json.loads(ok(cli.invoke(main, ["tenant", "update", "smile", "--loops", "3"])).output)
    assert updated["loops"] == 3
    again = ok(cli.invoke(main, ["tenant", "create", "smile", "--name", "X", "--if-missing"]))
    assert "exists already" in again.output


def test_errors_are_one_line_with_exit_2(cli):
    fails(cli.invoke(main, ["tenant", "show", "nobody"]), "no tenant 'nobody'")
    ok(cli.invoke(main, ["tenant", "create", "smile", "--name", "Smile"]))
    fails(
        cli.invoke(main, ["tenant", "update", "smile", "--loops", "7"]), "loops must be 1, 2 or 3"
    )
    fails(
        cli.invoke(main, ["tenant", "update", "smile", "--template-human", "Hi {x:colour}"]),
        "colour",
    )
    fails(
        cli.invoke(main, ["preview", "--tenant", "smile", "--at", "tomorrow-ish"]),
        "--at 'tomorrow-ish' is not an ISO date-time",
    )


SCHEDULE = {
    "call_lead_minutes": 2880,
    "calling_hours_start": "09:30",
    "calling_hours_end": "24:00",
    "retry_delay_minutes": 90,
    "max_attempts": 4,
    "min_spacing_minutes": 15,
}


def schedule_args(values: dict[str, object]) -> list[str]:
    args: list[str] = []
    for field, value in values.items():
        args += ["--" + field.replace("_", "-"), str(value)]
    return args


def test_tenant_schedule_options_are_stored_and_updated_one_at_a_time(cli):
    ok(cli.invoke(main, ["tenant", "create", "smile", "--name", "Smile", *schedule_args(SCHEDULE)]))
    shown = json.loads(ok(cli.invoke(main, ["tenant", "show", "smile"])).output)
    assert {k: shown[k] for k in SCHEDULE} == SCHEDULE

    updated = json.loads(
        ok(cli.invoke(main, ["tenant", "update", "smile", "--max-attempts", "6"])).output
    )
    assert updated["max_attempts"] == 6
    after = json.loads(ok(cli.invoke(main, ["tenant", "show", "smile"])).output)
    assert after == {**shown, "max_attempts": 6}


def test_tenant_help_lists_schedule_options_with_units_and_defaults(cli):
    text = " ".join(ok(cli.invoke(main, ["tenant", "create", "--help"])).output.split())
    assert "--call-lead-minutes INTEGER Minutes before the appointment" in text
    assert "(0-43200, default 1440)" in text
    assert "--calling-hours-start HH:MM" in text and "(default 08:00)" in text
    assert "--calling-hours-end HH:MM" in text and "24:00 is midnight (default 20:00)" in text
    assert "--retry-delay-minutes INTEGER" in text and "(1-10080, default 30)" in text
    assert "--max-attempts INTEGER" in text and "(1-10, default 2)" in text
    assert "--min-spacing-minutes INTEGER" in text and "(0-10080, default 60)" in text


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--max-attempts", "0"], "max_attempts must be a whole number from 1 to 10"),
        (["--max-attempts", "11"], "max_attempts must be a whole number from 1 to 10"),
        (["--call-lead-minutes", "-1"], "call_lead_minutes must be a whole number from 0"),
        (["--retry-delay-minutes", "0"], "retry_delay_minutes must be a whole number from 1"),
        (["--min-spacing-minutes", "10081"], "min_spacing_minutes must be a whole number"),
        (["--calling-hours-start", "25:00"], "calling_hours_start: '25:00' is not a time"),
        (["--calling-hours-start", "9am"], "calling_hours_start: '9am' is not a time like"),
        (["--calling-hours-end", "08:00"], "calling_hours_end '08:00' must be after"),
        (
            ["--calling-hours-start", "18:00", "--calling-hours-end", "09:00"],
            "calling_hours_end '09:00' must be after calling_hours_start '18:00'",
        ),
    ],
)
def test_tenant_bad_schedule_value_names_the_field_and_changes_nothing(cli, args, message):
    fails(cli.invoke(main, ["tenant", "create", "smile", "--name", "Smile", *args]), message)
    fails(cli.invoke(main, ["tenant", "show", "smile"]), "no tenant 'smile'")

    ok(cli.invoke(main, ["tenant", "create", "smile", "--name", "Smile", *schedule_args(SCHEDULE)]))
    before = ok(cli.invoke(main, ["tenant", "show", "smile"])).output
    fails(cli.invoke(main, ["tenant", "update", "smile", "--loops", "3", *args]), message)
    assert ok(cli.invoke(main, ["tenant", "show", "smile"])).output == before


def test_bad_upload_names_the_file_and_stores_nothing(cli, tmp_path: Path):
    bad = tmp_path / "hello.wav"
    bad.write_bytes(b"RIFF....WAVEfmt garbage")
    result = cli.invoke(main, ["bank", "upload", str(bad)])
    assert result.exit_code == 2
    assert "rejected hello.wav: " in result.stderr
    listed = json.loads(ok(cli.invoke(main, ["bank", "list", "--json"])).output)
    assert listed == []


@needs_sounds
def test_upload_uses_the_file_name_as_transcript(cli, tmp_path: Path):
    clip = tmp_path / "seven.final.wav"
    clip.write_bytes((DEFAULT_SOUNDS / "digits" / "7.wav").read_bytes())
    out = ok(cli.invoke(main, ["bank", "upload", str(clip)])).output
    assert "'seven' (final," in out
    listed = json.loads(ok(cli.invoke(main, ["bank", "list", "--json"])).output)
    assert [(c["transcript"], c["variant"]) for c in listed] == [("seven", "final")]


@needs_sounds
def test_preview_json_uses_recorded_words_and_lists_the_rest(cli):
    import_pack(cli)
    # Clip by clip, word by word: every recorded word is its own segment.
    create = ["tenant", "create", "smile", "--name", "Smile Dental"]
    ok(cli.invoke(main, [*create, "--delivery", "clips", "--fallback", "word"]))
    result = ok(
        cli.invoke(
            main,
            [
                "preview",
                "--tenant",
                "smile",
                "--at",
                "2026-12-01T16:47",
                "--provider",
                "Doctor Benedict",
                "--now",
                "2026-11-26T09:00",
                "--json",
            ],
        )
    )
    plan = json.loads(result.output)
    assert set(plan) >= {"transcript", "segments", "missing", "duration_ms", "loops", "twiml"}
    assert plan["loops"] == 2
    assert "four forty seven p.m." in plan["transcript"]
    assert "Tuesday, December first" in plan["transcript"]
    clips = [s["text"].lower() for s in plan["segments"] if s["kind"] == "clip"]
    for word in ("four", "forty", "seven", "p.m.", "tuesday", "december", "first"):
        assert word in clips
    says = [s["text"] for s in plan["segments"] if s["kind"] == "say"]
    assert says and all(s in plan["missing"] for s in says)
    assert any("reminder from" in m for m in plan["missing"])
    for seg in plan["segments"]:
        assert set(seg) >= {"kind", "text", "clip_id", "url", "ms"}
        if seg["kind"] == "clip":
            assert seg["url"].startswith("http://127.0.0.1:8080/media/clips/")


@needs_sounds
def test_preview_tomorrow(cli):
    import_pack(cli)
    ok(cli.invoke(main, ["tenant", "create", "smile", "--name", "Smile Dental"]))
    result = ok(
        cli.invoke(
            main,
            [
                "preview",
                "--tenant",
                "smile",
                "--at",
                "2026-12-01T16:47",
                "--provider",
                "Doctor B",
                "--now",
                "2026-11-30T10:00",
                "--json",
            ],
        )
    )
    plan = json.loads(result.output)
    assert "tomorrow" in plan["transcript"] and "Tuesday" not in plan["transcript"]


@needs_sounds
def test_preview_writes_mp3_and_transcript(cli, tmp_path: Path):
    import soundfile

    import_pack(cli)
    ok(cli.invoke(main, ["tenant", "create", "smile", "--name", "Smile Dental", "--loops", "1"]))
    out = tmp_path / "r.mp3"
    result = ok(
        cli.invoke(
            main,
            [
                "preview",
                "--tenant",
                "smile",
                "--at",
                "2026-12-01T16:47",
                "--provider",
                "Doctor Benedict",
                "--now",
                "2026-11-26T09:00",
                "--out",
                str(out),
            ],
        )
    )
    assert "missing (" in result.output
    info = soundfile.info(str(out))
    assert info.samplerate in (22050, 16000, 8000) and info.duration > 3.0
    assert out.with_suffix(".txt").read_text().startswith("This is a reminder from Smile Dental.")


@needs_sounds
def test_twiml_prints_the_answer_without_recording_anything(cli, settings):
    import asyncio
    import xml.etree.ElementTree as ET
    from datetime import datetime

    from server.reminders import ReminderStore
    from server.tenants import TenantStore

    import_pack(cli)
    create = ["tenant", "create", "smile", "--name", "Smile Dental"]
    ok(cli.invoke(main, [*create, "--delivery", "clips", "--fallback", "word"]))

    async def make_reminder() -> int:
        from server.db.engine import create_engine

        engine = create_engine(settings.resolved_database_url)
        try:
            tenant = await TenantStore(engine).get("smile")
            r = await ReminderStore(engine).create(
                tenant,
                "(415) 555-0134",
                datetime.fromisoformat("2026-12-01T16:47:00-05:00"),
                "Doctor Benedict",
            )
            return r.id
        finally:
            await engine.dispose()

    rid = asyncio.run(make_reminder())
    human = ok(cli.invoke(main, ["twiml", "--reminder", str(rid)])).output
    assert human.startswith('<?xml version="1.0" encoding="UTF-8"?>')
    root = ET.fromstring(human)
    assert [el.tag for el in root] == ["Gather", "Redirect"]
    assert any(el.tag == "Play" for el in root[0])
    machine = ET.fromstring(
        ok(
            cli.invoke(main, ["twiml", "--reminder", str(rid), "--answered-by", "machine_end_beep"])
        ).output
    )
    assert machine[-1].tag == "Hangup" and "press" not in ET.tostring(machine, "unicode").lower()
    confirmed = ok(cli.invoke(main, ["twiml", "--reminder", str(rid), "--digits", "1"])).output
    assert "confirmed" in confirmed.lower()

    async def events() -> list[str]:
        from server.db.engine import create_engine

        engine = create_engine(settings.resolved_database_url)
        try:
            return [e.kind for e in await ReminderStore(engine).events(rid)]
        finally:
            await engine.dispose()

    assert asyncio.run(events()) == ["created"]  # a dry run records nothing
    fails(cli.invoke(main, ["twiml", "--reminder", "999"]), "no reminder 999")


def test_serve_hands_out_urls_of_the_port_it_listens_on_unless_public_url_is_set(
    settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    import aiohttp.web

    import server.cli.serve
    from server.runtime import media_base_url

    built: list[Any] = []
    served: list[tuple[str, int]] = []

    def create_app(app_settings: Any, **options: Any) -> Any:
        built.append(app_settings)
        return app_settings

    def run_app(app: Any, *, host: str, port: int, **options: Any) -> None:
        served.append((host, port))

    monkeypatch.setattr(server.cli.serve, "create_app", create_app)
    monkeypatch.setattr(aiohttp.web, "run_app", run_app)

    def serve(*args: str, public_url: str | None = None) -> Any:
        env = {
            "VOICEPROMPT_DATA_DIR": str(settings.data_dir),
            "VOICEPROMPT_DATABASE_URL": settings.database_url,
            "VOICEPROMPT_PUBLIC_URL": public_url,  # None: unset
        }
        result = ok(CliRunner(env=env).invoke(main, ["serve", "--no-worker", *args]))
        return built[-1], result.output

    app_settings, output = serve("--port", "8791")
    assert served[-1] == ("127.0.0.1", 8791)
    assert app_settings.public_url == "http://127.0.0.1:8791"
    assert media_base_url(app_settings) == "http://127.0.0.1:8791/media"
    assert "http://127.0.0.1:8791/twilio/voice/<reminder id>" in output
    assert serve("--host", "0.0.0.0", "--port", "9000")[0].public_url == "http://127.0.0.1:9000"
    # "::" listens on IPv6 only here: its loopback is ::1.
    assert serve("--host", "::", "--port", "9000")[0].public_url == "http://[::1]:9000"
    tunnel, output = serve("--port", "8791", public_url="https://vp.example.com")
    assert tunnel.public_url == "https://vp.example.com"
    assert "https://vp.example.com/twilio/voice/<reminder id>" in output

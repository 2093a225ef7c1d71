from __future__ import annotations

import re
from dataclasses import fields
from pathlib import Path

import pytest

from server.errors import ConfigError
from server.settings import VARIABLES, Settings, settings_markdown

README = Path(__file__).resolve().parents[2] / "README.md"


def test_defaults_need_no_configuration():
    s = Settings.from_env({})
    assert s.data_dir == Path("var")
    assert s.resolved_database_url.startswith("sqlite+aiosqlite:///")
    assert s.resolved_database_url.endswith("var/voiceprompt.db")
    assert s.resolved_storage.startswith("file:///") and s.resolved_storage.endswith("var/media")
    assert s.env == "development" and s.cps == 1.0 and s.validate_signatures


def test_values_are_read_and_trimmed():
    s = Settings.from_env(
        {
            "VOICEPROMPT_PUBLIC_URL": "https://abc.example/ ",
            "VOICEPROMPT_DIAL_ALLOWLIST": "+15555550100, +15555550101,",
            "VOICEPROMPT_CPS": "2.5",
            "VOICEPROMPT_ENV": "production",
        }
    )
    assert s.public_url == "https://abc.example"
    assert s.dial_allowlist == {"+15555550100", "+15555550101"}
    assert s.cps == 2.5 and s.is_production


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"VOICEPROMPT_ENV": "staging"}, "VOICEPROMPT_ENV='staging'"),
        ({"VOICEPROMPT_CPS": "fast"}, "VOICEPROMPT_CPS='fast' is not a number"),
        ({"VOICEPROMPT_CPS": "0"}, "must be greater than 0"),
        ({"VOICEPROMPT_TARGET_LUFS": "-3"}, "outside -40..-10"),
        ({"VOICEPROMPT_PUBLIC_URL": "abc.example"}, "must start with http"),
        ({"VOICEPROMPT_VALIDATE_SIGNATURES": "maybe"}, "is not true or false"),
        (
            {"VOICEPROMPT_VALIDATE_SIGNATURES": "false", "VOICEPROMPT_ENV": "production"},
            "only allowed when VOICEPROMPT_ENV=development",
        ),
        (
            {"VOICEPROMPT_VALIDATE_SIGNATURES": "false", "VOICEPROMPT_ENV": "test"},
            "only allowed when VOICEPROMPT_ENV=development",
        ),
    ],
)
def test_bad_settings_name_the_variable(env, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(".", r"\.")):
        Settings.from_env(env)


def test_redacted_masks_secrets_and_database_password():
    s = Settings.from_env(
        {
            "VOICEPROMPT_ADMIN_TOKEN": "admin-secret",
            "TWILIO_AUTH_TOKEN": "twilio-secret",
            "VOICEPROMPT_DATABASE_URL": "postgresql://vp:hunter2@db.internal/vp",
        }
    )
    shown = repr(s.redacted())
    assert "admin-secret" not in shown and "twilio-secret" not in shown
    assert "hunter2" not in shown
    assert "postgresql://vp:***@db.internal/vp" in shown


def test_readme_settings_table_is_the_code_table():
    text = README.read_text(encoding="utf-8")
    found = re.search(
        r"<!-- settings table:[^\n]*-->\n(.*?)<!-- end of settings table -->", text, re.S
    )
    assert found, "README.md lost the settings table markers"
    assert found.group(1).strip() == settings_markdown().strip(), (
        "README.md's settings table differs from server/settings.py VARIABLES; paste the output of "
        ".venv/bin/python -c 'from server.settings import settings_markdown as m; print(m())'"
    )


def test_table_covers_every_field_once_with_the_dataclass_defaults():
    names = [var.name for var in VARIABLES]
    targets = [var.field for var in VARIABLES]
    assert len(set(names)) == len(names) and len(set(targets)) == len(targets)
    derived = {"public_url_set"}  # set by from_env from whether VOICEPROMPT_PUBLIC_URL was given
    assert set(targets) == {f.name for f in fields(Settings)} - derived
    # Unset variables give what Settings() gives, so code building Settings directly agrees.
    assert Settings.from_env({}) == Settings()


def test_redacted_keys_and_secrets_come_from_the_table():
    secrets = [var for var in VARIABLES if var.secret]
    assert {var.name for var in secrets} == {"VOICEPROMPT_ADMIN_TOKEN", "TWILIO_AUTH_TOKEN"}
    shown = Settings.from_env({var.name: f"hush-{var.name}" for var in secrets}).redacted()
    assert list(shown) == [f.name for f in fields(Settings)]
    for var in secrets:
        assert shown[var.field] == "***" and f"hush-{var.name}" not in repr(shown)


@pytest.mark.parametrize(
    ("name", "value", "allowed"),
    [
        ("VOICEPROMPT_ENV", "staging", "is not one of development, production, test"),
        ("VOICEPROMPT_CPS", "fast", "is not a number"),
        ("VOICEPROMPT_CPS", "nan", "must be greater than 0"),
        ("VOICEPROMPT_TARGET_LUFS", "-41", "is outside -40..-10 LUFS"),
        ("VOICEPROMPT_TWILIO_TIMEOUT", "0", "must be greater than 0 and at most 120 seconds"),
        ("VOICEPROMPT_TWILIO_TIMEOUT", "121", "must be greater than 0 and at most 120 seconds"),
        ("VOICEPROMPT_API_LOG_DAYS", "1.5", "must be a whole number >= 1"),
        ("VOICEPROMPT_API_LOG_DAYS", "0", "must be a whole number >= 1"),
        ("VOICEPROMPT_CHECK_INTERVAL", "2592001", "is outside 0..2592000 seconds"),
        ("VOICEPROMPT_CHECK_CONCURRENCY", "513", "is outside 1..512"),
        ("VOICEPROMPT_SLURP_MAX_MB", "0", "is outside 0.001..200 MB"),
        ("VOICEPROMPT_SLURP_ALLOW_PRIVATE", "maybe", "is not true or false"),
        ("VOICEPROMPT_PUBLIC_URL", "abc.example", "must start with http(s)://"),
    ],
)
def test_each_kind_of_bad_value_names_variable_value_and_what_is_allowed(name, value, allowed):
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({name: f" {value} "})
    assert str(caught.value) == f"{name}={value!r} {allowed}"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"VOICEPROMPT_TRUSTED_PROXIES": "10.0.0.0/8, localhost"},
            "VOICEPROMPT_TRUSTED_PROXIES item 'localhost' is not an IP address or network "
            "(e.g. 10.0.0.0/8)",
        ),
        (
            {"VOICEPROMPT_ENV": "test", "VOICEPROMPT_TEST_CRASH": "after_request=2"},
            "VOICEPROMPT_TEST_CRASH item 'after_request=2' is not point=probability",
        ),
        (
            {"VOICEPROMPT_TEST_CRASH": "after_request=2"},
            "VOICEPROMPT_TEST_CRASH is only allowed when VOICEPROMPT_ENV=test",
        ),
    ],
)
def test_bad_list_items_and_wrong_environment_name_the_variable(env, message):
    with pytest.raises(ConfigError) as caught:
        Settings.from_env(env)
    assert str(caught.value) == message


def test_any_refused_value_is_blamed_on_its_variable():
    for var in VARIABLES:
        for junk in ["junk", "-1", "1e99", "nan", "a=b,,c", "://"]:
            try:
                Settings.from_env({"VOICEPROMPT_ENV": "test", var.name: junk})
            except ConfigError as exc:
                assert str(exc).startswith(var.name), (var.name, junk, str(exc))

from __future__ import annotations

from pathlib import Path

import pytest

from server.errors import ConfigError
from server.settings import Settings


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
        ({"VOICEPROMPT_CPS": "0"}, "greater than zero"),
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

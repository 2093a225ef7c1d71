"""Typed settings built from an environment mapping (never read os.environ deep in the code)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from server.errors import ConfigError

ENVIRONMENTS = ("development", "production", "test")


@dataclass(frozen=True)
class Settings:
    """Everything configurable, with the defaults a fresh machine needs (SQLite + local folder)."""

    data_dir: Path = Path("var")
    database_url: str = ""
    storage: str = ""
    s3_endpoint_url: str | None = None
    media_base_url: str | None = None
    public_url: str = "http://127.0.0.1:8080"
    env: str = "development"
    dial_allowlist: frozenset[str] = field(default_factory=frozenset)
    admin_token: str | None = None
    cps: float = 1.0
    twilio_account_sid: str | None = None
    twilio_auth_token: str | None = None
    twilio_api_url: str | None = None
    default_voice: str = "allison"
    target_lufs: float = -19.0
    validate_signatures: bool = True

    @property
    def resolved_database_url(self) -> str:
        return (
            self.database_url or f"sqlite+aiosqlite:///{self.data_dir.resolve() / 'voiceprompt.db'}"
        )

    @property
    def resolved_storage(self) -> str:
        return self.storage or (self.data_dir.resolve() / "media").as_uri()

    @property
    def is_production(self) -> bool:
        return self.env == "production"

    def redacted(self) -> dict[str, object]:
        """The settings as a dict with every secret masked, safe for logs and `config` output."""
        secret = {"admin_token", "twilio_auth_token"}
        out: dict[str, object] = {}
        for name in self.__dataclass_fields__:
            value = getattr(self, name)
            if name in secret and value:
                value = "***"
            elif isinstance(value, frozenset):
                value = sorted(value)
            elif isinstance(value, Path):
                value = str(value)
            out[name] = value
        out["database_url"] = _mask_password(self.resolved_database_url)
        out["storage"] = self.resolved_storage
        return out

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ

        def get(name: str) -> str | None:
            value = env.get(name)
            return value.strip() if value and value.strip() else None

        mode = get("VOICEPROMPT_ENV") or "development"
        if mode not in ENVIRONMENTS:
            raise ConfigError(f"VOICEPROMPT_ENV={mode!r} is not one of {', '.join(ENVIRONMENTS)}")
        cps_text = get("VOICEPROMPT_CPS") or "1"
        try:
            cps = float(cps_text)
        except ValueError:
            raise ConfigError(f"VOICEPROMPT_CPS={cps_text!r} is not a number") from None
        if cps <= 0:
            raise ConfigError(f"VOICEPROMPT_CPS={cps_text!r} must be greater than zero")
        lufs_text = get("VOICEPROMPT_TARGET_LUFS") or "-19"
        try:
            lufs = float(lufs_text)
        except ValueError:
            raise ConfigError(f"VOICEPROMPT_TARGET_LUFS={lufs_text!r} is not a number") from None
        if not -40 <= lufs <= -10:
            raise ConfigError(f"VOICEPROMPT_TARGET_LUFS={lufs_text!r} is outside -40..-10 LUFS")
        validate = (get("VOICEPROMPT_VALIDATE_SIGNATURES") or "true").lower()
        if validate not in ("true", "false", "1", "0", "yes", "no"):
            raise ConfigError(f"VOICEPROMPT_VALIDATE_SIGNATURES={validate!r} is not true or false")
        validate_signatures = validate in ("true", "1", "yes")
        if not validate_signatures and mode == "production":
            raise ConfigError(
                "VOICEPROMPT_VALIDATE_SIGNATURES=false is only allowed when "
                "VOICEPROMPT_ENV=development"
            )
        allow = get("VOICEPROMPT_DIAL_ALLOWLIST") or ""
        public_url = (get("VOICEPROMPT_PUBLIC_URL") or cls.public_url).rstrip("/")
        if not public_url.startswith(("http://", "https://")):
            raise ConfigError(f"VOICEPROMPT_PUBLIC_URL={public_url!r} must start with http(s)://")
        return cls(
            data_dir=Path(get("VOICEPROMPT_DATA_DIR") or "var"),
            database_url=get("VOICEPROMPT_DATABASE_URL") or "",
            storage=get("VOICEPROMPT_STORAGE") or "",
            s3_endpoint_url=get("VOICEPROMPT_S3_ENDPOINT_URL"),
            media_base_url=(get("VOICEPROMPT_MEDIA_BASE_URL") or "").rstrip("/") or None,
            public_url=public_url,
            env=mode,
            dial_allowlist=frozenset(p.strip() for p in allow.split(",") if p.strip()),
            admin_token=get("VOICEPROMPT_ADMIN_TOKEN"),
            cps=cps,
            twilio_account_sid=get("TWILIO_ACCOUNT_SID"),
            twilio_auth_token=get("TWILIO_AUTH_TOKEN"),
            twilio_api_url=get("VOICEPROMPT_TWILIO_API_URL"),
            default_voice=get("VOICEPROMPT_VOICE") or cls.default_voice,
            target_lufs=lufs,
            validate_signatures=validate_signatures,
        )


def _mask_password(url: str) -> str:
    if "@" not in url or "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    creds, host = rest.rsplit("@", 1)
    if ":" in creds:
        creds = creds.split(":", 1)[0] + ":***"
    return f"{scheme}://{creds}@{host}"

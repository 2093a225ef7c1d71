"""Typed settings built from an environment mapping (never read os.environ deep in the code)."""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from server.errors import ConfigError

ENVIRONMENTS = ("development", "production", "test")


IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
DEFAULT_TRUSTED_PROXIES: tuple[IPNetwork, ...] = (
    ipaddress.ip_network("127.0.0.1/32"),
    ipaddress.ip_network("::1/128"),
)


@dataclass(frozen=True)
class Settings:
    """Everything configurable, with the defaults a fresh machine needs (SQLite + local folder)."""

    data_dir: Path = Path("var")
    database_url: str = ""
    storage: str = ""
    s3_endpoint_url: str | None = None
    media_base_url: str | None = None
    public_url: str = "http://127.0.0.1:8080"
    public_url_set: bool = False  # VOICEPROMPT_PUBLIC_URL given (else serve uses its own address)
    env: str = "development"
    dial_allowlist: frozenset[str] = field(default_factory=frozenset)
    admin_token: str | None = None
    cps: float = 1.0
    twilio_account_sid: str | None = None
    twilio_auth_token: str | None = None
    twilio_api_url: str | None = None
    twilio_timeout: float = 10.0
    api_log_days: int = 14
    # Test-only crash points of the dialer, (point, probability) pairs; VOICEPROMPT_ENV=test only.
    test_crash: tuple[tuple[str, float], ...] = ()
    default_voice: str = "allison"
    target_lufs: float = -19.0
    validate_signatures: bool = True
    # Fetch checks of clip URLs (server/web/health.py): every check_interval seconds (0 = never);
    # a webhook checks afresh a clip whose last check is older than check_max_age.
    check_interval: float = 3600.0
    check_max_age: float = 86400.0
    check_concurrency: int = 32
    # Slurping tenant-hosted audio (voicebank/slurp.py). allow_private lets the API fetch from
    # loopback and private networks (development and tests); the CLI always may.
    slurp_max_bytes: int = 20 * 1024 * 1024
    slurp_timeout: float = 10.0
    slurp_allow_private: bool = False
    # Peers whose X-Forwarded-For is believed (a tunnel agent or reverse proxy on this machine by
    # default): the console's sign-in limit counts the client behind them, not the proxy.
    trusted_proxies: tuple[IPNetwork, ...] = DEFAULT_TRUSTED_PROXIES

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
        if not validate_signatures and mode != "development":
            raise ConfigError(
                "VOICEPROMPT_VALIDATE_SIGNATURES=false is only allowed when "
                "VOICEPROMPT_ENV=development"
            )
        timeout_text = get("VOICEPROMPT_TWILIO_TIMEOUT") or "10"
        try:
            twilio_timeout = float(timeout_text)
        except ValueError:
            raise ConfigError(
                f"VOICEPROMPT_TWILIO_TIMEOUT={timeout_text!r} is not a number"
            ) from None
        if not 0 < twilio_timeout <= 120:
            raise ConfigError(f"VOICEPROMPT_TWILIO_TIMEOUT={timeout_text!r} must be 0-120 seconds")
        days_text = get("VOICEPROMPT_API_LOG_DAYS") or "14"
        if not days_text.isdigit() or int(days_text) < 1:
            raise ConfigError(f"VOICEPROMPT_API_LOG_DAYS={days_text!r} must be a whole number >= 1")
        test_crash = _crash_points(get("VOICEPROMPT_TEST_CRASH"), mode)
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
            public_url_set=bool(get("VOICEPROMPT_PUBLIC_URL")),
            env=mode,
            dial_allowlist=frozenset(p.strip() for p in allow.split(",") if p.strip()),
            admin_token=get("VOICEPROMPT_ADMIN_TOKEN"),
            cps=cps,
            twilio_account_sid=get("TWILIO_ACCOUNT_SID"),
            twilio_auth_token=get("TWILIO_AUTH_TOKEN"),
            twilio_api_url=get("VOICEPROMPT_TWILIO_API_URL"),
            twilio_timeout=twilio_timeout,
            api_log_days=int(days_text),
            test_crash=test_crash,
            default_voice=get("VOICEPROMPT_VOICE") or cls.default_voice,
            target_lufs=lufs,
            validate_signatures=validate_signatures,
            trusted_proxies=_networks("VOICEPROMPT_TRUSTED_PROXIES", get),
            **_voicebank_settings(get),
        )


def _networks(name: str, get: Callable[[str], str | None]) -> tuple[IPNetwork, ...]:
    """Comma-separated addresses or CIDR networks; unset means the default, "none" none."""
    text = get(name)
    if text is None:
        return DEFAULT_TRUSTED_PROXIES
    if text.lower() == "none":
        return ()
    out = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        try:
            out.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ConfigError(
                f"{name} item {item!r} is not an IP address or network (e.g. 10.0.0.0/8)"
            ) from None
    return tuple(out)


def _crash_points(text: str | None, mode: str) -> tuple[tuple[str, float], ...]:
    """ "after_request=0.02,before_request=0.01" -> pairs; refused outside the test environment."""
    if not text:
        return ()
    if mode != "test":
        raise ConfigError("VOICEPROMPT_TEST_CRASH is only allowed when VOICEPROMPT_ENV=test")
    points = []
    for item in text.split(","):
        name, _, prob = item.strip().partition("=")
        try:
            p = float(prob)
        except ValueError:
            p = -1.0
        if not name or not 0 <= p <= 1:
            raise ConfigError(f"VOICEPROMPT_TEST_CRASH item {item!r} is not point=probability")
        points.append((name, p))
    return tuple(points)


def _voicebank_settings(get: Callable[[str], str | None]) -> dict[str, Any]:
    """Fetch-check and slurp settings (VOICEPROMPT_CHECK_*, VOICEPROMPT_SLURP_*)."""

    def number(name: str, default: float, *, low: float, high: float) -> float:
        text = get(name)
        if text is None:
            return default
        try:
            value = float(text)
        except ValueError:
            raise ConfigError(f"{name}={text!r} is not a number") from None
        if not low <= value <= high:
            raise ConfigError(f"{name}={text!r} is outside {low:g}..{high:g}")
        return value

    allow = (get("VOICEPROMPT_SLURP_ALLOW_PRIVATE") or "false").lower()
    if allow not in ("true", "false", "1", "0", "yes", "no"):
        raise ConfigError(f"VOICEPROMPT_SLURP_ALLOW_PRIVATE={allow!r} is not true or false")
    day = 86400.0
    return {
        "check_interval": number("VOICEPROMPT_CHECK_INTERVAL", 3600, low=0, high=30 * day),
        "check_max_age": number("VOICEPROMPT_CHECK_MAX_AGE", day, low=1, high=365 * day),
        "check_concurrency": int(number("VOICEPROMPT_CHECK_CONCURRENCY", 32, low=1, high=512)),
        "slurp_max_bytes": int(
            number("VOICEPROMPT_SLURP_MAX_MB", 20, low=0.001, high=200) * 1024 * 1024
        ),
        "slurp_timeout": number("VOICEPROMPT_SLURP_TIMEOUT", 10, low=0.1, high=300),
        "slurp_allow_private": allow in ("true", "1", "yes"),
    }


def _mask_password(url: str) -> str:
    if "@" not in url or "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    creds, host = rest.rsplit("@", 1)
    if ":" in creds:
        creds = creds.split(":", 1)[0] + ":***"
    return f"{scheme}://{creds}@{host}"

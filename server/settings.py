"""Typed settings built from an environment mapping (never read os.environ deep in the code).

Each environment variable is one row of VARIABLES, which from_env, redacted (`voiceprompt config`)
and the README's table (settings_markdown) all read, so they cannot disagree.
"""

from __future__ import annotations

import ipaddress
import math
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
    """Everything configurable, with the defaults a fresh machine needs (SQLite + local folder).

    These defaults serve Settings(...) in tests; from_env's come from VARIABLES (a test compares).
    """

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
    test_crash: tuple[tuple[str, float], ...] = ()  # (point, probability) pairs of the dialer
    default_voice: str = "allison"
    target_lufs: float = -19.0
    validate_signatures: bool = True
    # Fetch checks of clip URLs (server/web/health.py) and slurping of tenant-hosted audio
    # (voicebank/slurp.py); the CLI may always slurp from private networks.
    check_interval: float = 3600.0
    check_max_age: float = 86400.0
    check_concurrency: int = 32
    slurp_max_bytes: int = 20 * 1024 * 1024
    slurp_timeout: float = 10.0
    slurp_allow_private: bool = False
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
        secret = {var.field for var in VARIABLES if var.secret}
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
        values: dict[str, Any] = {}
        for var in VARIABLES:
            given = (env.get(var.name) or "").strip()  # blank counts as unset
            if given and var.only_in and values["env"] != var.only_in:
                raise ConfigError(f"{var.name} is only allowed when VOICEPROMPT_ENV={var.only_in}")
            text = given or var.default
            if text is not None:  # else the field keeps its dataclass default: none or empty
                values[var.field] = var.read(text)
        # Rules across variables, which a row cannot state on its own:
        values["public_url_set"] = bool((env.get("VOICEPROMPT_PUBLIC_URL") or "").strip())
        if not values["validate_signatures"] and values["env"] != "development":
            raise ConfigError(
                "VOICEPROMPT_VALIDATE_SIGNATURES=false is only allowed when "
                "VOICEPROMPT_ENV=development"
            )
        return cls(**values)


class ItemError(ValueError):
    """One bad item of a list: reported as `NAME item 'x' ...` rather than the whole text."""


@dataclass(frozen=True)
class Kind:
    """How a variable's text becomes its value: parse raises ValueError("is not a number"), to
    which Var.read adds the variable's name and text."""

    parse: Callable[[str], object]
    allowed: str = ""  # what users may write, for the README


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)  # "2592000", not "2.592e+06"


def number(
    low: float,
    high: float = math.inf,
    *,
    exclusive: bool = False,  # low itself is refused (a rate or timeout of 0 means nothing)
    unit: str = "",
    then: Callable[[float], object] = float,  # int for counts, MB to bytes, ...
) -> Kind:
    """A decimal number from low to high, refusing NaN; the error states the range."""
    # "must be greater than" / "is outside": the wording the messages had before the table.
    if exclusive:
        upto = f" and at most {_num(high)}" if high < math.inf else ""
        allowed, wrong = f"greater than {_num(low)}{upto}", "must be "
    else:
        allowed, wrong = f"{_num(low)}..{_num(high)}", "is outside "
    allowed += f" {unit}" if unit else ""

    def parse(text: str) -> object:
        try:
            value = float(text)
        except ValueError:
            raise ValueError("is not a number") from None
        # Written as "not inside" so that NaN is refused as well.
        if not ((value > low if exclusive else value >= low) and value <= high):
            raise ValueError(wrong + allowed)
        return then(value)

    return Kind(parse, allowed)


def whole(low: int) -> Kind:
    allowed = f"a whole number >= {low}"

    def parse(text: str) -> int:
        # isdecimal, not isdigit: int() refuses digits such as "²".
        if not text.isdecimal() or int(text) < low:
            raise ValueError(f"must be {allowed}")
        return int(text)

    return Kind(parse, allowed)


def choice(options: tuple[str, ...]) -> Kind:
    def parse(text: str) -> str:
        if text not in options:
            raise ValueError(f"is not one of {', '.join(options)}")
        return text

    return Kind(parse, ", ".join(f"`{o}`" for o in options))


def _flag(text: str) -> bool:
    word = text.lower()
    if word not in ("true", "false", "1", "0", "yes", "no"):
        raise ValueError("is not true or false")
    return word in ("true", "1", "yes")


def _public_url(text: str) -> str:
    url = text.rstrip("/")
    if not url.startswith(("http://", "https://")):
        raise ValueError("must start with http(s)://")
    return url


def _networks(text: str) -> tuple[IPNetwork, ...]:
    if text.lower() == "none":
        return ()
    out = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        try:
            out.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ItemError(
                f"item {item!r} is not an IP address or network (e.g. 10.0.0.0/8)"
            ) from None
    return tuple(out)


def _crash_points(text: str) -> tuple[tuple[str, float], ...]:
    """ "after_request=0.02,before_request=0.01" -> pairs."""
    points = []
    for item in text.split(","):
        name, _, prob = item.strip().partition("=")
        try:
            p = float(prob)
        except ValueError:
            p = -1.0
        if not name or not 0 <= p <= 1:
            raise ItemError(f"item {item!r} is not point=probability")
        points.append((name, p))
    return tuple(points)


TEXT = Kind(str)
FLAG = Kind(_flag, "`true` or `false` (also yes/no, 1/0)")
DAY = 86400.0


@dataclass(frozen=True)
class Var:
    """One environment variable: see VARIABLES."""

    name: str
    field: str  # of Settings
    kind: Kind
    default: str | None  # text used when unset; None keeps the dataclass default (none/empty)
    help: str  # one line for users
    shown: str = ""  # the default as the README says it, when the text alone would mislead
    secret: bool = False  # masked by redacted() (`voiceprompt config`), so never logged
    only_in: str = ""  # setting it at all is refused unless VOICEPROMPT_ENV is this

    def read(self, text: str) -> object:
        try:
            return self.kind.parse(text)
        except ItemError as exc:
            raise ConfigError(f"{self.name} {exc}") from None
        except ValueError as exc:
            raise ConfigError(f"{self.name}={text!r} {exc}") from None


# Laid out by hand, two lines a row, to read as a table. Parsed in this order: VOICEPROMPT_ENV
# must come before the rows with only_in.
# fmt: off
VARIABLES: tuple[Var, ...] = (
    Var("VOICEPROMPT_DATA_DIR", "data_dir", Kind(Path), "var",
        "SQLite file and local media (relative to the working directory)"),
    Var("VOICEPROMPT_DATABASE_URL", "database_url", TEXT, None,
        "e.g. `postgresql://user@host/db`", shown="SQLite in the data dir"),
    Var("VOICEPROMPT_STORAGE", "storage", TEXT, None,
        "where clip audio lives (`s3://bucket/prefix`)", shown="`file://<data dir>/media`"),
    Var("VOICEPROMPT_MEDIA_BASE_URL", "media_base_url", Kind(lambda t: t.rstrip("/") or None), None,
        "base URL of clip audio (a CDN)", shown="`<public url>/media`"),
    Var("VOICEPROMPT_PUBLIC_URL", "public_url", Kind(_public_url, "an http(s):// URL"),
        "http://127.0.0.1:8080",
        "the URL Twilio reaches this service at; local media URLs and signature checks use it",
        shown="the address `serve` listens on (`http://127.0.0.1:8080`)"),
    Var("VOICEPROMPT_ENV", "env", choice(ENVIRONMENTS), "development",
        "outside `production`, only numbers in `VOICEPROMPT_DIAL_ALLOWLIST` are dialed"),
    Var("VOICEPROMPT_VOICE", "default_voice", TEXT, "allison",
        "default voice for new tenants and imports"),
    Var("VOICEPROMPT_TARGET_LUFS", "target_lufs", number(-40, -10, unit="LUFS"), "-19",
        "loudness target of new clips"),
    Var("VOICEPROMPT_S3_ENDPOINT_URL", "s3_endpoint_url", TEXT, None,
        "an S3-compatible endpoint (see `docs/storage.md`)", shown="AWS"),
    Var("VOICEPROMPT_ADMIN_TOKEN", "admin_token", TEXT, None,
        "bearer token of the admin API and console", secret=True),
    Var("VOICEPROMPT_DIAL_ALLOWLIST", "dial_allowlist",
        Kind(lambda t: frozenset(p.strip() for p in t.split(",") if p.strip())), None,
        "comma-separated E.164 numbers that may be dialed outside production", shown="empty"),
    Var("VOICEPROMPT_CPS", "cps", number(0, exclusive=True), "1",
        "calls per second for the whole Twilio account, across all workers"),
    Var("TWILIO_ACCOUNT_SID", "twilio_account_sid", TEXT, None, "Twilio account"),
    Var("TWILIO_AUTH_TOKEN", "twilio_auth_token", TEXT, None, "Twilio credential", secret=True),
    Var("VOICEPROMPT_TWILIO_API_URL", "twilio_api_url", TEXT, None,
        "REST base URL (tests, Twilio-compatible providers)", shown="Twilio"),
    Var("VOICEPROMPT_TWILIO_TIMEOUT", "twilio_timeout",
        number(0, 120, exclusive=True, unit="seconds"), "10",
        "how long one Twilio request may take"),
    Var("VOICEPROMPT_API_LOG_DAYS", "api_log_days", whole(1), "14",
        "how long Twilio requests and responses are kept"),
    Var("VOICEPROMPT_CHECK_INTERVAL", "check_interval", number(0, 30 * DAY, unit="seconds"),
        "3600", "how often clip URLs are fetch-checked; 0 turns it off"),
    Var("VOICEPROMPT_CHECK_MAX_AGE", "check_max_age", number(1, 365 * DAY, unit="seconds"),
        "86400", "a webhook re-checks a clip whose last check is older than this"),
    Var("VOICEPROMPT_CHECK_CONCURRENCY", "check_concurrency", number(1, 512, then=int), "32",
        "how many fetch checks run at once"),
    Var("VOICEPROMPT_SLURP_MAX_MB", "slurp_max_bytes",
        number(0.001, 200, unit="MB", then=lambda mb: int(mb * 1024 * 1024)), "20",
        "largest tenant-hosted recording that is copied"),
    Var("VOICEPROMPT_SLURP_TIMEOUT", "slurp_timeout", number(0.1, 300, unit="seconds"), "10",
        "time limit for copying a tenant-hosted recording"),
    Var("VOICEPROMPT_SLURP_ALLOW_PRIVATE", "slurp_allow_private", FLAG, "false",
        "let the API copy from loopback and private networks (development, tests)"),
    Var("VOICEPROMPT_TRUSTED_PROXIES", "trusted_proxies",
        Kind(_networks, "comma-separated addresses or networks (`10.0.0.0/8`), or `none`"),
        "127.0.0.1,::1",
        "proxies whose `X-Forwarded-For` is believed, for the console's sign-in limit"),
    Var("VOICEPROMPT_VALIDATE_SIGNATURES", "validate_signatures", FLAG, "true",
        "`false` only with `VOICEPROMPT_ENV=development` (a warning is logged)"),
    Var("VOICEPROMPT_TEST_CRASH", "test_crash",
        Kind(_crash_points, "`point=probability`, comma-separated"), None,
        "crash points of the dialer, for tests", only_in="test"),
)
# fmt: on


def settings_markdown() -> str:
    """The README's settings table, from VARIABLES (tests/server/test_settings.py compares)."""
    lines = ["| variable | default | allowed | meaning |", "|---|---|---|---|"]
    for var in VARIABLES:
        default = var.shown or ("none" if var.default is None else f"`{var.default}`")
        notes = [var.help]
        if var.secret:
            notes.append("secret")
        if var.only_in:
            notes.append(f"only with `VOICEPROMPT_ENV={var.only_in}`")
        cells = [f"`{var.name}`", default, var.kind.allowed, "; ".join(notes)]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines) + "\n"


def _mask_password(url: str) -> str:
    if "@" not in url or "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    creds, host = rest.rsplit("@", 1)
    if ":" in creds:
        creds = creds.split(":", 1)[0] + ":***"
    return f"{scheme}://{creds}@{host}"

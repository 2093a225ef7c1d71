"""Tenants: the businesses we phone on behalf of, and their call settings.

Validation lives here so the CLI, the REST API and the console refuse the same bad values
with the same messages (each naming the field).
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields, replace
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from prompts.errors import PromptError
from prompts.template import validate_template
from server.db.schema import tenants
from server.dialing.schedule import DAY_MINUTES, CallingPolicy, parse_clock
from server.errors import NotFound, ValidationError

AMD_MODES = ("off", "enable", "detect-message-end")
# How the call plays a message: one <Play> per stitched sentence, or one per clip (the old way,
# kept for comparison). And who speaks a sentence with unrecorded words: the fallback voice for
# the whole sentence, or for those words only, between the recorded ones.
DELIVERIES = ("stitched", "clips")
FALLBACKS = ("sentence", "word")
DEFAULT_HUMAN_TEMPLATE = (
    "This is a reminder from {tenant}. Your appointment with {provider} is on "
    "{appointment:date} at {appointment:time}."
)
DEFAULT_VOICEMAIL_TEMPLATE = (
    "Hello, this is a reminder from {tenant}. Your appointment with {provider} is on "
    "{appointment:date} at {appointment:time}. Please call us if you need to change it. Goodbye."
)
_SLUG = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
_DIGIT = re.compile(r"^[0-9*#]$")
# Inclusive bounds of the whole-minute scheduling fields.
MINUTE_FIELDS = {
    "call_lead_minutes": (0, 30 * DAY_MINUTES),
    "retry_delay_minutes": (1, 7 * DAY_MINUTES),
    "max_attempts": (1, 10),
    "min_spacing_minutes": (0, 7 * DAY_MINUTES),
}


@dataclass(frozen=True)
class Tenant:
    slug: str
    name: str
    timezone: str = "America/New_York"
    region: str = "US"
    caller_id: str | None = None
    voice: str = "allison"
    language: str = "en-US"
    say_voice: str = "Polly.Joanna"
    template_human: str = DEFAULT_HUMAN_TEMPLATE
    template_voicemail: str = DEFAULT_VOICEMAIL_TEMPLATE
    loops: int = 2
    amd_mode: str = "detect-message-end"
    skip_to_beep: bool = False
    beep_digit: str = "#"
    delivery: str = "stitched"
    fallback: str = "sentence"
    digit_confirm: str = "1"
    digit_cancel: str | None = "5"
    digit_contact: str | None = "9"
    digit_repeat: str | None = "*"
    # When to call (server/dialing/schedule.py): from this long before the appointment, within these
    # local hours, with this retry policy and gap between any two calls to one number.
    call_lead_minutes: int = 1440
    calling_hours_start: str = "08:00"
    calling_hours_end: str = "20:00"
    retry_delay_minutes: int = 30
    max_attempts: int = 2
    min_spacing_minutes: int = 60

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def calling_policy(self) -> CallingPolicy:
        """The tenant's rules for when its reminders may ring (server/dialing/schedule.py)."""
        return CallingPolicy(
            zone=self.zone,
            lead=timedelta(minutes=self.call_lead_minutes),
            start_minute=parse_clock(self.calling_hours_start),
            end_minute=parse_clock(self.calling_hours_end, allow_end_of_day=True),
            retry_delay=timedelta(minutes=self.retry_delay_minutes),
            max_attempts=self.max_attempts,
            min_spacing=timedelta(minutes=self.min_spacing_minutes),
        )

    def public_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["templates"] = {
            "human": data.pop("template_human"),
            "voicemail": data.pop("template_voicemail"),
        }
        return data


EDITABLE = tuple(f.name for f in fields(Tenant) if f.name != "slug")


def hash_api_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def new_api_key(slug: str) -> str:
    return f"vpk_{slug}_{secrets.token_urlsafe(24)}"


def validate(tenant: Tenant) -> Tenant:
    """Check every field; raise ValidationError naming the first bad one.

    Returns a normalised copy (region upper-case, caller ID in E.164).
    """
    if not _SLUG.match(tenant.slug):
        raise ValidationError(
            f"slug {tenant.slug!r} must be 1-63 lower-case letters, digits or hyphens", "slug"
        )
    if not tenant.name.strip():
        raise ValidationError("name must not be empty", "name")
    try:
        ZoneInfo(tenant.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValidationError(
            f"timezone {tenant.timezone!r} is not an IANA zone such as America/Chicago", "timezone"
        ) from None
    region = tenant.region.upper()
    if region not in phonenumbers.SUPPORTED_REGIONS:
        raise ValidationError(
            f"region {tenant.region!r} is not a two-letter country code", "region"
        )
    caller_id = tenant.caller_id
    if caller_id:
        caller_id = normalize_phone(caller_id, region, field="caller_id")
    if not isinstance(tenant.loops, int) or not 1 <= tenant.loops <= 3:
        raise ValidationError(f"loops must be 1, 2 or 3, not {tenant.loops!r}", "loops")
    if tenant.amd_mode not in AMD_MODES:
        raise ValidationError(
            f"amd_mode {tenant.amd_mode!r} must be one of {', '.join(AMD_MODES)}", "amd_mode"
        )
    # The TwiML view plays at most 4 keys (w = half a second of silence) and needs one real key.
    for name, allowed in (("delivery", DELIVERIES), ("fallback", FALLBACKS)):
        if getattr(tenant, name) not in allowed:
            raise ValidationError(
                f"{name} {getattr(tenant, name)!r} must be one of {', '.join(allowed)}", name
            )
    if not re.fullmatch(r"[0-9*#wW]{1,4}", tenant.beep_digit) or not tenant.beep_digit.strip("wW"):
        raise ValidationError(
            f"beep_digit {tenant.beep_digit!r} must be 1-4 DTMF keys (0-9, *, #, w for a pause)",
            "beep_digit",
        )
    seen: dict[str, str] = {}
    for name in ("digit_confirm", "digit_cancel", "digit_contact", "digit_repeat"):
        value = getattr(tenant, name)
        if value is None and name != "digit_confirm":
            continue
        if not isinstance(value, str) or not _DIGIT.match(value):
            raise ValidationError(f"{name} must be one key (0-9, * or #), not {value!r}", name)
        if value in seen:
            raise ValidationError(f"{name} uses {value!r}, already used by {seen[value]}", name)
        seen[value] = name
    for name in ("template_human", "template_voicemail"):
        try:
            validate_template(getattr(tenant, name))
        except PromptError as exc:
            raise ValidationError(f"{name}: {exc}", name) from None
    _validate_schedule(tenant)
    if "press" in tenant.template_voicemail.lower():
        raise ValidationError(
            "template_voicemail must not ask to press a key: an answering machine cannot",
            "template_voicemail",
        )
    return replace(tenant, region=region, caller_id=caller_id)


def _validate_schedule(tenant: Tenant) -> None:
    for name, (low, high) in MINUTE_FIELDS.items():
        value = getattr(tenant, name)
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise ValidationError(f"{name} must be a whole number from {low} to {high}", name)
    bounds = []
    for name in ("calling_hours_start", "calling_hours_end"):
        value = getattr(tenant, name)
        try:
            if not isinstance(value, str):
                raise ValueError(f"{value!r} is not a time like 08:00")
            bounds.append(parse_clock(value, allow_end_of_day=name == "calling_hours_end"))
        except ValueError as exc:
            raise ValidationError(f"{name}: {exc}", name) from None
    if bounds[0] >= bounds[1]:
        raise ValidationError(
            f"calling_hours_end {tenant.calling_hours_end!r} must be after "
            f"calling_hours_start {tenant.calling_hours_start!r}",
            "calling_hours_end",
        )


def normalize_phone(number: str, region: str, *, field: str = "to") -> str:
    """E.164 form of a phone number, or a ValidationError saying why not."""
    try:
        parsed = phonenumbers.parse(number, region)
    except phonenumbers.NumberParseException as exc:
        raise ValidationError(f"{field} {number!r} is not a phone number: {exc}", field) from None
    if not phonenumbers.is_valid_number(parsed):
        raise ValidationError(
            f"{field} {number!r} is not a valid number for region {region}", field
        )
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def tenant_columns(prefix: str) -> list[sa.Label[Any]]:
    """Every tenant column, labelled ``<prefix><field>``, to read a tenant along with a join."""
    return [tenants.c[f.name].label(f"{prefix}{f.name}") for f in fields(Tenant)]


def tenant_from_row(m: Mapping[Any, Any], prefix: str = "") -> Tenant:
    """A Tenant from a row of the tenants table (or of ``tenant_columns(prefix)``)."""
    return Tenant(**{f.name: m[f"{prefix}{f.name}"] for f in fields(Tenant)})


class TenantStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def create(self, tenant: Tenant) -> tuple[Tenant, str]:
        """Insert a tenant; returns it with its new API key (shown once, stored as a hash)."""
        tenant = validate(tenant)
        key = new_api_key(tenant.slug)
        now = datetime.now(UTC)
        async with self.engine.begin() as conn:
            exists = (
                await conn.execute(sa.select(tenants.c.id).where(tenants.c.slug == tenant.slug))
            ).first()
            if exists:
                raise ValidationError(f"tenant {tenant.slug!r} already exists", "slug")
            await conn.execute(
                tenants.insert().values(
                    **asdict(tenant), api_key_hash=hash_api_key(key), created_at=now, updated_at=now
                )
            )
        return tenant, key

    async def get(self, slug: str) -> Tenant:
        async with self.engine.connect() as conn:
            row = (await conn.execute(sa.select(tenants).where(tenants.c.slug == slug))).first()
        if row is None:
            raise NotFound(f"no tenant {slug!r}")
        return tenant_from_row(row._mapping)

    async def list(self) -> list[Tenant]:
        async with self.engine.connect() as conn:
            rows = await conn.execute(sa.select(tenants).order_by(tenants.c.slug))
            return [tenant_from_row(r._mapping) for r in rows]

    async def update(self, slug: str, changes: Mapping[str, Any]) -> Tenant:
        unknown = sorted(set(changes) - set(EDITABLE))
        if unknown:
            raise ValidationError(f"unknown field {unknown[0]!r}", unknown[0])
        current = await self.get(slug)
        tenant = validate(replace(current, **changes))
        async with self.engine.begin() as conn:
            await conn.execute(
                tenants.update()
                .where(tenants.c.slug == slug)
                .values(**{k: getattr(tenant, k) for k in EDITABLE}, updated_at=datetime.now(UTC))
            )
        return tenant

    async def rotate_key(self, slug: str) -> str:
        await self.get(slug)
        key = new_api_key(slug)
        async with self.engine.begin() as conn:
            await conn.execute(
                tenants.update()
                .where(tenants.c.slug == slug)
                .values(api_key_hash=hash_api_key(key), updated_at=datetime.now(UTC))
            )
        return key

    async def by_api_key(self, key: str) -> Tenant | None:
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(
                    sa.select(tenants).where(tenants.c.api_key_hash == hash_api_key(key))
                )
            ).first()
        return None if row is None else tenant_from_row(row._mapping)

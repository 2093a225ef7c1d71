"""The Twilio API log: every REST request we send and the answer, kept with its reminder.

A request is written before it leaves (so a worker that dies mid-request still leaves a trace)
and completed when the answer or the error comes back. Secrets never reach the table: no
Authorization header is stored, parameters that name a password, token or secret are masked,
and any value that contains a known secret (the auth token) has it replaced.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from server.db.schema import api_log
from voicebank.sql import aware

__all__ = ["MASK", "ApiExchange", "ApiLog", "redact"]

MASK = "***"
DEFAULT_DAYS = 14
# A parameter whose name says it is a credential (SipAuthPassword, a token, a secret).
_SECRET_NAME = re.compile(r"password|token|secret|authorization", re.IGNORECASE)
# Twilio's answers are small JSON; anything bigger is an error page we keep the start of.
MAX_BODY = 64 * 1024


def _scrub(text: str, secrets: Iterable[str]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, MASK)
    return text


def redact(params: Mapping[str, Any], secrets: Iterable[str] = ()) -> dict[str, Any]:
    """A copy of request parameters safe to store: credential-named ones masked, known secret
    values scrubbed from the rest (lists, such as repeated StatusCallbackEvent, kept as lists)."""
    secrets = tuple(s for s in secrets if s)
    out: dict[str, Any] = {}
    for name, value in params.items():
        if _SECRET_NAME.search(name):
            out[name] = MASK
        elif isinstance(value, list | tuple):
            out[name] = [_scrub(str(v), secrets) for v in value]
        else:
            out[name] = _scrub(str(value), secrets)
    return out


@dataclass(frozen=True)
class ApiExchange:
    """One request to Twilio and what came back (status None: no answer, see ``error``)."""

    id: int
    reminder_id: int | None
    method: str
    url: str
    request: dict[str, Any]
    status: int | None
    response_body: str | None
    request_id: str | None
    error: str | None
    duration_ms: float | None
    started_at: datetime

    def public_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "reminder_id": self.reminder_id,
            "method": self.method,
            "url": self.url,
            "request": self.request,
            "status": self.status,
            "response_body": self.response_body,
            "request_id": self.request_id,
            "error": self.error,
            "duration_ms": self.duration_ms,
            "started_at": self.started_at.isoformat(),
        }


class ApiLog:
    """The ``api_log`` table. ``secrets`` are scrubbed from everything written."""

    def __init__(self, engine: AsyncEngine, *, secrets: Iterable[str] = ()) -> None:
        self.engine = engine
        # One statement each: no BEGIN/COMMIT round trips.
        self.auto = engine.execution_options(isolation_level="AUTOCOMMIT")
        self.secrets = tuple(s for s in secrets if s)

    async def start(
        self,
        *,
        method: str,
        url: str,
        request: Mapping[str, Any],
        reminder_id: int | None,
        started_at: datetime,
    ) -> int:
        """Record a request about to be sent; returns the entry to ``finish``."""
        async with self.auto.connect() as conn:
            entry = await conn.execute(
                api_log.insert()
                .values(
                    reminder_id=reminder_id,
                    method=method,
                    url=_scrub(url, self.secrets),
                    request_json=json.dumps(redact(request, self.secrets), sort_keys=True),
                    started_at=started_at.astimezone(UTC),
                )
                .returning(api_log.c.id)
            )
            return int(entry.scalar_one())

    async def finish(
        self,
        entry_id: int,
        *,
        status: int | None,
        body: str | None,
        request_id: str | None = None,
        error: str | None = None,
        duration_ms: float | None = None,
        sent_at: datetime | None = None,
    ) -> None:
        """Complete an entry with the answer; ``sent_at`` (when it left, after any wait for a
        send slot) replaces the time it was written."""
        if body is not None:
            body = _scrub(body[:MAX_BODY], self.secrets)
        async with self.auto.connect() as conn:
            await conn.execute(
                api_log.update()
                .where(api_log.c.id == entry_id)
                .values(
                    status=status,
                    response_body=body,
                    request_id=request_id,
                    error=None if error is None else _scrub(error, self.secrets),
                    duration_ms=duration_ms,
                    **({"started_at": sent_at.astimezone(UTC)} if sent_at else {}),
                )
            )

    async def for_reminder(self, reminder_id: int) -> list[ApiExchange]:
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                sa.select(api_log)
                .where(api_log.c.reminder_id == reminder_id)
                .order_by(api_log.c.id)
            )
            return [
                ApiExchange(
                    id=int(r.id),
                    reminder_id=r.reminder_id,
                    method=r.method,
                    url=r.url,
                    request=json.loads(r.request_json or "{}"),
                    status=r.status,
                    response_body=r.response_body,
                    request_id=r.request_id,
                    error=r.error,
                    duration_ms=r.duration_ms,
                    started_at=aware(r.started_at),
                )
                for r in rows
            ]

    async def purge(self, now: datetime, days: int = DEFAULT_DAYS) -> int:
        """Delete entries older than ``days``; returns how many went."""
        cutoff = now.astimezone(UTC) - timedelta(days=days)
        async with self.engine.begin() as conn:
            result = await conn.execute(api_log.delete().where(api_log.c.started_at < cutoff))
            return int(result.rowcount or 0)

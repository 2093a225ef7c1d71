"""Reminders and their events: the record of every call and what the callee did."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from server.db.changes import Changes
from server.db.schema import prepared_answers, reminder_events, reminders, tenants
from server.errors import NotFound, ValidationError
from server.tenants import Tenant, TenantStore, normalize_phone, tenant_columns, tenant_from_row
from voicebank.sql import aware

STATUSES = (
    "pending",
    "dialing",
    "in_progress",
    "confirmed",
    "cancelled",
    "contact_requested",
    "voicemail_left",
    "heard_no_keypress",
    "no_answer",
    "busy",
    "failed",
    "call_canceled",
    "fax",
    "needs_review",
)
# Progress only moves a reminder forward: an "in progress" written late (an answer's event that
# waited in the outbox, a late "ringing") never undoes a status that came after it.
PROGRESS = "in_progress"
BEFORE_PROGRESS = frozenset({"pending", "dialing"})


MAX_ID = 2**31 - 1  # reminder ids are 32-bit in PostgreSQL


def parse_reminder_id(text: str | None) -> int | None:
    """The reminder id in a URL, or None when the text cannot name one: plain ASCII digits
    only (``int`` would take "1_0" or " 7"), and within the 32 bits PostgreSQL stores, so a
    huge number is "no such reminder" rather than a database error."""
    if not text or not (text.isascii() and text.isdigit()):
        return None
    rid = int(text)
    return rid if 0 < rid <= MAX_ID else None


@dataclass(frozen=True)
class Reminder:
    id: int
    tenant: str
    to: str
    appointment_at: datetime
    provider: str | None
    values: dict[str, Any]
    status: str
    outcome: str | None
    call_sid: str | None
    answered_by: str | None
    created_at: datetime
    updated_at: datetime

    def public_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "tenant": self.tenant,
            "to": self.to,
            "appointment_at": self.appointment_at.isoformat(),
            "provider": self.provider,
            "values": self.values,
            "status": self.status,
            "outcome": self.outcome,
            "call_sid": self.call_sid,
            "answered_by": self.answered_by,
            "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
        }


@dataclass(frozen=True)
class Event:
    id: int
    reminder_id: int
    kind: str
    detail: dict[str, Any]
    call_sid: str | None
    created_at: datetime

    def public_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "detail": self.detail,
            "call_sid": self.call_sid,
            "created_at": self.created_at.isoformat(),
        }


_SELECT = sa.select(reminders, tenants.c.slug.label("tenant_slug")).join(
    tenants, tenants.c.id == reminders.c.tenant_id
)
# A reminder with every setting of its tenant (columns "tenant_<field>"), in one query. Built
# once with a bound parameter: every call webhook runs it, and building the statement anew
# (coercions, cache key) cost about as much as SQLite answering it.
_SELECT_FOR_CALL = (
    sa.select(
        reminders,
        *tenant_columns("tenant_"),
        prepared_answers.c.prepared_for,
        prepared_answers.c.answers.label("prepared_answers"),
    )
    .join(tenants, tenants.c.id == reminders.c.tenant_id)
    .outerjoin(prepared_answers, prepared_answers.c.reminder_id == reminders.c.id)
    .where(reminders.c.id == sa.bindparam("reminder_id"))
)


@dataclass(frozen=True)
class Prepared:
    """A call's prepared answers as stored (server/calls/prepared.py writes and reads them)."""

    prepared_for: date
    answers: str


def _reminder(m: Mapping[Any, Any]) -> Reminder:
    return Reminder(
        id=int(m["id"]),
        tenant=str(m["tenant_slug"]),
        to=str(m["to_number"]),
        appointment_at=aware(m["appointment_at"]),
        provider=m["provider"],
        values=json.loads(m["values_json"] or "{}"),
        status=str(m["status"]),
        outcome=m["outcome"],
        call_sid=m["call_sid"],
        answered_by=m["answered_by"],
        created_at=aware(m["created_at"]),
        updated_at=aware(m["updated_at"]),
    )


class ReminderStore:
    def __init__(self, engine: AsyncEngine, changes: Changes | None = None) -> None:
        self.engine = engine
        self.tenants = TenantStore(engine)
        # Wakes live pages on this process's writes (not `or`: an unwatched Changes is falsy).
        self.changes = changes if changes is not None else Changes()

    async def create(
        self,
        tenant: Tenant,
        to: str,
        appointment_at: datetime,
        provider: str | None,
        values: Mapping[str, Any] | None = None,
    ) -> Reminder:
        if appointment_at.tzinfo is None:
            raise ValidationError(
                "appointment_at needs a UTC offset, e.g. 2026-12-01T16:47:00-05:00",
                "appointment_at",
            )
        number = normalize_phone(to, tenant.region, field="to")
        try:
            encoded = json.dumps(dict(values or {}))
        except TypeError:
            raise ValidationError("values must be JSON strings and numbers", "values") from None
        now = datetime.now(UTC)
        async with self.engine.begin() as conn:
            tenant_id = (
                await conn.execute(sa.select(tenants.c.id).where(tenants.c.slug == tenant.slug))
            ).scalar_one()
            rid = (
                await conn.execute(
                    reminders.insert()
                    .values(
                        tenant_id=tenant_id,
                        to_number=number,
                        appointment_at=appointment_at.astimezone(UTC),
                        provider=provider,
                        values_json=encoded,
                        status="pending",
                        created_at=now,
                        updated_at=now,
                    )
                    .returning(reminders.c.id)
                )
            ).scalar_one()
            await conn.execute(
                reminder_events.insert().values(
                    reminder_id=rid,
                    kind="created",
                    detail_json=json.dumps({"to": number}),
                    created_at=now,
                )
            )
        return await self.get(rid)

    async def get(self, reminder_id: int) -> Reminder:
        async with self.engine.connect() as conn:
            row = (await conn.execute(_SELECT.where(reminders.c.id == reminder_id))).first()
        if row is None:
            raise NotFound(f"no reminder {reminder_id}")
        return _reminder(row._mapping)

    async def get_for_call(self, reminder_id: int) -> tuple[Reminder, Tenant, Prepared | None]:
        """The reminder, its tenant and its prepared answers in one round trip (what every
        call webhook needs)."""
        async with self.engine.connect() as conn:
            row = (await conn.execute(_SELECT_FOR_CALL, {"reminder_id": reminder_id})).first()
        if row is None:
            raise NotFound(f"no reminder {reminder_id}")
        m = row._mapping
        tenant = tenant_from_row(m, "tenant_")
        ready = m["prepared_for"]
        prepared = None if ready is None else Prepared(ready, m["prepared_answers"])
        return _reminder(m), tenant, prepared

    async def by_call_sid(self, call_sid: str) -> Reminder | None:
        async with self.engine.connect() as conn:
            row = (await conn.execute(_SELECT.where(reminders.c.call_sid == call_sid))).first()
        return None if row is None else _reminder(row._mapping)

    async def list_recent(
        self, tenant: str | None = None, *, limit: int = 100, offset: int = 0
    ) -> list[Reminder]:
        query = _SELECT.order_by(reminders.c.id.desc()).limit(limit).offset(offset)
        if tenant is not None:
            query = query.where(tenants.c.slug == tenant)
        async with self.engine.connect() as conn:
            return [_reminder(r._mapping) for r in await conn.execute(query)]

    async def events(self, reminder_id: int, *, after: int = 0) -> list[Event]:
        """The reminder's events in order; ``after``: only those with a greater id."""
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                sa.select(reminder_events)
                .where(reminder_events.c.reminder_id == reminder_id, reminder_events.c.id > after)
                .order_by(reminder_events.c.id)
            )
            return [
                Event(
                    int(r.id),
                    int(r.reminder_id),
                    r.kind,
                    json.loads(r.detail_json),
                    r.call_sid,
                    aware(r.created_at),
                )
                for r in rows
            ]

    async def record(
        self,
        reminder_id: int,
        kind: str,
        detail: Mapping[str, Any] | None = None,
        *,
        call_sid: str | None = None,
        dedupe_key: str | None = None,
        status: str | None = None,
        outcome: str | None = None,
        answered_by: str | None = None,
        keep_decisive: frozenset[str] = frozenset(),
    ) -> bool:
        """Add an event (and change the status) in one transaction.

        Returns False when ``dedupe_key`` was seen before: the callback is a retry and changes
        nothing. A status in ``keep_decisive`` (the callee's own decision) is never overwritten,
        and ``in_progress`` only replaces ``pending`` or ``dialing``.
        """
        options = {
            "call_sid": call_sid,
            "dedupe_key": dedupe_key,
            "status": status,
            "outcome": outcome,
            "answered_by": answered_by,
            "keep_decisive": keep_decisive,
        }
        try:
            async with self.engine.begin() as conn:
                await _write_events(conn, [(reminder_id, kind, detail, options)])
        except IntegrityError:
            if dedupe_key is None:
                raise
            return False
        self.changes.notify([reminder_id])
        return True

    async def record_many(self, events: Sequence[EventArgs]) -> None:
        """Several ``record`` calls, given as (reminder id, kind, detail, keyword arguments), in
        one transaction and a few statements: all are written or none. A repeated
        ``dedupe_key`` raises IntegrityError here (write them one by one to find it)."""
        async with self.engine.begin() as conn:
            await _write_events(conn, events)
        self.changes.notify(rid for rid, *_ in events)


# (reminder id, kind, detail, keyword arguments of ReminderStore.record)
EventArgs = tuple[int, str, Mapping[str, Any] | None, Mapping[str, Any]]
_FIELDS = ("status", "outcome", "call_sid", "answered_by")


def _apply(row: dict[str, Any], options: Mapping[str, Any]) -> bool:
    """One event's changes to a reminder's fields (``row``), by ``record``'s rules."""
    if options.get("call_sid") and row["status"] == "pending" and row.get("attempts"):
        # Put back to pending for a retry, the reminder has no live call (its CallSid was
        # cleared): a late callback of the previous attempt must not revive it, or the retry
        # would never be dialed.
        return False
    changes = {k: options[k] for k in ("call_sid", "answered_by") if options.get(k)}
    changes.update({k: options[k] for k in ("status", "outcome") if options.get(k) is not None})
    keep: frozenset[str] = options.get("keep_decisive") or frozenset()
    progress = changes.get("status") == PROGRESS
    if (progress or (keep and ("status" in changes or "outcome" in changes))) and (
        row["status"] in keep or (progress and row["status"] not in BEFORE_PROGRESS)
    ):
        changes.pop("status", None)
        changes.pop("outcome", None)
    row.update(changes)
    return bool(changes)


async def _write_events(conn: AsyncConnection, events: Sequence[EventArgs]) -> None:
    """Insert the events, then apply their changes in order to each reminder's current row
    (read FOR UPDATE) and write every changed reminder once."""
    now = datetime.now(UTC)
    await conn.execute(
        reminder_events.insert(),
        [
            {
                "reminder_id": rid,
                "kind": kind,
                "detail_json": json.dumps(dict(detail or {})),
                "call_sid": options.get("call_sid"),
                "dedupe_key": options.get("dedupe_key"),
                "created_at": now,
            }
            for rid, kind, detail, options in events
        ],
    )
    ids = {rid for rid, _, _, options in events if any(options.get(k) for k in _FIELDS)}
    if not ids:
        return
    query = sa.select(
        reminders.c.id, reminders.c.attempts, *(reminders.c[k] for k in _FIELDS)
    ).where(reminders.c.id.in_(ids))
    rows = {r.id: dict(r._mapping) for r in await conn.execute(query.with_for_update())}
    changed = {rid for rid, _, _, options in events if rid in rows and _apply(rows[rid], options)}
    if changed:
        await conn.execute(
            reminders.update()
            .where(reminders.c.id == sa.bindparam("b_id"))
            .values({**{k: sa.bindparam(f"b_{k}") for k in _FIELDS}, "updated_at": now}),
            [{"b_id": rid, **{f"b_{k}": rows[rid][k] for k in _FIELDS}} for rid in sorted(changed)],
        )


class DryRunReminderStore(ReminderStore):
    """Reads like a ReminderStore and writes nothing: `voiceprompt twiml` shows an answer
    without recording a call that never happened."""

    async def record(self, reminder_id: int, kind: str, *args: Any, **kwargs: Any) -> bool:
        return True

    async def record_many(self, events: Sequence[EventArgs]) -> None:
        return None

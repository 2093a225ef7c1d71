"""Reminder records: what a callback may and may not change."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from server.db.schema import reminders
from server.reminders import ReminderStore, parse_reminder_id
from server.tenants import Tenant, TenantStore


async def test_a_late_callback_of_an_earlier_attempt_does_not_revive_a_requeued_reminder(engine):
    tenant, _ = await TenantStore(engine).create(Tenant(slug="smile", name="Smile Dental"))
    store = ReminderStore(engine)
    r = await store.create(
        tenant, "(415) 555-0134", datetime.now(UTC) + timedelta(days=1), "Doctor B"
    )
    # The first attempt rang out; the dispatcher put it back to pending for a retry.
    async with engine.begin() as conn:
        await conn.execute(
            reminders.update().where(reminders.c.id == r.id).values(status="pending", attempts=1)
        )
    await store.record(
        r.id, "status", {"CallStatus": "ringing"}, call_sid="CAold", status="in_progress"
    )
    after = await store.get(r.id)
    assert (after.status, after.call_sid) == ("pending", None)
    assert [e.kind for e in await store.events(r.id)] == ["created", "status"]  # still kept
    # A fresh reminder (no attempt yet) still moves forward on its first callback.
    fresh = await store.create(
        tenant, "(415) 555-0135", datetime.now(UTC) + timedelta(days=1), "Doctor B"
    )
    await store.record(fresh.id, "status", {}, call_sid="CAnew", status="in_progress")
    moved = await store.get(fresh.id)
    assert (moved.status, moved.call_sid) == ("in_progress", "CAnew")
    async with engine.connect() as conn:
        n = (await conn.execute(sa.select(sa.func.count()).select_from(reminders))).scalar_one()
    assert n == 2


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("1", 1),
        ("0042", 42),
        (str(2**31 - 1), 2**31 - 1),
        (str(2**31), None),  # past PostgreSQL's 32-bit ids
        ("0", None),
        ("", None),
        (None, None),
        ("-3", None),
        ("1_0", None),  # int() would take it
        (" 7", None),
        ("٣", None),  # a digit, but not ASCII
        ("abc", None),
    ],
)
def test_a_reminder_id_is_plain_digits_within_32_bits(text: str | None, want: int | None) -> None:
    assert parse_reminder_id(text) == want

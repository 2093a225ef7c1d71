"""Prepared answers: planned and rendered when the call is dialed, played by the call URL."""

from __future__ import annotations

import time
from dataclasses import replace
from datetime import timedelta

import pytest
import sqlalchemy as sa

import server.calls.answers
from server.calls.webhooks import preparer
from server.db.schema import prepared_answers
from tests.support.server import STITCHED, MakeEnv

RECORDED = "Hello, hello. Your {appointment:time} is at {appointment:time}. Goodbye."


def no_planning(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("planning on the answer path")

    monkeypatch.setattr(server.calls.answers, "build_plan", broken)


@pytest.mark.parametrize("skip_to_beep", [False, True])
async def test_the_call_url_plays_what_was_prepared_when_it_was_dialed(
    make_env: MakeEnv, monkeypatch: pytest.MonkeyPatch, skip_to_beep: bool
) -> None:
    tenant = replace(STITCHED, template_human=RECORDED, template_voicemail=RECORDED)
    env = await make_env(tenant=replace(tenant, skip_to_beep=skip_to_beep))
    reminder = await env.reminder()
    expected = {by: await env.settled(reminder.id, by) for by in ("human", "machine_end_beep")}
    if skip_to_beep:
        expected["unknown"] = await env.settled(reminder.id, "unknown")
        expected["machine_start"] = await env.settled(reminder.id, "machine_start")
    await preparer(env.app)(reminder.id)
    # No planning, no rendering on the answer path now: the same bytes come from the row.
    no_planning(monkeypatch)
    for by, doc in expected.items():
        started = time.monotonic()
        assert await env.answer(reminder.id, by) == doc, by
        assert time.monotonic() - started < 1.0


async def test_answers_prepared_for_another_day_are_not_played(
    make_env: MakeEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = await make_env(tenant=replace(STITCHED, template_human=RECORDED))
    reminder = await env.reminder()
    await preparer(env.app)(reminder.id)
    async with env.runtime.engine.begin() as conn:
        day = (await conn.execute(sa.select(prepared_answers.c.prepared_for))).scalar_one()
        await conn.execute(sa.update(prepared_answers).values(prepared_for=day - timedelta(1)))
    # Built live (here: planning fails, so the emergency <Say>), not yesterday's words.
    no_planning(monkeypatch)
    doc = await env.answer(reminder.id)
    assert "<Play>" not in doc and "<Say" in doc


async def test_preparing_again_replaces_the_answers(make_env: MakeEnv) -> None:
    env = await make_env(tenant=replace(STITCHED, template_human=RECORDED))
    reminder = await env.reminder()
    prepare = preparer(env.app)
    await prepare(reminder.id)
    await env.set_tenant(template_human="Goodbye.")
    await prepare(reminder.id)
    doc = await env.answer(reminder.id)
    async with env.runtime.engine.connect() as conn:
        rows = (await conn.execute(sa.select(prepared_answers))).all()
    assert len(rows) == 1
    assert doc.count("/sentences/") == 2 * 1  # "Goodbye." once a pass, two passes

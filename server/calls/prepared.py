"""Prepared answers: a call's TwiML planned and rendered when the dispatcher dials it.

The dispatcher calls the ``Preparer`` for a reminder right before it asks Twilio to place the
call: the person's answer (message and menu) and the machine's (the voicemail message), with
and without the skip-to-beep tone when the tenant uses one, each built by the same code as a
live answer (server/calls/answers.py) and with every stitched sentence rendered and stored.
The answer webhook then reads them with the reminder in one query and writes no plan and no
audio; it builds the answer live only when none was prepared, or when it was prepared for
another day (a date said as "tomorrow" is only right on the day it was planned for).
A retry on a later day is prepared again.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import date

from sqlalchemy.ext.asyncio import AsyncEngine

from server.calls.answers import Answerer, Call
from server.calls.delivery import CallAudio
from server.calls.flow import Action, Answered, CallState, step
from server.calls.messages import local_today
from server.calls.phrases import keypress_config
from server.calls.voices import VoiceCache
from server.db.schema import prepared_answers
from server.reminders import Prepared, ReminderStore
from server.runtime import Runtime
from voicebank.sql import dialect_insert, utcnow

log = logging.getLogger("voiceprompt.prepared")

# What a webhook may be asked first, by the AnsweredBy Twilio can send: a person (or AMD off),
# and a machine after its greeting (DetectMessageEnd) or during it (Enable).
_ANSWERED_BY = ("human", "machine_end_beep", "machine_start")


def answer_key(action: Action, tone: bool) -> str:
    return f"{action.value}{'+tone' if tone else ''}"


@dataclass(frozen=True)
class PreparedAnswer:
    twiml: str
    transcript: str  # the message's words, for the emergency <Say> of a later failing turn
    passes: int


def usable(prepared: Prepared | None, today: date) -> dict[str, PreparedAnswer]:
    """The prepared answers that may be played today (none: build the answer live)."""
    if prepared is None or prepared.prepared_for != today:
        return {}
    try:
        raw = json.loads(prepared.answers)
        return {
            k: PreparedAnswer(v["twiml"], v["transcript"], int(v["passes"])) for k, v in raw.items()
        }
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        log.error("unreadable prepared answers (%r); answering live", exc)
        return {}


class Preparer:
    """Prepares and stores the answers of one reminder's call (see the module docstring)."""

    def __init__(
        self,
        engine: AsyncEngine,
        reminders: ReminderStore,
        voices: VoiceCache,
        audio: CallAudio,
        public_url: str,
    ) -> None:
        self.engine = engine
        self.reminders = reminders
        self.voices = voices
        self.audio = audio
        self.public_url = public_url

    @classmethod
    def for_runtime(cls, rt: Runtime, reminders: ReminderStore) -> Preparer:
        """A preparer with caches of its own (a worker process without the web app)."""
        audio = CallAudio(rt)
        return cls(rt.engine, reminders, VoiceCache(rt.catalogue), audio, rt.settings.public_url)

    async def __call__(self, reminder_id: int) -> None:
        reminder, tenant, _ = await self.reminders.get_for_call(reminder_id)
        view = await self.voices.get(tenant.voice, tenant.slug)
        call = Call(
            reminder.id, tenant, reminder.appointment_at, reminder.provider, view, reminder.values
        )
        now = utcnow()
        answerer = Answerer(self.public_url, delivery=self.audio.patient(), now=lambda: now)
        answers: dict[str, dict[str, object]] = {}
        for by in _ANSWERED_BY:
            result = step(keypress_config(tenant), CallState(), Answered(by))
            for tone in (False, True) if tenant.skip_to_beep else (False,):
                key = answer_key(result.action, tone)
                if key in answers:
                    continue
                answer = await answerer.answer(call, result, tone=tone)
                words = answer.message.transcript if answer.message else ""
                answers[key] = {"twiml": answer.twiml, "transcript": words, "passes": answer.passes}
        await self._store(reminder_id, local_today(tenant, now), json.dumps(answers))

    async def _store(self, reminder_id: int, day: date, answers: str) -> None:
        async with self.engine.begin() as conn:
            insert = dialect_insert(conn.dialect.name == "postgresql")
            row = {
                "reminder_id": reminder_id,
                "prepared_for": day,
                "answers": answers,
                "created_at": utcnow(),
            }
            stmt = insert(prepared_answers).values(row)
            await conn.execute(
                stmt.on_conflict_do_update(
                    index_elements=[prepared_answers.c.reminder_id],
                    set_={c: stmt.excluded[c] for c in ("prepared_for", "answers", "created_at")},
                )
            )

"""What a call plays at one step of its flow, as TwiML: the one place that builds it.

The webhooks answer with it, and the preview plays the very same document (server/calls/
playback.py), so what a business hears in the preview is what its callee hears. For a step it
plans the words (the tenant's template or fixed phrases, the voice's clips), speaks clips the
guard says cannot be fetched, lets the fallback voice say a whole sentence that is not wholly
recorded (``fallback=sentence``), replaces each recorded sentence with its stitched file
(``delivery=stitched``), and writes the view.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from prompts.models import ClipSegment, Plan
from prompts.planner import plan_message
from server.calls import twiml
from server.calls.flow import Action, CallState, Step
from server.calls.messages import (
    MIN_VOICEMAIL_LOOPS,
    MessageRequest,
    MessageVariant,
    build_plan,
    local_today,
)
from server.calls.phrases import ENDINGS, SORRY, menu_text
from server.calls.voices import VoiceView, speak_instead
from server.tenants import Tenant
from voicebank.sql import utcnow

log = logging.getLogger("voiceprompt.webhooks")


@dataclass(frozen=True)
class Call:
    """Who is called about what: a stored reminder, or a preview's choice (``reminder_id``
    "preview": its Gather URLs lead nowhere, and nothing is recorded for it)."""

    reminder_id: int | str
    tenant: Tenant
    appointment_at: datetime
    provider: str | None
    view: VoiceView
    values: Mapping[str, Any] = field(default_factory=dict)


def greeting_may_be_playing(answered_by: str | None, result: Step) -> bool:
    """Whether a skip-to-beep tone can still help: AMD off, undecided, or a machine mid-greeting.

    Not after ``machine_end_*`` (the box records already; "#" ends the recording on some
    carriers) and not for a definite person.
    """
    return result.greeting_playing or (answered_by or "unknown").strip().lower() == "unknown"


@dataclass(frozen=True)
class Answer:
    twiml: str
    # The message the callee hears at this step (None for a step without one), and how often
    # the emergency <Say> must repeat it if a later turn of the call fails.
    message: Plan | None = None
    passes: int = 1


class Guard(Protocol):
    async def unavailable(self, clip_ids: Any) -> set[str]: ...

    def reason(self, clip_id: str) -> str: ...


class Delivery(Protocol):
    async def deliver(self, plan: Plan, tenant: Tenant) -> Plan: ...


Alert = Callable[[int | str, dict[str, Any]], None]


def _no_alert(rid: int | str, detail: dict[str, Any]) -> None:
    return None


@dataclass
class Answerer:
    """Builds the TwiML of a call's step (see the module docstring)."""

    public_url: str
    guard: Guard | None = None
    delivery: Delivery | None = None  # None: every tenant is played clip by clip
    alert: Alert = _no_alert  # records "a clip is unavailable" on the reminder
    now: Callable[[], datetime] = utcnow

    def options(
        self, call: Call, state: CallState | None = None, *, skip_to_beep: bool = False
    ) -> twiml.ViewOptions:
        return twiml.ViewOptions.for_reminder(
            call.reminder_id,
            prefix=self.public_url,
            query=state.as_params() if state else None,
            language=call.tenant.language,
            voice=call.tenant.say_voice,
            skip_to_beep=skip_to_beep,
            skip_digit=call.tenant.beep_digit,
        )

    async def answer(self, call: Call, result: Step, *, tone: bool = False) -> Answer:
        """The TwiML for one call-flow step; ``tone`` starts it with the skip-to-beep DTMF."""
        a = result.action
        if a is Action.PLAY_VOICEMAIL_AND_HANG_UP:
            message = await self.message(call, "voicemail")
            opts = self.options(call, skip_to_beep=tone)
            return Answer(twiml.voicemail_twiml(message, opts), message, MIN_VOICEMAIL_LOOPS)
        if a is Action.PLAY_MESSAGE_WITH_MENU:
            menu = await self.phrase(call, menu_text(call.tenant))
            message = await self.message(call, "human")
            opts = self.options(call, result.state, skip_to_beep=tone)
            return Answer(twiml.human_twiml(message, menu, opts), message)
        if a is Action.SORRY_AND_MENU:
            menu = await self.phrase(call, menu_text(call.tenant))
            sorry = await self.phrase(call, SORRY)
            return Answer(twiml.sorry_and_menu(sorry, menu, self.options(call, result.state)))
        if a in ENDINGS:
            ending = await self.phrase(call, ENDINGS[a])
            return Answer(twiml.say_and_hangup(ending, self.options(call)))
        return Answer(twiml.hangup_twiml())

    async def message(self, call: Call, variant: MessageVariant) -> Plan:
        """The tenant's reminder message, as the call plays it."""
        req = MessageRequest(
            call.tenant, call.appointment_at, call.provider, variant, extra=call.values
        )
        return await self._played(call, build_plan(req, call.view.index, now=self.now()))

    async def phrase(self, call: Call, text: str) -> Plan:
        """Fixed words (menu, thanks) in the tenant's voice where recorded."""
        plan = plan_message(
            text.replace("{", "{{").replace("}", "}}"),
            {},
            call.view.index,
            today=local_today(call.tenant, self.now()),
            loops=1,
            fallback=call.tenant.fallback,
        )
        return await self._played(call, plan)

    async def _played(self, call: Call, plan: Plan) -> Plan:
        plan = await self._guarded(call, plan)
        if self.delivery is None:
            return plan
        return await self.delivery.deliver(plan, call.tenant)

    async def _guarded(self, call: Call, plan: Plan) -> Plan:
        """Speak clips that cannot be fetched (the clip guard: latest checks, fresh ones when
        stale), and record an alert on the reminder."""
        if self.guard is None:
            return plan
        bad_ids = await self.guard.unavailable(
            s.clip_id for s in plan.segments if isinstance(s, ClipSegment)
        )
        if not bad_ids:
            return plan
        bad = {
            s.clip_id: s
            for s in plan.segments
            if isinstance(s, ClipSegment) and s.clip_id in bad_ids
        }
        for seg in bad.values():
            log.error(
                "clip %s (%r) is unavailable; reminder %s hears <Say> instead",
                seg.clip_id,
                seg.text,
                call.reminder_id,
            )
        self.alert(
            call.reminder_id,
            {
                "reason": "clip unavailable",
                "clips": [
                    {"clip_id": s.clip_id, "text": s.text, "why": self.guard.reason(s.clip_id)}
                    for s in bad.values()
                ],
            },
        )
        return speak_instead(plan, set(bad))

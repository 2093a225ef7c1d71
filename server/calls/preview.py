"""Previews: the call itself, before any phone rings.

``preview_call`` asks the answerer (server/calls/answers.py) for the TwiML the call URL would
answer for a person or a machine, under the tenant's AMD mode and skip-to-beep setting, and
plays that document (server/calls/playback.py) from our own storage: the preview is the call,
menu, pauses and fallback sentences included, and its stated length is the decoded audio's.
``plan_json`` is the documented JSON shape of a plan (CLI, API, console).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from prompts.models import ClipSegment, PauseSegment, Plan, SaySegment
from server.calls.answers import Answer, Answerer, Call, greeting_may_be_playing
from server.calls.delivery import SENTENCE_ID, CallAudio
from server.calls.flow import Answered, CallState, step
from server.calls.messages import MessageVariant
from server.calls.phrases import keypress_config
from server.calls.playback import Playback
from server.tenants import Tenant
from voicebank.sql import utcnow

# What Twilio's AnsweredBy says for a machine under each AMD mode (None: AMD off, no answer).
MACHINE_ANSWER = {
    "detect-message-end": "machine_end_beep",
    "enable": "machine_start",
    "off": None,
}


def answered_by(tenant: Tenant, variant: MessageVariant) -> str | None:
    return "human" if variant == "human" else MACHINE_ANSWER.get(tenant.amd_mode)


@dataclass(frozen=True)
class Preview:
    answer: Answer  # the TwiML and the message the callee hears
    playback: Playback | None  # what the line carries (None: not played)
    note: str  # for whom the answer is, in a sentence

    @property
    def mp3(self) -> bytes:
        if self.playback is None:
            raise ValueError("this preview was not played")
        return CallAudio.mp3(self.playback)


def note_for(tenant: Tenant, variant: MessageVariant, tone: bool) -> str:
    by = answered_by(tenant, variant)
    if variant == "human":
        note = "For a person (AnsweredBy=human)."
    elif by is None:
        note = (
            "AMD is off, so Twilio cannot tell a machine from a person: a machine hears the "
            "person's message and menu below, not the voicemail message."
        )
    else:
        note = f"For an answering machine (AnsweredBy={by}, AMD {tenant.amd_mode})."
    if tone:
        note += f" Starts with the skip-to-beep key {tenant.beep_digit}."
    return note


async def preview_call(
    audio: CallAudio,
    public_url: str,
    call: Call,
    variant: MessageVariant,
    *,
    now: Callable[[], datetime] = utcnow,
    play: bool = True,
) -> Preview:
    """The answer to the call URL for ``variant`` and its audio (see the module docstring);
    ``now`` is when the call happens (for "today" and "tomorrow"); ``play=False`` skips the
    audio. Raises PromptError for a template that cannot be planned, ValueError for settings
    that make no TwiML (e.g. a skip key Twilio cannot send)."""
    by = answered_by(call.tenant, variant)
    result = step(keypress_config(call.tenant), CallState(), Answered(by))
    tone = call.tenant.skip_to_beep and greeting_may_be_playing(by, result)
    # No guard: the preview plays what storage holds; sentences are waited for, not skipped.
    answerer = Answerer(public_url, delivery=audio.patient(), now=now)
    answer = await answerer.answer(call, result, tone=tone)
    playback = await audio.play(answer.twiml) if play else None
    return Preview(answer, playback, note_for(call.tenant, variant, tone))


def plan_json(plan: Plan) -> dict[str, Any]:
    """The documented JSON shape of a plan (`voiceprompt preview --json`, the API, the console).

    A stitched sentence is one segment of kind "sentence" (its words in one file, the pause after
    it inside); "say" segments are the fallback voice."""
    segments: list[dict[str, Any]] = []
    for seg in plan.segments:
        if isinstance(seg, ClipSegment):
            stitched = seg.clip_id.startswith(SENTENCE_ID)
            segments.append(
                {
                    "kind": "sentence" if stitched else "clip",
                    "text": seg.text,
                    "clip_id": None if stitched else seg.clip_id,
                    "url": seg.url,
                    "ms": seg.duration_ms,
                    "variant": seg.variant.value,
                }
            )
        elif isinstance(seg, SaySegment):
            segments.append(
                {
                    "kind": "say",
                    "text": seg.text,
                    "clip_id": None,
                    "url": None,
                    "ms": seg.duration_ms,
                }
            )
        elif isinstance(seg, PauseSegment):
            segments.append(
                {"kind": "pause", "text": "", "clip_id": None, "url": None, "ms": seg.ms}
            )
    return {
        "transcript": plan.transcript,
        "segments": segments,
        "missing": list(plan.missing),
        "spoken_by_fallback": [
            {"sentence": s.text, "record": list(s.missing)} for s in plan.spoken
        ],
        "duration_ms": plan.duration_ms,
        "loops": plan.loops,
    }

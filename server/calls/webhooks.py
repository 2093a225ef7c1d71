"""Twilio's webhooks: the call URL, the Gather action, status and AMD callbacks.

Rules of the house: every request is signature-checked; every answer is valid TwiML within a
second, whatever fails (a missing clip becomes <Say> of its words, anything worse <Say> of the
whole message or an apology); every failure is logged and recorded on the reminder.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from aiohttp import web
from multidict import MultiDict, MultiDictProxy

from server.calls import twiml
from server.calls.answers import Answerer, Call, greeting_may_be_playing
from server.calls.delivery import CallAudio
from server.calls.flow import (
    DECISIVE,
    Answered,
    CallState,
    NoInput,
    Outcome,
    Pressed,
    Step,
    outcome_for_status,
    step,
)
from server.calls.messages import local_today
from server.calls.outbox import Outbox, running
from server.calls.phrases import keypress_config
from server.calls.prepared import Preparer, answer_key, usable
from server.calls.signature import SIGNATURE_HEADER, expected_url, is_valid
from server.calls.voices import VoiceCache
from server.errors import NotFound
from server.keys import (
    answerer_key,
    audio_key,
    guard_key,
    outbox_key,
    reminders_key,
    runtime_key,
    spoken_key,
    voices_key,
)
from server.reminders import Prepared, Reminder, parse_reminder_id
from server.settings import Settings
from voicebank.sql import utcnow

log = logging.getLogger("voiceprompt.webhooks")
routes = web.RouteTableDef()

# The database gets this long; the rest of the second is for planning and TwiML.
DB_BUDGET_S = 0.6

XML = "text/xml"
DECISIVE_STATUSES = frozenset(o.value for o in DECISIVE)
OUTCOME_STATUSES = frozenset(o.value for o in Outcome)


def _twiml(body: str) -> web.Response:
    return web.Response(text=body, content_type=XML, charset="utf-8")


async def _form(request: web.Request) -> MultiDictProxy[str]:
    """The POST parameters, after checking Twilio's signature (403 if it does not match)."""
    form = await request.post()
    params = MultiDictProxy(MultiDict((k, v) for k, v in form.items() if isinstance(v, str)))
    settings = request.app[runtime_key].settings
    if not settings.validate_signatures:
        return params
    url = expected_url(settings.public_url, request.raw_path)
    token = settings.twilio_auth_token or ""
    if not is_valid(token, url, params, request.headers.get(SIGNATURE_HEADER)):
        log.warning(
            "refused %s %s: %s",
            request.method,
            request.raw_path,
            "TWILIO_AUTH_TOKEN is not set" if not token else "bad or missing signature",
        )
        raise web.HTTPForbidden(text="invalid Twilio signature")
    return params


def _reminder_id(request: web.Request) -> int:
    rid = parse_reminder_id(request.match_info["id"])
    if rid is None:
        raise web.HTTPNotFound()
    return rid


async def _load(request: web.Request, rid: int) -> tuple[Call, Prepared | None]:
    r, tenant, prepared = await request.app[reminders_key].get_for_call(rid)
    view = await request.app[voices_key].get(tenant.voice, tenant.slug)
    return Call(r.id, tenant, r.appointment_at, r.provider, view, r.values), prepared


def _remember(request: web.Request, call: Call, transcript: str, passes: int) -> None:
    """The message's words, for the emergency <Say> if a later turn of this call fails."""
    cache = request.app[spoken_key]
    rid = int(call.reminder_id)
    cache[rid] = (transcript, call.tenant.language, call.tenant.say_voice, passes)
    cache.move_to_end(rid)
    while len(cache) > 10_000:
        cache.popitem(last=False)


async def _answer_for(request: web.Request, call: Call, result: Step, *, tone: bool = False) -> str:
    """The TwiML for one call-flow step; remembers the message's words for the fallback."""
    answer = await request.app[answerer_key].answer(call, result, tone=tone)
    if answer.message is not None:
        _remember(request, call, answer.message.transcript, answer.passes)
    return answer.twiml


def _fallback(
    request: web.Request, rid: int, exc: BaseException, params: MultiDictProxy[str]
) -> web.Response:
    """Something failed: say the last words we built for this reminder, or apologise."""
    log.error(
        "webhook %s for reminder %s failed: %r",
        request.path,
        rid,
        exc,
        exc_info=not isinstance(exc, TimeoutError),
    )
    detail = {"path": request.path, "error": f"{type(exc).__name__}: {exc}"}
    if "Digits" in params:
        # The callee's key must not be lost with the answer: it can be replayed from here.
        detail.update(digits=params["Digits"], query=request.query_string)
    request.app[outbox_key].add(rid, "error", detail, call_sid=params.get("CallSid") or None)
    spoken = request.app[spoken_key].get(rid)
    if spoken is None:
        return _twiml(twiml.fallback_twiml(""))
    text, language, voice, passes = spoken
    return _twiml(twiml.fallback_twiml(text, language, voice, passes=passes))


Respond = Callable[[], Awaitable[web.Response]]


async def _safely(
    request: web.Request, rid: int, params: MultiDictProxy[str], respond: Respond
) -> web.Response:
    try:
        async with asyncio.timeout(0.9):
            return await respond()
    except web.HTTPException:
        raise
    except Exception as exc:  # noqa: BLE001 - a callee must never hear an application error
        return _fallback(request, rid, exc, params)


@routes.post("/twilio/voice/{id}")
async def voice(request: web.Request) -> web.Response:
    """The call URL: Twilio asks what to play once the callee (or a machine) picks up."""
    params = await _form(request)
    rid = _reminder_id(request)
    answered_by = params.get("AnsweredBy")

    async def respond() -> web.Response:
        async with asyncio.timeout(DB_BUDGET_S):
            call, prepared = await _load(request, rid)
        result = step(keypress_config(call.tenant), CallState(), Answered(answered_by))
        tone = call.tenant.skip_to_beep and greeting_may_be_playing(answered_by, result)
        today = local_today(call.tenant, utcnow())
        ready = usable(prepared, today).get(answer_key(result.action, tone))
        if ready is not None:  # planned and rendered when the call was dialed
            _remember(request, call, ready.transcript, ready.passes)
            body = ready.twiml
        else:
            body = await _answer_for(request, call, result, tone=tone)
        sid = params.get("CallSid")
        request.app[outbox_key].add(
            rid,
            "answered",
            {"answered_by": answered_by, "action": result.action.value},
            call_sid=sid,
            # A call is answered once: a repeated request for the call URL is not a new event.
            dedupe_key=f"answered:{sid}:{rid}" if sid else None,
            answered_by=answered_by,
            status=result.outcome.value if result.outcome else "in_progress",
            outcome=result.outcome.value if result.outcome else None,
            keep_decisive=DECISIVE_STATUSES,
        )
        return _twiml(body)

    return await _safely(request, rid, params, respond)


@routes.post("/twilio/gather/{id}")
async def gather(request: web.Request) -> web.Response:
    """The Gather action (a key was pressed) and its no-input Redirect."""
    params = await _form(request)
    rid = _reminder_id(request)
    state = CallState.from_params(request.query)
    event = NoInput() if request.query.get("noinput") else Pressed(params.get("Digits", ""))

    async def respond() -> web.Response:
        async with asyncio.timeout(DB_BUDGET_S):
            call, _ = await _load(request, rid)
        result = step(keypress_config(call.tenant), state, event)
        body = await _answer_for(request, call, result)
        detail = {
            "digits": getattr(event, "digits", None),
            "action": result.action.value,
            "state": result.state.as_params(),
        }
        sid = params.get("CallSid")
        # Twilio may repeat a webhook: the same call, state and keys are one event.
        dedupe = f"gather:{sid}:{rid}:{sorted(request.query.items())}:{detail['digits']}"
        options: dict[str, Any] = {
            "call_sid": sid,
            "dedupe_key": dedupe if sid else None,
            "keep_decisive": DECISIVE_STATUSES,
        }
        if result.outcome is not None:
            options.update(status=result.outcome.value, outcome=result.outcome.value)
        kind = "keypress" if isinstance(event, Pressed) else "no_input"
        if result.outcome in DECISIVE:
            # The callee's decision is written before we thank them; if the database is down
            # it waits in the outbox instead of being lost.
            try:
                async with asyncio.timeout(DB_BUDGET_S / 2):
                    await request.app[reminders_key].record(rid, kind, detail, **options)
            except Exception as exc:  # noqa: BLE001
                log.warning("keypress on reminder %s queued: %r", rid, exc)
                request.app[outbox_key].add(rid, kind, detail, **options)
        else:
            request.app[outbox_key].add(rid, kind, detail, **options)
        return _twiml(body)

    return await _safely(request, rid, params, respond)


async def _reminder_for_callback(request: web.Request, params: MultiDictProxy[str]) -> Reminder:
    store = request.app[reminders_key]
    rid = parse_reminder_id(request.query.get("reminder"))
    if rid is not None:
        try:
            return await store.get(rid)
        except NotFound:
            raise web.HTTPNotFound(text=f"no reminder {rid}") from None
    sid = params.get("CallSid")
    found = await store.by_call_sid(sid) if sid else None
    if found is None:
        raise web.HTTPNotFound(text=f"no reminder for call {sid!r}")
    return found


Store = Callable[[], Awaitable[None]]


async def _callback(
    request: web.Request, store: Store, queue: Callable[[int], None]
) -> web.Response:
    """Store a callback within the database budget. If the database fails, queue the event in
    the outbox when the URL names the reminder, and answer all the same: Twilio does not retry,
    and an error would only fill its debugger."""
    try:
        async with asyncio.timeout(DB_BUDGET_S):
            await store()
    except web.HTTPException:
        raise
    except Exception as exc:  # noqa: BLE001 - the database is down or slow
        rid = parse_reminder_id(request.query.get("reminder"))
        if rid is not None:
            log.warning("%s for reminder %s queued: %r", request.path, rid, exc)
            queue(rid)
        else:
            log.error("%s lost (no reminder in the URL): %r", request.path_qs, exc)
    return _twiml(twiml.XML_DECLARATION + "<Response/>")


@routes.post("/twilio/status")
async def status(request: web.Request) -> web.Response:
    """Call progress callbacks; Twilio retries, so each is stored once."""
    params = await _form(request)
    sid = params.get("CallSid", "")
    call_status = params.get("CallStatus", "").lower()
    seq = params.get("SequenceNumber", "")
    detail = {
        k: params[k]
        for k in (
            "CallStatus",
            "AnsweredBy",
            "CallDuration",
            "SequenceNumber",
            "Timestamp",
            "ErrorCode",
        )
        if k in params
    }
    base: dict[str, Any] = {
        "call_sid": sid or None,
        "dedupe_key": f"status:{sid}:{call_status}:{seq}",
    }

    async def store() -> None:
        reminder = await _reminder_for_callback(request, params)
        answered_by = params.get("AnsweredBy") or reminder.answered_by
        recorded = Outcome(reminder.outcome) if reminder.outcome in set(Outcome) else None
        outcome = outcome_for_status(call_status, answered_by, recorded)
        options = {**base, "keep_decisive": DECISIVE_STATUSES}
        if outcome is not None:
            options.update(status=outcome.value, outcome=outcome.value)
        elif reminder.status in ("pending", "dialing"):
            # Progress (initiated, ringing, in-progress) only moves a reminder forward, so a late
            # "ringing" after "completed" changes nothing.
            options["status"] = "in_progress"
        await request.app[reminders_key].record(reminder.id, "status", detail, **options)

    def queue(rid: int) -> None:
        # Written later without reading the reminder now: every outcome already stored stands
        # (as outcome_for_status keeps a recorded one), only a call still in progress moves on.
        outcome = outcome_for_status(call_status, params.get("AnsweredBy"))
        options = {**base, "keep_decisive": OUTCOME_STATUSES}
        if outcome is not None:
            options.update(status=outcome.value, outcome=outcome.value)
        else:
            options["status"] = "in_progress"
        request.app[outbox_key].add(rid, "status", detail, **options)

    return await _callback(request, store, queue)


@routes.post("/twilio/amd")
async def amd(request: web.Request) -> web.Response:
    """Asynchronous answering-machine detection results."""
    params = await _form(request)
    sid = params.get("CallSid", "")
    detail = {k: params[k] for k in ("AnsweredBy", "MachineDetectionDuration") if k in params}
    options: dict[str, Any] = {
        "call_sid": sid or None,
        "dedupe_key": f"amd:{sid}",
        "answered_by": params.get("AnsweredBy"),
    }

    async def store() -> None:
        reminder = await _reminder_for_callback(request, params)
        await request.app[reminders_key].record(reminder.id, "amd", detail, **options)

    def queue(rid: int) -> None:
        request.app[outbox_key].add(rid, "amd", detail, **options)

    return await _callback(request, store, queue)


def context(settings: Settings) -> Callable[[web.Application], AsyncIterator[None]]:
    """The voice cache, the answerer, the fallback words and the outbox, for
    ``app.cleanup_ctx`` after the runtime's and the clip guard's contexts."""
    if not settings.validate_signatures:
        log.warning("Twilio signature checking is OFF (development only): anyone can drive calls")

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        rt = app[runtime_key]
        app[voices_key] = VoiceCache(rt.catalogue)
        app[spoken_key] = OrderedDict()
        outbox = app[outbox_key] = Outbox(app[reminders_key])

        def alert(rid: int | str, detail: dict[str, Any]) -> None:
            outbox.add(int(rid), "alert", detail)

        audio = app[audio_key] = CallAudio(rt)
        app[answerer_key] = Answerer(
            rt.settings.public_url, guard=app[guard_key], delivery=audio, alert=alert
        )
        async with running(outbox):
            yield

    return ctx


def preparer(app: web.Application) -> Preparer:
    """The dispatcher's hook that prepares a reminder's answers before it is dialed (uses the
    app's voice cache and clip audio: call after this module's context is open)."""
    rt = app[runtime_key]
    return Preparer(
        rt.engine, app[reminders_key], app[voices_key], app[audio_key], rt.settings.public_url
    )

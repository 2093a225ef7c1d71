"""TwiML views: a Plan (clip URLs, pauses, stop-gap text) in, a ``text/xml`` string out.

Written with ``server.calls.twiml_doc`` (the same bytes as twilio's ``VoiceResponse`` helper, in a
fraction of its time), except ``fallback_twiml`` which is assembled by hand so that it cannot
fail. Every string starts exactly with ``XML_DECLARATION``.

Decisions, with the reasons:

* Pauses: ``<Pause length>`` only takes whole seconds >= 1. Clips are trimmed tight and every
  ``<Play>`` already costs a fetch/decoder gap, so planned pauses under ``MIN_PAUSE_MS`` (700 ms)
  are dropped; longer ones round to the nearest second. Adjacent pauses are summed first.
* Loops: a ``<Play loop>`` repeats one file, not the sequence, so passes are written out.
* People get the menu after every pass of the message (inside one ``<Gather>``), so the first pass
  already tells them which key to press; machines get passes with no menu at all.
* Skip-to-beep: when ``opts.skip_to_beep`` is set, the view starts with ``<Play digits>`` (then a
  short settle pause) so a voicemail system skips its greeting. The handler decides when: only
  while a greeting may still be playing (AMD off, "unknown", or "Enable"'s ``machine_start``).
  After ``machine_end_*`` the box is already recording, and a ``#`` there ends the recording on
  several carriers; after a definite ``human`` the tone would only puzzle a person.
* The skip key differs per carrier (user reports from 2008 and vendor manuals: AT&T and T-Mobile
  ``#``, Verizon ``*``, Sprint and Avaya PBXs ``1``; a wrong key can open the owner's PIN prompt),
  so it is a per-tenant setting (``tenants.beep_digit``, up to 4 of ``0-9 A-D # * w W``).
  The default is ``#``: the key most of those systems honour, and ``*`` is avoided because it is
  the usual "log in to this mailbox" key.
* Size: a document over ``MAX_TWIML_BYTES`` is error 11750, so each view has shorter forms (one
  pass, then ``<Say>`` of the transcript, then the fallback) and answers the first that fits.
  A machine's forms never drop below ``MIN_VOICEMAIL_LOOPS`` passes (it may start recording
  late): ``loops`` passes of the clips, two passes, the text spoken ``loops`` then two times, and
  the fallback spoken twice. The recordings are given up before the second pass is.
* Tenant settings (voice, language) and URLs are cleaned of XML-illegal characters like texts.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

from prompts.models import ClipSegment, PauseSegment, Plan, SaySegment, Segment
from server.calls import twiml_doc
from server.calls.messages import MIN_VOICEMAIL_LOOPS
from server.calls.twiml_doc import XML_DECLARATION, Element, Response

__all__ = [
    "DEFAULT_LANGUAGE",
    "DEFAULT_SKIP_DIGIT",
    "DEFAULT_VOICE",
    "MAX_TWIML_BYTES",
    "MIN_PAUSE_MS",
    "SAY_MAX_CHARS",
    "XML_DECLARATION",
    "ViewOptions",
    "fallback_twiml",
    "hangup_twiml",
    "human_twiml",
    "pause_seconds",
    "say_and_hangup",
    "sorry_and_menu",
    "voicemail_twiml",
]

# Twilio refuses documents over 64 kB (error 11750); stay a little under the round number.
MAX_TWIML_BYTES = 64_000
# Polly voices take at most 3000 characters per <Say> (basic 4096, Google 5000): the smallest wins.
SAY_MAX_CHARS = 3000
MIN_PAUSE_MS = 700
DEFAULT_SKIP_DIGIT = "#"
DEFAULT_LANGUAGE = "en-US"
DEFAULT_VOICE = "Polly.Joanna"
DEFAULT_APOLOGY = "We are sorry, we cannot play this message right now. Goodbye."

# Keys <Play digits> can send: DTMF plus w (half a second of silence) and W (one second).
_DIGITS_RE = re.compile(r"[0-9A-D#*wW]{1,4}")
# Characters XML 1.0 forbids even escaped; a stray control character would make the whole
# document unparseable (error 12100), so they are removed from every text and attribute.
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_LAST_RESORT = XML_DECLARATION + "<Response><Hangup/></Response>"

Prompt = Plan | str


@dataclass(frozen=True, slots=True)
class ViewOptions:
    """Everything a view needs besides the plans; ``for_reminder`` fills the URLs."""

    action_url: str = ""  # Gather action: Digits are POSTed here
    noinput_url: str = ""  # the Redirect after the Gather, reached only on a timeout
    language: str = DEFAULT_LANGUAGE
    voice: str | None = DEFAULT_VOICE
    skip_to_beep: bool = False
    skip_digit: str = DEFAULT_SKIP_DIGIT
    # Silence after the skip tone: the box answers it with its beep, and words spoken over the
    # beep are not recorded.
    skip_settle_s: int = 1
    gather_timeout_s: int = 5

    def __post_init__(self) -> None:
        if not _DIGITS_RE.fullmatch(self.skip_digit) or not self.skip_digit.strip("wW"):
            raise ValueError(f"skip_digit {self.skip_digit!r} is not a DTMF key (0-9, A-D, #, *)")
        if self.skip_settle_s < 0:
            raise ValueError("skip_settle_s must be >= 0")
        if self.gather_timeout_s < 1:
            raise ValueError("gather_timeout_s must be >= 1")

    @classmethod
    def for_reminder(
        cls,
        reminder_id: int | str,
        *,
        prefix: str = "",
        query: Mapping[str, str] | None = None,
        **options: Any,
    ) -> ViewOptions:
        """Options whose Gather posts to ``{prefix}/twilio/gather/{id}`` (plus ``query``).

        ``prefix`` is the public URL's path (or the whole public URL); relative URLs resolve
        against the document Twilio fetched, so a prefix is needed whenever the app sits below
        one behind a proxy.
        """
        base = f"{prefix.rstrip('/')}/twilio/gather/{quote(str(reminder_id), safe='')}"
        params = dict(query or {})
        action = f"{base}?{urlencode(params)}" if params else base
        noinput = f"{base}?{urlencode({**params, 'noinput': '1'})}"
        return cls(action_url=action, noinput_url=noinput, **options)


def pause_seconds(ms: int) -> int:
    """Whole seconds for a planned pause: 0 (drop it) under MIN_PAUSE_MS, else rounded, >= 1."""
    if ms < MIN_PAUSE_MS:
        return 0
    return max(1, (ms + 500) // 1000)


# --- verbs --------------------------------------------------------------------------------------
# Segments are first turned into a short list of verbs: adjacent pauses summed, adjacent texts
# joined (one TTS request, natural prosody), clips without a URL spoken as their text.


@dataclass(frozen=True, slots=True)
class _Play:
    url: str


@dataclass(frozen=True, slots=True)
class _Say:
    text: str


@dataclass(frozen=True, slots=True)
class _Pause:
    ms: int


_Verb = _Play | _Say | _Pause


def _verbs(segments: Iterable[Segment]) -> list[_Verb]:
    out: list[_Verb] = []
    segments = _said_together(segments)
    for seg in segments:
        item: _Verb
        if isinstance(seg, ClipSegment):
            # A clip nobody uploaded yet has no URL: its words are the stop-gap.
            item = _Play(seg.url) if seg.url else _Say(seg.text)
        elif isinstance(seg, SaySegment):
            item = _Say(seg.text)
        else:
            item = _Pause(seg.ms)
        last = out[-1] if out else None
        if isinstance(item, _Pause) and isinstance(last, _Pause):
            out[-1] = _Pause(last.ms + item.ms)
        elif isinstance(item, _Say) and isinstance(last, _Say):
            out[-1] = _Say(f"{last.text} {item.text}")
        else:
            out.append(item)
    return out


def _said_together(segments: Iterable[Segment]) -> list[Segment]:
    """Two spoken sentences with only a short pause between them (one <Pause> would drop) are one
    <Say>: the voice then pauses at the full stop itself, where two <Say>s would run together."""
    out: list[Segment] = []
    for seg in segments:
        if isinstance(seg, SaySegment) and len(out) >= 2:
            pause, before = out[-1], out[-2]
            if (
                isinstance(pause, PauseSegment)
                and isinstance(before, SaySegment)
                and pause_seconds(pause.ms) == 0
                and before.text.rstrip().endswith((".", "?", "!"))
            ):
                joined = SaySegment(
                    f"{before.text} {seg.text}", before.duration_ms + seg.duration_ms
                )
                out[-2:] = [joined]
                continue
        out.append(seg)
    return out


def _clean(text: str) -> str:
    return _NOT_XML.sub("", text)


def _say_chunks(text: str, limit: int = SAY_MAX_CHARS) -> list[str]:
    """Split text on spaces into pieces a single <Say> accepts."""
    words = " ".join(_clean(text).split())
    chunks: list[str] = []
    while len(words) > limit:
        cut = words.rfind(" ", 0, limit + 1)
        cut = cut if cut > 0 else limit
        chunks.append(words[:cut])
        words = words[cut:].lstrip()
    if words:
        chunks.append(words)
    return chunks


def _setting(value: str | None) -> str | None:
    """A tenant's voice or language as an attribute: cleaned; left out when nothing is left."""
    return (_clean(value) or None) if value else None


def _emit(target: Element, verbs: Iterable[_Verb], opts: ViewOptions) -> None:
    voice, language = _setting(opts.voice), _setting(opts.language)
    for verb in verbs:
        if isinstance(verb, _Play):
            target.play(_clean(verb.url))
        elif isinstance(verb, _Say):
            for chunk in _say_chunks(verb.text):
                target.say(chunk, voice=voice, language=language)
        else:
            seconds = pause_seconds(verb.ms)
            if seconds:
                target.pause(length=seconds)


def _passes(
    plan: Plan,
    after_each: tuple[Segment, ...] = (),
    body: tuple[Segment, ...] | None = None,
    loops: int | None = None,
) -> tuple[Segment, ...]:
    """``loops`` (default ``plan.loops``) passes, at least one, of ``body`` (default: the plan's
    segments), with the plan's loop pause between passes and ``after_each`` after every pass."""
    one = plan.segments if body is None else body
    out: list[Segment] = []
    for i in range(max(1, plan.loops if loops is None else loops)):
        if i:
            out.append(PauseSegment(plan.loop_pause_ms))
        out.extend(one)
        out.extend(after_each)
    return tuple(out)


def _segments(prompt: Prompt) -> tuple[Segment, ...]:
    if isinstance(prompt, str):
        return (SaySegment(prompt, 0),) if prompt.strip() else ()
    return _passes(prompt)


def _text(prompt: Prompt) -> str:
    """The words of one pass, for the <Say> fallback forms."""
    if isinstance(prompt, str):
        return prompt
    if prompt.transcript.strip():
        return prompt.transcript
    return " ".join(s.text for s in prompt.segments if not isinstance(s, PauseSegment))


def _say(text: str) -> tuple[Segment, ...]:
    return (SaySegment(text, 0),) if text.strip() else ()


# --- documents ----------------------------------------------------------------------------------


def _fits(doc: str) -> bool:
    return len(doc.encode("utf-8")) <= MAX_TWIML_BYTES


def _first_fitting(forms: Iterable[Callable[[], str]], fallback: Callable[[], str]) -> str:
    for form in forms:
        doc = form()
        if _fits(doc):
            return doc
    return fallback()


def _skip_tone(resp: Response, opts: ViewOptions) -> None:
    if opts.skip_to_beep:
        resp.play(digits=opts.skip_digit)
        if opts.skip_settle_s:
            resp.pause(length=opts.skip_settle_s)


def _ending(body: tuple[Segment, ...], opts: ViewOptions, *, tone: bool = False) -> str:
    resp = Response()
    if tone:
        _skip_tone(resp, opts)
    _emit(resp, _verbs(body), opts)
    resp.hangup()
    return str(resp)


def _gathering(body: tuple[Segment, ...], opts: ViewOptions, *, tone: bool = False) -> str:
    if not (opts.action_url and opts.noinput_url):
        raise ValueError("a menu view needs action_url and noinput_url (see for_reminder)")
    resp = Response()
    if tone:
        _skip_tone(resp, opts)
    # finishOnKey="" makes "#" an ordinary key: with the default "#", pressing it would end the
    # Gather with no digits, and a tenant that uses "#" in its menu would never see it.
    gather = resp.gather(
        {
            "input": "dtmf",
            "numDigits": 1,
            "action": _clean(opts.action_url),
            "method": "POST",
            "timeout": opts.gather_timeout_s,
            "finishOnKey": "",
        }
    )
    _emit(gather, _verbs(body), opts)
    # Reached only when the Gather times out: Twilio skips verbs after it once a key is pressed.
    resp.redirect(_clean(opts.noinput_url), method="POST")
    return str(resp)


def voicemail_twiml(plan: Plan, opts: ViewOptions) -> str:
    """For a machine: optional skip tone, the message ``plan.loops`` times but never fewer than
    ``MIN_VOICEMAIL_LOOPS``, then hang up. Every shorter form keeps that many passes."""
    text = _text(plan)
    loops = max(plan.loops, MIN_VOICEMAIL_LOOPS)
    counts = (loops, MIN_VOICEMAIL_LOOPS) if loops > MIN_VOICEMAIL_LOOPS else (loops,)

    def played(n: int) -> Callable[[], str]:
        return lambda: _ending(_passes(plan, loops=n), opts, tone=True)

    def spoken(n: int) -> Callable[[], str]:
        return lambda: _ending(_passes(plan, body=_say(text), loops=n), opts, tone=True)

    return _first_fitting(
        [*map(played, counts), *map(spoken, counts)],
        lambda: fallback_twiml(text, opts.language, opts.voice, passes=MIN_VOICEMAIL_LOOPS),
    )


def human_twiml(message: Plan, menu: Prompt, opts: ViewOptions) -> str:
    """For a person: one Gather holding each message pass followed by the menu, then the
    no-input Redirect. ``menu`` may be a Plan (recorded) or plain text (spoken)."""
    menu_once = _segments(menu) if isinstance(menu, str) else menu.segments
    text = f"{_text(message)} {_text(menu)}"
    return _first_fitting(
        [
            lambda: _gathering(_passes(message, menu_once), opts, tone=True),
            lambda: _gathering(message.segments + menu_once, opts, tone=True),
            lambda: _gathering(_say(text), opts, tone=True),
        ],
        lambda: fallback_twiml(_text(message), opts.language, opts.voice),
    )


def sorry_and_menu(sorry: Prompt, menu: Prompt, opts: ViewOptions) -> str:
    """After an invalid key: a short apology and the menu again, inside a new Gather."""
    text = f"{_text(sorry)} {_text(menu)}"
    return _first_fitting(
        [
            lambda: _gathering(_segments(sorry) + _segments(menu), opts),
            lambda: _gathering(_say(text), opts),
        ],
        lambda: fallback_twiml("", opts.language, opts.voice),
    )


def say_and_hangup(prompt: Prompt, opts: ViewOptions | None = None) -> str:
    """Thanks, goodbye or a confirmation (recorded Plan or text), then hang up."""
    opts = opts or ViewOptions()
    return _first_fitting(
        [
            lambda: _ending(_segments(prompt), opts),
            lambda: _ending(_say(_text(prompt)), opts),
        ],
        lambda: fallback_twiml(_text(prompt), opts.language, opts.voice),
    )


def hangup_twiml() -> str:
    resp = Response()
    resp.hangup()
    return str(resp)


# --- the emergency answer -----------------------------------------------------------------------

# Far below 64 kB even with every character escaped to "&amp;" (5 bytes) in UTF-8; shared by
# the passes when the message is said more than once.
_FALLBACK_MAX_CHARS = 9000


def fallback_twiml(
    text: str,
    language: str = DEFAULT_LANGUAGE,
    voice: str | None = None,
    apology: str = DEFAULT_APOLOGY,
    passes: int = 1,
) -> str:
    """``<Say>`` the message ``passes`` times (a second apart; the apology once when there is
    no message), then hang up. Never raises.

    Written without the helper so that nothing but string operations can go wrong. ``voice``
    defaults to Twilio's own: a Polly voice that does not fit ``language`` fails the <Say>.
    A document that would still be too big (absurd voice or language) is a bare hang-up.
    """
    try:
        passes = max(1, passes)
        words = " ".join(_clean(text).split())[: _FALLBACK_MAX_CHARS // passes]
        if not words:
            words, passes = apology, 1
        attrs = f' language="{_attr(language)}"' if language else ""
        attrs += f' voice="{_attr(voice)}"' if voice else ""
        says = "".join(f"<Say{attrs}>{twiml_doc.text(c)}</Say>" for c in _say_chunks(words))
        body = '<Pause length="1"/>'.join([says] * passes)
        doc = f"{XML_DECLARATION}<Response>{body}<Hangup/></Response>"
        return doc if _fits(doc) else _LAST_RESORT
    except Exception:  # the one place that must answer whatever happened
        return _LAST_RESORT


def _attr(value: str) -> str:
    return twiml_doc.attr(_clean(value))

"""How a call plays its words: stitched sentences, one voice per sentence, and the preview.

``CallAudio`` (one per app, shared by the webhooks and the console) owns the clip audio of the
service: the masters' decoded-PCM cache (voicebank.render.Renderer) and the sentence stitcher
(voicebank.stitch.Stitcher) over the configured storage.

``deliver(plan, tenant)`` turns the plan a call would play clip by clip into what it plays:

* ``fallback=sentence``: a sentence that is not wholly recorded (after the clip guard, too) is
  one ``<Say>`` of the whole sentence, never recorded words alternating with the fallback voice.
* ``delivery=stitched``: each wholly recorded sentence is one ClipSegment whose URL is its
  stitched MP3 (word gaps, commas and the pause after it inside the audio, where ``<Pause>``'s
  whole seconds cannot reach). A sentence whose file is not ready within ``budget_s`` (it is
  being rendered for the first time) plays clip by clip this once; the render goes on and the
  next call gets the file. A sentence whose clips cannot be rendered plays clip by clip too.

``render_call`` is the preview: the answer's TwiML played by server/calls/playback.py from our
own storage, so the preview is the call.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace
from urllib.parse import unquote

from prompts.models import (
    SENTENCE_END,
    ClipSegment,
    PauseSegment,
    Plan,
    SaySegment,
    Segment,
    Sentence,
    Variant,
)
from server.calls.playback import Playback, play_twiml
from server.runtime import Runtime
from server.tenants import Tenant
from voicebank import encode
from voicebank.render import RENDER_RATE, Renderer
from voicebank.sentence_store import SentenceStore
from voicebank.stitch import CatalogueMasters, SentenceRecipe, Stitcher
from voicebank.storage.local import LocalStorage
from voicebank.tts import Tts, default_tts

log = logging.getLogger("voiceprompt.delivery")

ANSWER_BUDGET_S = 0.4  # how long an answer waits for sentences rendered for the first time
SENTENCE_ID = "sentence:"  # clip_id prefix of a stitched sentence (never a catalogue id)


def whole_sentences(plan: Plan) -> Plan:
    """``fallback=sentence`` after the fact: every sentence with a SaySegment in it (the clip
    guard may have made one) becomes one SaySegment of the whole sentence."""
    sentences = plan.sentences()
    if all(s.recorded or len(s.segments) == 1 for s in sentences):
        return plan
    out: list[Segment] = []
    for s in sentences:
        if s.recorded or len(s.segments) == 1:
            out.extend(s.segments)
        else:
            out.append(SaySegment(s.text, sum(seg.duration_ms for seg in s.segments)))
        if s.pause_ms:
            out.append(PauseSegment(s.pause_ms, SENTENCE_END))
    return replace(plan, segments=tuple(out), tokens=())


def recipe_for(
    sentence: Sentence, voice_id: str, target_lufs: float, head_ms: int = 0
) -> SentenceRecipe | None:
    """The stitch recipe of a wholly recorded sentence (None: not wholly recorded);
    ``head_ms`` of silence before it (the pause after a sentence the fallback voice says)."""
    clips: list[str] = []
    gaps: list[int] = []
    gap = 0
    for seg in sentence.segments:
        if isinstance(seg, ClipSegment):
            if not seg.clip_id.isdigit():
                return None  # already a stitched sentence, or not from the catalogue
            if clips:
                gaps.append(gap)
            clips.append(seg.clip_id)
            gap = 0
        elif isinstance(seg, PauseSegment):
            gap += seg.ms
        else:
            return None
    if not clips:
        return None
    return SentenceRecipe(
        voice_id, tuple(clips), tuple(gaps), sentence.pause_ms, target_lufs, head_ms
    )


class CallAudio:
    """Clip audio for calls and previews (see the module docstring). One per app."""

    def __init__(self, rt: Runtime, *, tts: Tts | None = None) -> None:
        self.rt = rt
        self.masters = CatalogueMasters(rt.catalogue)
        self.renderer = Renderer(self.masters, tts=tts or default_tts())
        self.sentences = SentenceStore(rt.engine)
        self._stitcher: Stitcher | None = None
        self._targets: dict[str, float] = {}
        self._background: set[asyncio.Future[str]] = set()
        self._local = isinstance(rt.storage, LocalStorage)

    @property
    def stitcher(self) -> Stitcher:
        if self._stitcher is None:  # the recorder writes through the loop the engine runs on
            recorder = self.sentences.recorder(asyncio.get_running_loop())
            self._stitcher = Stitcher(self.rt.storage, self.renderer, recorder=recorder)
        return self._stitcher

    async def _target(self, voice_id: str) -> float:
        target = self._targets.get(voice_id)
        if target is None:
            target = (await self.rt.catalogue.get_voice(voice_id)).target_lufs
            self._targets[voice_id] = target
        return target

    async def deliver(
        self, plan: Plan, tenant: Tenant, budget_s: float | None = ANSWER_BUDGET_S
    ) -> Plan:
        """What the call plays for ``plan`` (module docstring); ``budget_s`` bounds the wait for
        sentences rendered for the first time (None: wait for all, as the preview does)."""
        if tenant.fallback == "sentence":
            plan = whole_sentences(plan)
        if tenant.delivery != "stitched":
            return plan
        sentences = plan.sentences()
        target = await self._target(tenant.voice)
        recipes: list[SentenceRecipe | None] = []
        for i, s in enumerate(sentences):
            # After a sentence the fallback voice says, the pause lives at the head of the next
            # stitched file: a <Say> carries none and <Pause> has whole seconds only.
            said_before = i > 0 and recipes[-1] is None and not sentences[i - 1].recorded
            head = sentences[i - 1].pause_ms if said_before else 0
            recipes.append(recipe_for(s, tenant.voice, target, head))
        wanted = [r for r in recipes if r is not None]
        if not wanted:
            return plan
        await self.masters.resolve(c for r in wanted for c in r.clip_ids)
        stitcher = self.stitcher
        flights = {r.key: asyncio.ensure_future(asyncio.to_thread(self._ensure, r)) for r in wanted}
        await asyncio.wait(flights.values(), timeout=budget_s)
        out: list[Segment] = []
        held: PauseSegment | None = None  # a said sentence's pause, until we know where it goes
        for sentence, recipe in zip(sentences, recipes, strict=True):
            flight = flights.get(recipe.key) if recipe is not None else None
            if recipe is not None and flight is not None and self._ready(flight, recipe):
                if held is not None and not recipe.head_ms:
                    out.append(held)
                held = None
                out.append(
                    ClipSegment(
                        SENTENCE_ID + recipe.key,
                        sentence.text,
                        Variant.ANY,
                        sentence.duration_ms,
                        stitcher.url(recipe),
                    )
                )
                continue  # the pause after it is inside the file
            if held is not None:
                out.append(held)
            out.extend(sentence.segments)
            held = PauseSegment(sentence.pause_ms, SENTENCE_END) if sentence.pause_ms else None
        if held is not None:
            out.append(held)
        return replace(plan, segments=tuple(out), tokens=())

    def _ensure(self, recipe: SentenceRecipe) -> str:
        """The stitcher's ensure(); on a local folder, whose files this server serves itself,
        a file deleted behind its back is noticed (a stat) and rendered again."""
        key = self.stitcher.ensure(recipe)
        if self._local and not self.rt.storage.exists(key):
            log.warning("stitched sentence %s was deleted; rendering it again", key)
            self.stitcher.forget()
            key = self.stitcher.ensure(recipe)
        return key

    def _ready(self, flight: asyncio.Future[str], recipe: SentenceRecipe) -> bool:
        if not flight.done():
            log.info("sentence %s still rendering; played clip by clip this time", recipe.key)
            self._background.add(flight)
            flight.add_done_callback(self._finished)
            return False
        if flight.exception() is not None:
            log.error("sentence %s cannot be stitched: %r", recipe.key, flight.exception())
            return False
        return True

    def _finished(self, flight: asyncio.Future[str]) -> None:
        self._background.discard(flight)
        if not flight.cancelled() and flight.exception() is not None:
            log.error("a background sentence render failed: %r", flight.exception())

    # -- the preview ----------------------------------------------------------------------------
    def fetch(self, url: str) -> bytes:
        """The bytes behind one of our media URLs (the preview plays from our own storage)."""
        base = self.rt.storage.url("")
        if not url.startswith(base):
            raise ValueError(f"{url} is not in this service's storage")
        return self.rt.storage.get(unquote(url[len(base) :]))

    async def play(self, doc: str) -> Playback:
        """The audio of a TwiML document, as the line carries it."""
        return await asyncio.to_thread(
            play_twiml, doc, fetch=self.fetch, tts=self.renderer.tts, rate=RENDER_RATE
        )

    def patient(self) -> Patient:
        """The same delivery, waiting for every sentence to be stitched (the preview)."""
        return Patient(self)

    @staticmethod
    def mp3(playback: Playback) -> bytes:
        """The preview's MP3: gapless-tagged, so its decoded length is the call's."""
        return encode.mp3_gapless(playback.pcm, playback.rate)


class Patient:
    """``CallAudio.deliver`` without the answer's time limit."""

    def __init__(self, audio: CallAudio) -> None:
        self.audio = audio

    async def deliver(self, plan: Plan, tenant: Tenant) -> Plan:
        return await self.audio.deliver(plan, tenant, budget_s=None)

"""Preparing calls: every distinct stitched sentence is rendered once, then every answer is warm.

Usage: ``python bench/prepare.py [--reminders 1000] [--slots 50] [--rounds 3] [--quick]``.

A throw-away installation (a temporary VOICEPROMPT_DATA_DIR: SQLite, local storage) gets the demo
voice the way ``voiceprompt bank import-asterisk`` makes it (the whole Asterisk English pack,
~30 s, progress printed) and the demo tenant of ``make demo`` (its DEMO_HUMAN / DEMO_VOICEMAIL
templates, read from the Makefile) with ``delivery=stitched`` and ``fallback=sentence``.

The reminders (not stored: their Call objects are built directly) are for ``--slots``
appointment times over a few days, with one of three providers each. Preparing a reminder's call
builds the person's answer (message and menu) and the voicemail answer with the code the
webhooks and the preview use: ``Answerer(public_url, delivery=audio.patient())``, which waits
for every sentence to be stitched. The passes, in one process and one run:

* cold: the first pass, which renders each distinct sentence as it first needs it;
* warm: the same reminders again (``--rounds`` times), every sentence already rendered;
* clips: the same answers for the tenant with ``delivery=clips`` (no stitching at all), the
  reference, alternated round by round with the warm passes so that a noisy machine hurts both.

Prints the sentences rendered (``Stitcher.stats().renders``), the sentence look-ups answered from
already-rendered files (known: the stitcher's in-process set; found: already in storage; joined:
waited for a render in flight), prepared calls per second for each pass and the warm / clips
ratio: what stitching costs once it is warm. Checks that the renders equal the distinct sentence
recipes, computed independently from the delivered plans with ``recipe_for`` (and that storage
and the stitched_sentences table hold as many), and that the warm pass rendered nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path

if __package__ in (None, ""):
    # Run as a script: make the repository importable without installing it.
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from prompts.models import Plan
from server.calls.answers import Answer, Answerer, Call, greeting_may_be_playing
from server.calls.delivery import CallAudio, Patient, recipe_for
from server.calls.flow import Answered, CallState, Step, step
from server.calls.messages import MessageVariant
from server.calls.phrases import keypress_config
from server.calls.preview import answered_by
from server.calls.voices import VoiceCache, VoiceView
from server.runtime import Runtime, open_runtime
from server.settings import Settings
from server.tenants import Tenant
from voicebank.asterisk import (
    DEFAULT_SOUNDS,
    find_sounds,
    find_transcript_file,
    read_transcript_file,
)
from voicebank.importer import import_sounds
from voicebank.stitch import KEY_PREFIX, StitchStats

ROOT = Path(__file__).resolve().parent.parent
PUBLIC_URL = "https://voice.example.com"
PROVIDERS = ("Doctor Benedict", "Doctor Grey", "Doctor Okafor")
SLOTS_PER_DAY = 16  # 8:00 am on, every 35 minutes: :00, :35, :10, :45, ... (varied time words)
SLOT_STEP = timedelta(minutes=35)
VARIANTS: tuple[MessageVariant, ...] = ("human", "voicemail")


# -- the demo tenant ---------------------------------------------------------------------------
def makefile_templates(path: Path = ROOT / "Makefile") -> tuple[str, str]:
    """DEMO_HUMAN and DEMO_VOICEMAIL as make expands them (continuations joined by one space)."""
    text = re.sub(r"[ \t]*\\\n[ \t]*", " ", path.read_text(encoding="utf-8"))
    found = dict(re.findall(r"^(DEMO_HUMAN|DEMO_VOICEMAIL)\s*:=\s*(.*)$", text, re.MULTILINE))
    if set(found) != {"DEMO_HUMAN", "DEMO_VOICEMAIL"}:
        raise SystemExit(f"DEMO_HUMAN / DEMO_VOICEMAIL not found in {path}")
    human = found["DEMO_HUMAN"].strip()
    return human, found["DEMO_VOICEMAIL"].replace("$(DEMO_HUMAN)", human).strip()


async def import_voice(rt: Runtime, voice_id: str) -> None:
    """The whole Asterisk English pack, as ``voiceprompt bank import-asterisk`` imports it."""
    transcript_file = find_transcript_file(DEFAULT_SOUNDS)
    if transcript_file is None:
        raise SystemExit(
            "the Asterisk English sounds and their transcripts are needed: "
            "apt-get install asterisk-core-sounds-en-wav"
        )
    entries = list(find_sounds(DEFAULT_SOUNDS, read_transcript_file(transcript_file)))
    settings = rt.settings
    await rt.catalogue.ensure_voice(
        voice_id, "Allison Smith (Asterisk core sounds)", target_lufs=settings.target_lufs
    )
    started = time.perf_counter()
    done = 0
    step_at = max(1, len(entries) // 10)

    def progress(name: str) -> None:
        nonlocal done
        done += 1
        if done % step_at == 0 or done == len(entries):
            elapsed = time.perf_counter() - started
            print(f"  {done}/{len(entries)} sounds ({elapsed:.0f} s, {name})", flush=True)

    print(f"importing the Asterisk English pack ({len(entries)} sounds) as voice {voice_id!r}")
    report = await import_sounds(
        rt.catalogue,
        voice_id,
        entries,
        target_lufs=settings.target_lufs,
        progress=progress,
    )
    print(
        f"import    : {len(report.added)} clips added, {len(report.skipped)} skipped "
        f"(same words), {len(report.rejected)} rejected in "
        f"{time.perf_counter() - started:.1f} s"
    )


# -- the reminders -----------------------------------------------------------------------------
def slot_times(moment: datetime, slots: int) -> list[datetime]:
    """``slots`` distinct appointment times from tomorrow on, SLOTS_PER_DAY a day."""
    first = moment.replace(hour=8, minute=0, second=0, microsecond=0) + timedelta(days=1)
    return [
        first + timedelta(days=i // SLOTS_PER_DAY) + (i % SLOTS_PER_DAY) * SLOT_STEP
        for i in range(slots)
    ]


def make_calls(
    tenant: Tenant, view: VoiceView, times: Sequence[datetime], reminders: int
) -> list[Call]:
    slots = len(times)
    return [
        Call(r + 1, tenant, times[r % slots], PROVIDERS[(r // slots) % len(PROVIDERS)], view)
        for r in range(reminders)
    ]


def call_steps(tenant: Tenant) -> list[tuple[Step, bool]]:
    """The call URL's step for a person and for a machine, and whether each starts with the
    skip-to-beep tone (as server/calls/preview.py works them out)."""
    out = []
    for variant in VARIANTS:
        by = answered_by(tenant, variant)
        result = step(keypress_config(tenant), CallState(), Answered(by))
        out.append((result, tenant.skip_to_beep and greeting_may_be_playing(by, result)))
    return out


class Recording:
    """A delivery that keeps every plan it returns (for counting recipes, outside the timing)."""

    def __init__(self, inner: Patient) -> None:
        self.inner = inner
        self.plans: list[Plan] = []

    async def deliver(self, plan: Plan, tenant: Tenant) -> Plan:
        delivered = await self.inner.deliver(plan, tenant)
        self.plans.append(delivered)
        return delivered


@dataclass
class PassResult:
    seconds: float
    answers: list[Answer]
    rendering_answers: int  # answers during which the stitcher rendered something

    def rate(self, calls: int) -> float:
        return calls / self.seconds


async def prepare_all(
    answerer: Answerer, calls: Sequence[Call], audio: CallAudio | None = None
) -> PassResult:
    """Every call's answers, one call after the other (as a dialer prepares before dialing)."""
    steps = call_steps(calls[0].tenant)
    answers: list[Answer] = []
    rendering = 0
    renders = audio.stitcher.renders if audio is not None else 0
    started = time.perf_counter()
    for call in calls:
        for result, tone in steps:
            answers.append(await answerer.answer(call, result, tone=tone))
            if audio is not None:
                now = audio.stitcher.renders
                rendering += now > renders
                renders = now
    return PassResult(time.perf_counter() - started, answers, rendering)


async def distinct_recipes(rt: Runtime, plans: Sequence[Plan], voice_id: str) -> set[str]:
    """The keys of every sentence a stitched call needs, from plans as the call plays them with
    ``delivery=clips`` (the fallback already applied), by the rule CallAudio.deliver states: a
    wholly recorded sentence is one recipe, led by the pause of a sentence the fallback voice
    said just before it."""
    target = (await rt.catalogue.get_voice(voice_id)).target_lufs
    keys: set[str] = set()
    for plan in plans:
        sentences = plan.sentences()
        for i, sentence in enumerate(sentences):
            before = sentences[i - 1] if i else None
            head = before.pause_ms if before is not None and not before.recorded else 0
            recipe = recipe_for(sentence, voice_id, target, head)
            if recipe is not None:
                keys.add(recipe.key)
    return keys


def plays(answers: Sequence[Answer]) -> tuple[int, int]:
    """<Play> verbs in all the answers, and how many of them play a stitched sentence."""
    total = sum(a.twiml.count("<Play") for a in answers)
    stitched = sum(a.twiml.count(f"/{KEY_PREFIX}/") for a in answers)
    return total, stitched


def describe(stats: StitchStats) -> str:
    looked_up = stats.renders + stats.known + stats.found + stats.joined
    warm = stats.known + stats.found + stats.joined
    return (
        f"{looked_up} sentence look-ups: {stats.renders} rendered, {warm} from rendered files "
        f"(known {stats.known}, found {stats.found}, joined {stats.joined})"
    )


def minus(a: StitchStats, b: StitchStats) -> StitchStats:
    return StitchStats(
        a.renders - b.renders, a.known - b.known, a.found - b.found, a.joined - b.joined
    )


# -- the run -----------------------------------------------------------------------------------
async def run(data_dir: Path, reminders: int, slots: int, rounds: int) -> int:
    settings = Settings.from_env(
        {"VOICEPROMPT_DATA_DIR": str(data_dir), "VOICEPROMPT_PUBLIC_URL": PUBLIC_URL}
    )
    human, voicemail = makefile_templates()
    async with open_runtime(settings) as rt:
        voice_id = settings.default_voice
        await import_voice(rt, voice_id)
        tenant, _ = await rt.tenants.create(
            Tenant(
                slug="demo",
                name="Smile Dental",
                timezone="America/New_York",
                voice=voice_id,
                template_human=human,
                template_voicemail=voicemail,
                delivery="stitched",
                fallback="sentence",
            )
        )
        clips_tenant = replace(tenant, delivery="clips")
        view = await VoiceCache(rt.catalogue).get(tenant.voice, tenant.slug)
        moment = datetime.now(tenant.zone).replace(hour=7, minute=30, second=0, microsecond=0)
        times = slot_times(moment, slots)
        stitched_calls = make_calls(tenant, view, times, reminders)
        clips_calls = make_calls(clips_tenant, view, times, reminders)
        audio = CallAudio(rt)
        patient = audio.patient()
        stitching = Answerer(settings.public_url, delivery=patient, now=lambda: moment)
        reference = Answerer(settings.public_url, delivery=patient, now=lambda: moment)

        print(
            f"setup     : {reminders} reminders of tenant {tenant.slug!r} (SQLite, local storage), "
            f"{slots} appointment slots {times[0]:%a %b %d %H:%M} to {times[-1]:%a %b %d %H:%M} "
            f"{tenant.timezone}, {len(PROVIDERS)} providers; 2 answers per call (person with "
            "menu, voicemail)"
        )

        # Untimed: the plans each call plays (fallback applied), for counting recipes apart from
        # the stitcher, and a first run of the planner code.
        recording = Recording(patient)
        plan_pass = await prepare_all(
            Answerer(settings.public_url, delivery=recording, now=lambda: moment), clips_calls
        )
        expected = await distinct_recipes(rt, recording.plans, voice_id)
        said = sum(1 for p in recording.plans for s in p.sentences() if not s.recorded)
        sentences = sum(len(p.sentences()) for p in recording.plans)
        print(
            f"plans     : {len(recording.plans)} delivered plans, {sentences} sentences "
            f"({said} said by the fallback voice), {len(expected)} distinct sentence recipes"
        )

        cold = await prepare_all(stitching, stitched_calls, audio)
        after_cold = audio.stitcher.stats()
        warm_runs: list[PassResult] = []
        clips_runs: list[PassResult] = [plan_pass]
        for _ in range(rounds):
            clips_runs.append(await prepare_all(reference, clips_calls))
            warm_runs.append(await prepare_all(stitching, stitched_calls, audio))
        after_warm = audio.stitcher.stats()
        stored = sum(1 for _ in (data_dir / "media" / KEY_PREFIX).rglob("*.mp3"))
        rows = len(await audio.sentences.records(voice_id))

    n_answers = len(cold.answers)
    print(
        f"cold pass : {reminders} reminders prepared ({n_answers} answers) in "
        f"{cold.seconds:.2f} s, {cold.rate(reminders):.0f} calls/s; "
        f"{after_cold.renders} distinct sentences rendered; {cold.rendering_answers} answers "
        f"rendered something, {n_answers - cold.rendering_answers} were served wholly from "
        "already-rendered sentences"
    )
    print(f"            {describe(after_cold)}")
    warm_rates = [r.rate(reminders) for r in warm_runs]
    clips_rates = [r.rate(reminders) for r in clips_runs[1:]]
    warm_stats = minus(after_warm, after_cold)
    print(
        f"warm pass : {rounds} x {reminders} reminders, median {statistics.median(warm_rates):.0f} "
        f"calls/s (runs: {', '.join(f'{x:.0f}' for x in warm_rates)}); {describe(warm_stats)}"
    )
    print(
        f"clips     : delivery=clips (no stitching), median "
        f"{statistics.median(clips_rates):.0f} calls/s "
        f"(runs: {', '.join(f'{x:.0f}' for x in clips_rates)})"
    )
    total, stitched = plays(warm_runs[-1].answers)
    clip_total, _ = plays(clips_runs[-1].answers)
    print(
        f"answers   : {total / n_answers:.1f} <Play> per answer stitched ({stitched} of {total} "
        f"play a stitched sentence), {clip_total / n_answers:.1f} with delivery=clips"
    )
    warm_rate = statistics.median(warm_rates)
    print(f"warm / clips: {warm_rate / statistics.median(clips_rates):.2f}x calls/s")
    print(f"warm / cold : {warm_rate / cold.rate(reminders):.1f}x calls/s")
    print(
        f"check     : renders {after_warm.renders} == distinct recipes {len(expected)} == "
        f"files in storage {stored} == stitched_sentences rows {rows}; warm renders "
        f"{warm_stats.renders} == 0"
    )
    assert after_warm.renders == len(expected) == stored == rows, "a sentence rendered twice?"
    assert warm_stats.renders == 0, "the warm pass rendered a sentence"
    assert stitched == total, "a warm answer played a clip instead of a stitched sentence"
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reminders", type=int, default=1000)
    parser.add_argument("--slots", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3, help="warm and clips passes each")
    parser.add_argument("--quick", action="store_true", help="100 reminders, 10 slots, 1 round")
    args = parser.parse_args(argv)
    if args.quick:
        args.reminders, args.slots, args.rounds = 100, 10, 1
    if not 1 <= args.slots <= args.reminders or args.rounds < 1:
        parser.error("need 1 <= --slots <= --reminders and --rounds >= 1")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="voiceprompt-prepare-") as tmp:
        code = asyncio.run(run(Path(tmp), args.reminders, args.slots, args.rounds))
    print(f"total     : {time.perf_counter() - started:.0f} s")
    return code


if __name__ == "__main__":
    raise SystemExit(main())

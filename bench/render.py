"""Render benchmark: the warm Renderer against the naive pydub/ffmpeg path and one bare encode.

    python bench/render.py [--warm-runs 100] [--naive-runs 10] [--bare-runs 20]

Builds a ~30 s reminder-like message (two passes with a loop pause) from 22 real Asterisk
recordings ingested in memory with voicebank.ingest, then prints the median of:

* warm: ``Renderer.render(plan)`` with every clip already decoded in its cache;
* naive: what a first implementation would do per request: decode each clip's delivery MP3
  with ``pydub.AudioSegment.from_file`` (ffprobe + ffmpeg processes), join with ``+`` and
  ``export(format="mp3")`` through ffmpeg;
* bare: one lameenc encode of the same PCM, the floor a render cannot go below.

Targets: naive/warm >= 10x, warm/bare <= 2x. Needs asterisk-core-sounds-en-wav and ffmpeg.
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

SOUNDS = Path("/usr/share/asterisk/sounds/en")

# "Hello. You have 2 messages. Tomorrow, Tuesday April fifteenth at 3 30 p.m. Telephone number
# 5 4 1 2. Thank you, goodbye." 19 clip segments (18 distinct clips) and 3 pauses: a 14.9 s
# pass, so two passes and the loop pause make about 30 s.
PASS: tuple[str | int, ...] = (
    "hello",
    300,
    "vm-youhave",
    "digits/2",
    "vm-message",
    250,
    "digits/tomorrow",
    "digits/day-2",
    "digits/mon-3",
    "digits/h-15",
    "digits/at",
    "digits/3",
    "digits/30",
    "digits/p-m",
    300,
    "telephone-number",
    "digits/5",
    "digits/4",
    "digits/1",
    "digits/2",
    "auth-thankyou",
    "goodbye",
)
LOOPS = 2
LOOP_PAUSE_MS = 1000


def _median_ms(fn: Callable[[], object], runs: int, *, warm_up: bool = True) -> float:
    if warm_up:  # one unmeasured run, as in research/audio.md
        fn()
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        times.append(1000 * (time.perf_counter() - started))
    return statistics.median(times)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--warm-runs", type=int, default=100)
    parser.add_argument("--naive-runs", type=int, default=10)
    parser.add_argument("--bare-runs", type=int, default=20)
    args = parser.parse_args(argv)

    # Imported here so that importing this module has no side effects and costs nothing.
    from pydub import AudioSegment

    from prompts.models import ClipSegment, PauseSegment, Plan, Segment, Variant
    from voicebank import encode
    from voicebank.ingest import ingest_bytes
    from voicebank.render import RENDER_RATE, Renderer
    from voicebank.tts import PlaceholderTts

    names = sorted({p for p in PASS if isinstance(p, str)})
    missing = [n for n in names if not (SOUNDS / f"{n}.wav").is_file()]
    if missing:
        print(
            f"Asterisk sounds missing ({', '.join(missing)}): "
            "apt-get install asterisk-core-sounds-en-wav",
            file=sys.stderr,
        )
        return 1

    started = time.perf_counter()
    clips = {n: ingest_bytes((SOUNDS / f"{n}.wav").read_bytes(), f"{n}.wav") for n in names}
    ingest_ms = 1000 * (time.perf_counter() - started)

    segments: list[Segment] = [
        ClipSegment(p, p, Variant.ANY, clips[p].duration_ms)
        if isinstance(p, str)
        else PauseSegment(p)
        for p in PASS
    ]
    plan = Plan(tuple(segments), LOOPS, LOOP_PAUSE_MS, "", (), 0)
    renderer = Renderer(lambda clip_id: clips[clip_id].master, tts=PlaceholderTts())
    pcm = renderer.render_pcm(plan)
    seconds = pcm.size / RENDER_RATE
    n_segments = sum(1 for s in plan.looped_segments() if isinstance(s, ClipSegment))
    print(
        f"message: {n_segments} clip segments ({len(names)} distinct Asterisk clips), "
        f"{LOOPS} loops, {seconds:.1f} s at {RENDER_RATE} Hz"
    )
    print(
        f"ingest: {len(names)} clips in {ingest_ms:.0f} ms "
        f"({ingest_ms / len(names):.1f} ms per clip, first call includes imports)"
    )

    warm = _median_ms(lambda: renderer.render(plan), args.warm_runs)

    def naive() -> bytes:
        decoded = {
            n: AudioSegment.from_file(io.BytesIO(c.mp3), format="mp3") for n, c in clips.items()
        }
        message = AudioSegment.empty()
        for seg in plan.looped_segments():
            if isinstance(seg, ClipSegment):
                message += decoded[seg.clip_id]
            elif isinstance(seg, PauseSegment):
                message += AudioSegment.silent(seg.ms, frame_rate=RENDER_RATE)
        out = io.BytesIO()
        message.export(out, format="mp3", bitrate=f"{encode.RENDER_BITRATE_KBPS}k")
        return out.getvalue()

    # No warm-up run: every naive run starts the same processes anyway, and it saves ~3 s.
    naive_ms = _median_ms(naive, args.naive_runs, warm_up=False)
    bare = _median_ms(lambda: encode.mp3_fast(pcm, RENDER_RATE), args.bare_runs)

    print(f"warm render ({args.warm_runs} runs): median {warm:.1f} ms")
    print(
        f"naive pydub from_file + export via ffmpeg ({args.naive_runs} runs): "
        f"median {naive_ms:.1f} ms"
    )
    print(f"bare lameenc encode of {seconds:.1f} s ({args.bare_runs} runs): median {bare:.1f} ms")
    print(f"naive / warm: {naive_ms / warm:.1f}x (target >= 10x)")
    print(f"warm / bare: {warm / bare:.2f}x (target <= 2x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

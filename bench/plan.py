"""Planner throughput: plans per second for the demo template against a realistic clip index.

Usage: ``python bench/plan.py [--seconds 3] [--n 0]``. Prints plans/s and the ratio against
``prompts.text.tokenize`` of each plan's transcript measured in the same run, so the figure can be
compared across machines (the ratio says "one plan costs as much as tokenizing its text N times").
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections.abc import Callable
from datetime import date, datetime, timedelta
from pathlib import Path

if __package__ in (None, ""):
    # Run as a script: make the repository importable without installing it.
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from prompts.clock import MONTHS, WEEKDAYS
from prompts.models import ClipEntry, ClipIndex, Variant
from prompts.numbers import CARDINAL_VOCABULARY, ORDINAL_VOCABULARY
from prompts.planner import plan_message
from prompts.text import tokenize

TEMPLATE = (
    "This is a reminder from {tenant}. Your appointment with {provider} is at "
    "{appointment:time} on {appointment:date}."
)
TODAY = date(2026, 11, 20)
_FILLER = (
    "is",
    "at",
    "on",
    "please",
    "press",
    "one",
    "to",
    "confirm",
    "your",
    "call",
    "important",
    "us",
    "thank",
    "you",
    "for",
    "calling",
    "goodbye",
    "hold",
    "the",
    "line",
    "record",
    "after",
    "tone",
    "mailbox",
    "message",
    "not",
    "available",
    "again",
    "later",
    "menu",
    "option",
)


def demo_index() -> ClipIndex:
    """~600 clips shaped like Asterisk's: every number/time/date word in two takes, plus phrases."""
    clips: list[ClipEntry] = []

    def add(text: str, variant: Variant = Variant.ANY, ms: int = 450) -> None:
        clip_id = f"c{len(clips):04d}"
        clips.append(ClipEntry(clip_id, text, variant, ms, f"https://cdn.example/{clip_id}.mp3"))

    words = (
        CARDINAL_VOCABULARY
        + ORDINAL_VOCABULARY
        + WEEKDAYS
        + MONTHS
        + ("oh", "a.m.", "p.m.", "noon", "midnight", "today", "tomorrow", "at", "on")
    )
    for word in words:
        add(word, Variant.CONTINUING)
        add(word, Variant.FINAL)
    for phrase in (
        "This is a reminder from",
        "Your appointment with",
        "is at",
        "Smile Dental",
        "Doctor Benedict",
        "thank you, goodbye",
    ):
        add(phrase, Variant.CONTINUING, 900)
        add(phrase, Variant.FINAL, 950)
    # Other prompts of the voice (voicemail, menus): one to three words, many starting with
    # words the message also has ("your", "is", "at", "on"), so matching has to look past them.
    seen: set[str] = set()
    f = len(_FILLER)
    for i in range(f**3):
        if len(clips) >= 600:
            break
        words = (_FILLER[i % f], _FILLER[(i // f + i) % f], _FILLER[(i // (f * f) + 2 * i) % f])
        phrase = " ".join(words[: 1 + i % 3])
        if phrase not in seen:
            seen.add(phrase)
            add(phrase)
    return ClipIndex.build(clips)


def demo_values(count: int = 20_000) -> list[dict[str, object]]:
    """Distinct appointments: any minute of the working day, over 400 days, four providers.

    Far more distinct messages than the planner remembers chunks for, so the figure is not a
    cache benchmark; only the constant first sentence and the repeating dates are remembered.
    """
    start = datetime(2026, 11, 20, 8, 0)
    providers = ("Doctor Benedict", "Doctor Okafor", "Doctor Li", "Doctor Alvarez")
    rng = random.Random(20261120)  # seeded: every run plans the same messages
    out: list[dict[str, object]] = []
    for _ in range(count):
        when = start + timedelta(days=rng.randrange(400), minutes=rng.randrange(600))
        out.append(
            {"tenant": "Smile Dental", "provider": rng.choice(providers), "appointment": when}
        )
    return out


def _rate(fn: Callable[[int], None], seconds: float, n: int) -> tuple[int, float]:
    """Run fn in batches until n calls (if n) or ``seconds`` elapsed; returns (calls, elapsed)."""
    calls, batch = 0, 500
    began = time.perf_counter()
    while True:
        fn(batch)
        calls += batch
        elapsed = time.perf_counter() - began
        if (n and calls >= n) or (not n and elapsed >= seconds):
            return calls, elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--seconds",
        type=float,
        default=3.0,
        help="time for each of the two measurements (default 3)",
    )
    parser.add_argument("--n", type=int, default=0, help="a fixed number of calls instead")
    args = parser.parse_args(argv)

    values = demo_values()
    k = len(values)
    first = plan_message(TEMPLATE, values[0], demo_index(), today=TODAY)  # warms the rules
    # The server builds an index per request: what that and the first plan on it cost.
    began = time.perf_counter()
    index = demo_index()
    build_ms = (time.perf_counter() - began) * 1e3
    began = time.perf_counter()
    plan_message(TEMPLATE, values[1], index, today=TODAY)
    first_ms = (time.perf_counter() - began) * 1e3
    transcripts = [plan_message(TEMPLATE, v, index, today=TODAY).transcript for v in values]

    def plans(batch: int) -> None:
        for j in range(batch):
            plan_message(TEMPLATE, values[j % k], index, today=TODAY)

    def tokenizes(batch: int) -> None:
        for j in range(batch):
            tokenize(transcripts[j % k])

    # Alternate the two in rounds so a busy machine slows both alike and the ratio holds.
    rounds = 3
    plan_calls = tok_calls = 0
    plan_s = tok_s = 0.0
    for _ in range(rounds):
        calls, spent = _rate(plans, args.seconds / rounds, args.n // rounds)
        plan_calls, plan_s = plan_calls + calls, plan_s + spent
        calls, spent = _rate(tokenizes, args.seconds / rounds, args.n // rounds)
        tok_calls, tok_s = tok_calls + calls, tok_s + spent
    plan_rate = plan_calls / plan_s
    tok_rate = tok_calls / tok_s
    target = 20_000
    clips = sum(1 for s in first.segments if s.kind == "clip")
    print(
        f"index        : {sum(len(v) for v in index.entries.values())} clips, "
        f"{len(index.entries)} keys, longest {index.max_len} tokens; "
        f"build {build_ms:.1f} ms, first plan on it {first_ms:.2f} ms"
    )
    print(f"messages     : {len(set(transcripts)):,} distinct, e.g. {first.transcript!r}")
    print(
        f"               ({clips} clips, {len(first.missing)} missing, "
        f"{first.duration_ms:,} ms for {first.loops} loops)"
    )
    print(
        f"plan_message : {plan_rate:10,.0f} plans/s  ({1e6 / plan_rate:6.1f} us each, "
        f"{plan_calls:,} plans)"
    )
    print(
        f"tokenize     : {tok_rate:10,.0f} calls/s  ({1e6 / tok_rate:6.1f} us each, "
        "reference: tokenize(plan.transcript))"
    )
    print(f"ratio        : one plan costs {tok_rate / plan_rate:.2f} tokenize calls")
    print(f"target       : {target:,} plans/s -> {'PASS' if plan_rate >= target else 'FAIL'}")
    return 0 if plan_rate >= target else 1


if __name__ == "__main__":
    sys.exit(main())

"""Split one long take into its script's phrases: one ProcessedClip per script line, in order.

Two passes, as research/audio.md §5 measured:

1. Coarse: pydub's ``detect_nonsilent`` with ``seek_step=10`` and a 350 ms minimum pause, at a
   threshold relative to the take (``levels.speech_threshold``: 40 dB under its loudest 5 ms,
   at least 10 dB over its noise floor). Cheap (10 ms steps) and a pause must last 350 ms, so a
   stop closure or a short breath inside a phrase does not split it. But it tests whole 350 ms
   windows, so its edges land up to ~150 ms inside the speech.
2. Refine: each coarse segment gets a window reaching 300 ms outwards (never past the middle of
   the neighbouring pause) and ``levels.find_speech`` finds the edges there at 1-sample
   resolution with the same threshold. Research measured a 1-14 ms maximum error this way.

Segments of under 60 ms are clicks or lip smacks, not phrases, and are dropped. Each phrase is
then cut with up to 500 ms of its surrounding pause and processed exactly like a single upload
(``ingest.process``), so split clips and uploaded clips are trimmed and levelled alike.
"""

from __future__ import annotations

from collections.abc import Sequence

from pydub import AudioSegment
from pydub.silence import detect_nonsilent

from voicebank import levels, pcm
from voicebank.errors import IngestError, SplitError
from voicebank.ingest import (
    DEFAULT_LIMITS,
    IngestLimits,
    ProcessedClip,
    decode_upload,
    process,
)
from voicebank.pcm import MASTER_RATE, Float

MIN_PHRASE_MS = 60
REFINE_MS = 300
CONTEXT_MS = 500


def script_lines(script: Sequence[str] | str) -> list[str]:
    """One phrase per line; surrounding blanks stripped, blank lines ignored."""
    lines = script.splitlines() if isinstance(script, str) else script
    return [line.strip() for line in lines if line.strip()]


def _fmt_spans(spans: Sequence[tuple[int, int]], rate: int) -> str:
    return ", ".join(f"{s / rate:.2f}-{e / rate:.2f} s" for s, e in spans)


def find_phrases(x: Float, rate: int, *, min_silence_ms: int = 350) -> list[tuple[int, int]]:
    """Speech spans (sample start, end) of a take, in order."""
    env = levels.envelope_db(x, rate)
    threshold, _, _ = levels.speech_threshold(x, rate, env)
    seg = AudioSegment(data=pcm.to_int16(x).tobytes(), sample_width=2, frame_rate=rate, channels=1)
    coarse = detect_nonsilent(
        seg, min_silence_len=min_silence_ms, silence_thresh=threshold, seek_step=10
    )
    per_ms = rate / 1000.0
    bounds = [(round(a * per_ms), round(b * per_ms)) for a, b in coarse]
    spans: list[tuple[int, int]] = []
    for i, (a, b) in enumerate(bounds):
        # Never reach past the middle of the pause to a neighbour, or we would find its speech.
        lo = (bounds[i - 1][1] + a) // 2 if i else 0
        hi = (b + bounds[i + 1][0]) // 2 if i + 1 < len(bounds) else x.size
        w0 = max(lo, a - round(REFINE_MS * per_ms))
        w1 = min(hi, b + round(REFINE_MS * per_ms))
        found = levels.find_speech(x[w0:w1], rate, threshold_db=threshold)
        if found is None:
            continue
        start, end = w0 + found.start, w0 + found.end
        if end - start >= MIN_PHRASE_MS * per_ms:
            spans.append((start, end))
    return spans


def split_take(
    data: bytes,
    filename: str,
    script: Sequence[str] | str,
    *,
    target_lufs: float = -19.0,
    limits: IngestLimits = DEFAULT_LIMITS,
    max_take_ms: int = 20 * 60_000,
    min_silence_ms: int = 350,
) -> list[ProcessedClip]:
    """One recording plus its script -> one ProcessedClip per script line; raises SplitError."""
    lines = script_lines(script)
    if not lines:
        raise SplitError(filename, "the script has no lines")
    try:
        decoded, fmt = decode_upload(data, filename, limits, max_duration_ms=max_take_ms)
    except IngestError as exc:
        raise SplitError(filename, exc.reason) from exc
    rate = MASTER_RATE
    x = pcm.resample(pcm.to_mono(decoded.samples), decoded.sample_rate, rate)
    spans = find_phrases(x, rate, min_silence_ms=min_silence_ms)
    if len(spans) != len(lines):
        hint = (
            f"two phrases may have run together (pause under {min_silence_ms / 1000:g} s)"
            if len(spans) < len(lines)
            else f"a phrase may contain a pause over {min_silence_ms / 1000:g} s, or a noise"
        )
        found = _fmt_spans(spans, rate) or "none"
        raise SplitError(
            filename,
            f"found {len(spans)} phrases but the script has {len(lines)} lines ({hint}); "
            f"phrases found at {found}",
        )
    context = round(CONTEXT_MS * rate / 1000)
    clips: list[ProcessedClip] = []
    for i, ((start, end), line) in enumerate(zip(spans, lines, strict=True)):
        lo = (spans[i - 1][1] + start) // 2 if i else 0
        hi = (end + spans[i + 1][0]) // 2 if i + 1 < len(spans) else x.size
        piece = x[max(lo, start - context) : min(hi, end + context)]
        span_ms = (round(1000 * start / rate), round(1000 * end / rate))
        try:
            clip = process(
                piece,
                filename=f"{filename}#{i + 1}",
                original=data,
                original_format=fmt,
                target_lufs=target_lufs,
                limits=limits,
                original_rate=decoded.sample_rate,
                original_channels=decoded.channels,
                span_ms=span_ms,
            )
        except IngestError as exc:
            where = _fmt_spans([(start, end)], rate)
            raise SplitError(filename, f"line {i + 1} ({line!r}, {where}): {exc.reason}") from exc
        clips.append(clip)
    return clips

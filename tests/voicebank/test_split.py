"""voicebank.split: a long take plus its script -> one clip per line, on real recordings."""

from __future__ import annotations

import re

import numpy as np
import pytest
from scipy.fft import next_fast_len

from tests.support.audio import (
    RATE,
    asterisk_sound,
    clip,
    decode,
    noise,
    silence,
    take_from_sounds,
    wav_bytes,
)
from voicebank.errors import IngestError, SplitError
from voicebank.ingest import ingest_bytes
from voicebank.split import script_lines, split_take

DIGITS = ["1", "2", "3", "4", "5", "6", "7", "8", "9", "0", "10", "11"]
WORDS = [
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "zero",
    "ten",
    "eleven",
]


def _take(names: list[str], noise_dbfs: float | None) -> tuple[bytes, list[bytes]]:
    """digits/<name> in order with 600-800 ms of silence around each (8 kHz, as recorded)."""
    take = take_from_sounds(
        [f"digits/{n}" for n in names], 700, jitter_ms=100, noise_dbfs=noise_dbfs
    )
    return take, [asterisk_sound(f"digits/{n}").read_bytes() for n in names]


def _similarities(pieces: list[np.ndarray], refs: list[np.ndarray]) -> np.ndarray:
    """Peak normalised cross-correlation of every piece with every reference (1.0 = same audio
    at some offset), through one FFT size so each spectrum is computed once."""
    n = next_fast_len(2 * max(x.size for x in pieces + refs))

    def spectra(xs: list[np.ndarray]) -> list[np.ndarray]:
        return [np.fft.rfft(x / np.linalg.norm(x), n) for x in xs]

    ref_spectra = spectra(refs)
    return np.array(
        [
            [np.abs(np.fft.irfft(p * np.conj(r), n)).max() for r in ref_spectra]
            for p in spectra(pieces)
        ]
    )


@pytest.mark.parametrize("noise_dbfs", [None, -60.0])
def test_split_real_recordings_in_order(noise_dbfs):
    take, originals = _take(DIGITS, noise_dbfs)
    script = "\n".join(WORDS[:6]) + "\n\n   \n" + "\n".join(WORDS[6:]) + "\n"  # blanks ignored
    clips = split_take(take, "digits-take.wav", script)
    assert len(clips) == len(DIGITS)
    singles = [ingest_bytes(data, f"{n}.wav") for n, data in zip(DIGITS, originals, strict=True)]
    scores = _similarities(
        [decode(c.master)[0] for c in clips], [decode(c.master)[0] for c in singles]
    )
    for i, piece in enumerate(clips):
        # Each piece is trimmed like the recording uploaded on its own.
        assert abs(piece.speech_ms - singles[i].speech_ms) <= 30, (i, piece, singles[i])
        assert 10 <= piece.lead_ms <= 20 and 30 <= piece.trail_ms <= 50
        assert abs(piece.lufs + 19.0) <= 1.0
        assert piece.filename == f"digits-take.wav#{i + 1}"
        assert piece.original is take and piece.span_ms is not None
        # ...and it is that recording, not its neighbour: the order is kept.
        assert int(np.argmax(scores[i])) == i, scores[i]
        assert scores[i, i] > 0.9
    starts = [c.span_ms[0] for c in clips if c.span_ms]
    assert len(starts) == len(clips) and starts == sorted(starts)


def test_count_mismatch_says_what_was_found():
    take, _ = _take(DIGITS[:5], None)
    with pytest.raises(SplitError) as info:
        split_take(take, "take.wav", WORDS[:4])
    message = str(info.value)
    assert message.startswith("take.wav: found 5 phrases but the script has 4 lines")
    # One "start-end s" per phrase found, in seconds; the first word starts 0.6-0.9 s in.
    spans = re.findall(r"(\d+\.\d\d)-(\d+\.\d\d) s", message)
    assert len(spans) == 5
    assert 0.6 <= float(spans[0][0]) <= 1.0
    with pytest.raises(SplitError, match="found 5 phrases but the script has 6 lines"):
        split_take(take, "take.wav", WORDS[:6])


def test_phrases_that_run_together_are_reported():
    x = np.concatenate(
        (
            silence(400),
            clip(600, lead_ms=0, trail_ms=0),
            silence(150),
            clip(600, lead_ms=0, trail_ms=0),
            silence(400),
        )
    )
    with pytest.raises(SplitError, match="found 1 phrases but the script has 2 lines.*together"):
        split_take(wav_bytes(x), "t.wav", ["hello", "world"])


def test_a_click_in_a_pause_is_not_a_phrase():
    a = clip(600, lead_ms=500, trail_ms=500)
    a[round(RATE * 0.9)] = 0.9  # a single-sample click in the pause after the phrase
    x = np.concatenate((a, clip(700, lead_ms=200, trail_ms=500))) + noise(3000, -70.0)
    clips = split_take(wav_bytes(x), "t.wav", ["one", "two"])
    assert [round(c.speech_ms, -1) for c in clips] == [600, 700]


def test_a_bad_line_is_named():
    x = np.concatenate((clip(600, lead_ms=500, trail_ms=500), clip(90, lead_ms=0, trail_ms=500)))
    with pytest.raises(SplitError, match=r"line 2 \('no'.*\): too short"):
        split_take(wav_bytes(x), "t.wav", ["yes", "no"])


@pytest.mark.parametrize(
    ("data", "script", "reason"),
    [
        (b"", ["one"], "empty file"),
        (b"\x00junk" * 99, ["one"], "unknown format"),
        (wav_bytes(clip(600)), ["", "  "], "the script has no lines"),
    ],
)
def test_take_rejections_are_split_errors(data, script, reason):
    with pytest.raises(SplitError) as info:
        split_take(data, "take.wav", script)
    assert isinstance(info.value, IngestError)
    assert info.value.reason.startswith(reason)


def test_script_lines():
    assert script_lines("  one\n\n two  \n\t\nthree") == ["one", "two", "three"]
    assert script_lines(["a", "", " b "]) == ["a", "b"]

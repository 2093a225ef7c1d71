"""voicebank.stitch: one gapless MP3 per sentence, from real recordings, rendered once per recipe.

The clips are real Asterisk recordings (Allison Smith) through the real ingest path; storage is a
local folder. Checks and the sentences table are in test_stitch_check.py.
"""

from __future__ import annotations

import hashlib
import re
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.support.audio import clip, decode, wav_bytes
from tests.support.server import ingested, needs_asterisk_sounds
from voicebank import encode, levels, pcm, stitch
from voicebank.errors import ClipUnavailable
from voicebank.ingest import ingest_bytes
from voicebank.render import RENDER_RATE, Renderer
from voicebank.stitch import (
    MAX_CLIPS,
    Recorder,
    SentenceRecipe,
    StitchedFile,
    Stitcher,
    StitchError,
    StitchStats,
)
from voicebank.storage.base import key_digest
from voicebank.storage.local import LocalStorage
from voicebank.tts import PlaceholderTts

RATE = RENDER_RATE
FRAME = 576  # samples per MPEG-2 layer III frame (22.05 kHz)
NAMES = ("hello", "your", "with", "is", "digits/at", "digits/3", "digits/p-m", "goodbye")
ROOT = Path(__file__).resolve().parents[2]


def _n(ms: float) -> int:
    return round(RATE * ms / 1000)


class Masters:
    """load_master for tests: clip id -> FLAC master, counting loads; optionally slow."""

    def __init__(self, masters: dict[str, bytes], delay_s: float = 0.0) -> None:
        self.masters = dict(masters)
        self.delay_s = delay_s
        self.loads: Counter[str] = Counter()

    def __call__(self, clip_id: str) -> bytes:
        self.loads[clip_id] += 1
        if self.delay_s:
            time.sleep(self.delay_s)
        return self.masters[clip_id]


@pytest.fixture(scope="module")
def masters() -> dict[str, bytes]:
    """Clip id -> master: "1".."8" are real recordings, "short" a 250 ms synthetic word."""
    needs_asterisk_sounds()
    out = {str(i): ingested(name)[1].master for i, name in enumerate(NAMES, start=1)}
    out["short"] = ingest_bytes(wav_bytes(clip(250, lead_ms=20, trail_ms=20)), "at.wav").master
    return out


def make_stitcher(
    masters: dict[str, bytes] | Masters, root: Path, recorder: Recorder | None = None
) -> tuple[Stitcher, LocalStorage]:
    load = masters if isinstance(masters, Masters) else Masters(masters)
    storage = LocalStorage(root, "http://media.test/media")
    return Stitcher(storage, Renderer(load, tts=PlaceholderTts()), recorder=recorder), storage


def recipe(
    clips: tuple[str, ...] = ("1", "2", "3", "4"),
    gaps: tuple[int, ...] | None = None,
    tail: int = 500,
    target: float = -19.0,
    voice: str = "allison",
) -> SentenceRecipe:
    return SentenceRecipe(
        voice, clips, gaps if gaps is not None else (100,) * (len(clips) - 1), tail, target
    )


# -- the audio ---------------------------------------------------------------------------------
def test_decoded_length_is_clips_gaps_and_tail_with_a_gapless_tag(masters, tmp_path):
    stitcher, _ = make_stitcher(masters, tmp_path)
    r = recipe(("1", "5", "6", "7"), (80, 300, 60), tail=600)
    facts, mp3 = stitcher.render(r)
    tag = encode.gapless_tag(mp3)
    assert tag is not None and tag[0] > 0 and tag[1] > 0, tag  # encoder delay and padding
    decoded, rate = decode(mp3)
    assert rate == RATE
    clips = sum(stitcher.renderer.clip_pcm(c).size for c in r.clip_ids)
    expected = clips + sum(_n(g) for g in r.gaps_ms) + _n(r.tail_ms)
    assert abs(decoded.size - expected) <= FRAME, (decoded.size, expected)
    assert facts.duration_ms == round(1000 * expected / RATE)
    assert (facts.size, facts.sha256) == (len(mp3), hashlib.sha256(mp3).hexdigest())


def test_gaps_are_silent_where_asked_and_the_words_are_not(masters, tmp_path):
    stitcher, _ = make_stitcher(masters, tmp_path)
    r = recipe(("1", "2", "3"), (400, 0), tail=0)
    decoded, _ = decode(stitcher.render(r)[1])
    first, second = (stitcher.renderer.clip_pcm(c).size for c in ("1", "2"))
    gap = decoded[first + _n(10) : first + _n(390)]
    assert levels.peak_dbfs(gap) < -60, levels.peak_dbfs(gap)
    # Speech on both sides of it, and none of that silence where no gap was asked for.
    for start, end in ((0, first), (first + _n(400), first + _n(400) + second)):
        assert levels.ungated_lufs(decoded[start:end], RATE) > -30
    join = first + _n(400) + second
    quiet = decoded[join - _n(300) : join + _n(300)]
    assert _longest_quiet_run(quiet, -60) < _n(200)  # the clips' own edges, no added gap
    # The PCM before encoding holds digital silence, every sample, exactly where asked.
    audio = stitcher.render_pcm(r)
    assert not audio[first : first + _n(400)].any()
    assert audio[first - _n(60) : first].any() and audio[first + _n(400) : first + _n(460)].any()


def _longest_quiet_run(x: np.ndarray, dbfs: float) -> int:
    quiet = np.abs(x) < 10 ** (dbfs / 20)
    best = run = 0
    for q in quiet:
        run = run + 1 if q else 0
        best = max(best, run)
    return best


@pytest.mark.parametrize("tail_ms", [250, 1200])
def test_the_tail_is_silent_and_at_least_as_long_as_asked(masters, tmp_path, tail_ms):
    stitcher, _ = make_stitcher(masters, tmp_path)
    decoded, _ = decode(stitcher.render(recipe(("7", "8"), (120,), tail=tail_ms))[1])
    tail = decoded[decoded.size - _n(tail_ms) :]
    assert levels.peak_dbfs(tail) < -60
    quiet = np.abs(decoded) < 10 ** (-60 / 20)
    trailing = decoded.size - int(np.flatnonzero(~quiet)[-1]) - 1
    assert trailing >= _n(tail_ms)


@pytest.mark.parametrize("target", [-24.0, -19.0, -16.0])
def test_the_sentence_is_matched_to_its_target_loudness(masters, tmp_path, target):
    stitcher, _ = make_stitcher(masters, tmp_path)
    r = recipe(("1", "2", "3", "4", "5"), (90, 90, 250, 90), tail=700, target=target)
    audio = stitcher.render_pcm(r)
    body = pcm.from_int16(audio[: audio.size - _n(700)])
    assert levels.true_peak_dbfs(body) <= -1.0 + 0.05  # limited, not clipped
    decoded, _ = decode(stitcher.render(r)[1])
    measured = levels.integrated_lufs(decoded[: decoded.size - _n(700)], RATE)
    assert abs(measured - target) <= 0.5, measured


def test_a_sentence_too_short_to_measure_keeps_the_clips_level(masters, tmp_path):
    stitcher, _ = make_stitcher(masters, tmp_path)
    short = stitcher.renderer.clip_pcm("short")
    assert short.size < levels.GATING_BLOCK_S * RATE
    audio = stitcher.render_pcm(recipe(("short",), (), tail=300, target=-30.0))
    assert np.array_equal(audio[: short.size], short)
    assert audio.size == short.size + _n(300) and not audio[short.size :].any()


def test_the_same_recipe_gives_the_same_bytes(masters, tmp_path):
    r = recipe(("3", "1", "8"), (70, 310), tail=450, target=-18.0)
    first = make_stitcher(masters, tmp_path)[0].render(r)[1]
    stitcher, _ = make_stitcher(masters, tmp_path)  # cold caches
    assert stitcher.render(r)[1] == first
    assert stitcher.render(r)[1] == first  # warm caches
    # At the same time in several threads (libsndfile and LAME keep no shared state) ...
    out: list[bytes] = []
    threads = [threading.Thread(target=lambda: out.append(stitcher.render(r)[1])) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert out == [first] * 4
    # ... and in another process: no clock, seed or address goes into the bytes.
    assert _render_elsewhere(r) == hashlib.sha256(first).hexdigest()


def _render_elsewhere(r: SentenceRecipe) -> str:
    code = f"""
import hashlib
from tests.support.server import ingested
from voicebank.render import Renderer
from voicebank.stitch import SentenceRecipe, Stitcher
from voicebank.storage.local import LocalStorage
names = {NAMES!r}
masters = {{str(i): ingested(n)[1].master for i, n in enumerate(names, start=1)}}
renderer = Renderer(masters.__getitem__)
stitcher = Stitcher(LocalStorage(__import__("pathlib").Path("."), "http://x"), renderer)
print(hashlib.sha256(stitcher.render(SentenceRecipe.from_json({r.to_json()!r}))[1]).hexdigest())
"""
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


# -- rendered once -----------------------------------------------------------------------------
def test_ensure_renders_and_stores_a_recipe_once(masters, tmp_path):
    stitcher, storage = make_stitcher(masters, tmp_path)
    r = recipe()
    keys = {stitcher.ensure(r) for _ in range(5)}
    assert keys == {r.key}
    assert stitcher.stats() == StitchStats(renders=1, known=4)
    assert storage.get(r.key) == stitcher.render(r)[1]
    assert stitcher.url(r) == f"http://media.test/media/{r.key}"
    # Another process (here: another stitcher on the same store) finds it and renders nothing.
    other, _ = make_stitcher(masters, tmp_path)
    assert other.ensure(r) == r.key and other.ensure(r) == r.key
    assert other.stats() == StitchStats(renders=0, known=1, found=1)


def test_concurrent_ensures_of_one_recipe_render_it_once(masters, tmp_path):
    slow = Masters(masters, delay_s=0.05)  # every thread arrives while the first is rendering
    stitcher, storage = make_stitcher(slow, tmp_path)
    r, s = recipe(("1", "2")), recipe(("2", "1"))
    start = threading.Barrier(16)
    keys: list[str] = []

    def go(rec: SentenceRecipe) -> None:
        start.wait()
        keys.append(stitcher.ensure(rec))

    threads = [threading.Thread(target=go, args=(r if i % 2 else s,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(keys) == sorted([r.key] * 8 + [s.key] * 8)
    stats = stitcher.stats()
    assert stats.renders == 2 and stats.joined + stats.known == 14, stats
    assert stats.joined > 0
    assert set(slow.loads) == {"1", "2"}
    assert storage.exists(r.key) and storage.exists(s.key)


def test_a_missing_or_unreadable_master_stores_nothing(masters, tmp_path):
    load = Masters(masters)
    load.masters["bad"] = b"fLaC but not really"
    recorded: list[StitchedFile] = []
    stitcher, storage = make_stitcher(load, tmp_path, recorder=recorded.append)
    for clip_id, why in (("gone", "loading its master failed"), ("bad", "not readable audio")):
        r = recipe(("1", clip_id))
        with pytest.raises(ClipUnavailable, match=why) as err:
            stitcher.ensure(r)
        assert err.value.clip_id == clip_id
        assert not storage.exists(r.key)
    assert recorded == [] and stitcher.renders == 0
    assert not list(tmp_path.rglob("*.mp3"))
    # Once the master is back, the next call renders it: failures are not remembered.
    load.masters["gone"] = masters["2"]
    r = recipe(("1", "gone"))
    assert stitcher.ensure(r) == r.key and storage.exists(r.key)
    assert [f.key for f in recorded] == [r.key]


def test_the_recorder_sees_each_new_file_before_it_is_stored(masters, tmp_path):
    storage = LocalStorage(tmp_path, "http://m")
    seen: list[tuple[StitchedFile, bool]] = []
    renderer = Renderer(Masters(masters), tts=PlaceholderTts())
    stitcher = Stitcher(
        storage, renderer, recorder=lambda f: seen.append((f, storage.exists(f.key)))
    )
    r = recipe()
    stitcher.ensure(r)
    stitcher.ensure(r)
    [(facts, stored_before)] = seen
    data = storage.get(r.key)
    assert not stored_before
    assert facts == StitchedFile(
        r.key,
        r,
        hashlib.sha256(data).hexdigest(),
        hashlib.md5(data, usedforsecurity=False).hexdigest(),
        len(data),
        facts.duration_ms,
    )

    # A recorder that fails (the database is down) stops the store: no row, no object.
    def down(f: StitchedFile) -> None:
        raise ConnectionError("database is down")

    failing = Stitcher(storage, renderer, recorder=down)
    other = recipe(("4", "3"))
    with pytest.raises(ConnectionError):
        failing.ensure(other)
    assert not storage.exists(other.key) and failing.renders == 0


def test_a_renderer_with_other_settings_is_refused(masters):
    with pytest.raises(ValueError, match="5 ms fades"):
        Stitcher(LocalStorage(Path("."), "http://m"), Renderer(Masters(masters), fade_ms=2.0))


# -- the recipe and its key --------------------------------------------------------------------
def test_the_key_names_every_field():
    base = recipe()
    variants = [
        recipe(gaps=(100, 100, 101)),
        recipe(clips=("1", "2", "3", "5")),
        recipe(clips=("2", "1", "3", "4")),
        recipe(tail=501),
        recipe(target=-18.5),
        recipe(voice="other"),
    ]
    keys = {base.key, *(v.key for v in variants)}
    assert len(keys) == 1 + len(variants)
    assert re.fullmatch(r"clips/sentences/([0-9a-f]{2})/\1[0-9a-f]{62}\.mp3", base.key)
    # Its digest names a recipe, not the bytes: the byte-verifying key parser must not match.
    assert key_digest(base.key) is None
    # Spelled differently, the same recipe.
    same = SentenceRecipe("allison", [1, 2, 3, 4], [100.0, 100, 100], 500, -19)  # type: ignore[arg-type]
    assert same == base and same.key == base.key
    assert SentenceRecipe.from_json(base.to_json()) == base


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("RECIPE_FORMAT", 999),
        ("CEILING_DBTP", -2.0),
    ],
)
def test_the_key_changes_with_the_render_settings(monkeypatch, name, value):
    before = recipe().key
    monkeypatch.setattr(stitch, name, value)
    assert recipe().key != before


@pytest.mark.parametrize(
    ("name", "value"),
    [("GAPLESS_COMPRESSION_LEVEL", 0.5), ("GAPLESS_BITRATE_MODE", "CONSTANT")],
)
def test_the_key_changes_with_the_encoder(monkeypatch, name, value):
    before = recipe().key
    monkeypatch.setattr(encode, name, value)
    assert recipe().key != before


def test_explicit_encoder_settings_are_libsndfiles_defaults(masters):
    """Clips ingested before the settings were spelled out still re-encode to their bytes."""
    import io

    import soundfile as sf

    audio, rate = sf.read(io.BytesIO(masters["1"]), dtype="int16")
    buf = io.BytesIO()
    sf.write(buf, audio, rate, format="MP3", subtype="MPEG_LAYER_III")
    assert encode.mp3_gapless(audio, rate) == buf.getvalue()


GOOD: dict[str, Any] = {
    "voice_id": "v",
    "clip_ids": ("1", "2"),
    "gaps_ms": (0,),
    "tail_ms": 0,
    "target_lufs": -19.0,
}
MANY = tuple("1" for _ in range(MAX_CLIPS + 1))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"clip_ids": (), "gaps_ms": ()}, "0 clips; a sentence has 1 to 64"),
        ({"clip_ids": MANY, "gaps_ms": (0,) * MAX_CLIPS}, "65 clips"),
        ({"gaps_ms": ()}, "0 gaps for 2 clips; it needs one between each two clips (1)"),
        ({"gaps_ms": (1, 2)}, "2 gaps for 2 clips"),
        ({"gaps_ms": (-5,)}, "gaps_ms[0] = -5 ms is out of range (0 to 10000 ms)"),
        ({"gaps_ms": (10_001,)}, "gaps_ms[0] = 10001 ms is out of range"),
        ({"gaps_ms": (12.5,)}, "gaps_ms[0] = 12.5: whole milliseconds only"),
        ({"gaps_ms": (True,)}, "gaps_ms[0] must be a number of milliseconds, not True"),
        ({"gaps_ms": 5}, "gaps_ms must be a sequence"),
        ({"tail_ms": -1}, "tail_ms = -1 ms is out of range"),
        ({"tail_ms": 60_000}, "tail_ms = 60000 ms is out of range"),
        ({"target_lufs": float("nan")}, "target_lufs = nan is out of range"),
        ({"target_lufs": 3.0}, "(-50 to -5 LUFS)"),
        ({"target_lufs": "loud"}, "target_lufs must be a number"),
        ({"voice_id": ""}, "voice_id must be a non-empty string"),
        ({"clip_ids": ("1", "")}, "clip_ids[1] must be a non-empty string"),
        ({"clip_ids": ("1", None)}, "clip_ids[1] must be a non-empty string, not None"),
        ({"clip_ids": "12"}, "clip_ids must be a sequence of clip ids"),
        ({"clip_ids": ("x" * 65, "2")}, "at most 64 characters"),
        ({"voice_id": "a\nb"}, "voice_id 'a\\nb' must be printable"),
    ],
)
def test_bad_recipes_are_refused_with_a_reason(change: dict[str, Any], message: str):
    with pytest.raises(StitchError, match=re.escape(message)):
        SentenceRecipe(**{**GOOD, **change})
    with pytest.raises(ValueError):  # a StitchError is a ValueError too
        SentenceRecipe(**{**GOOD, **change})


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"voice_id": "v"}', "missing clip_ids, gaps_ms, tail_ms, target_lufs"),
        ("[1]", "not a JSON object"),
        ("{", "not JSON"),
    ],
)
def test_bad_stored_recipes_are_refused(text: str, message: str):
    with pytest.raises(StitchError, match=re.escape(message)):
        SentenceRecipe.from_json(text)
